// Package v1alpha1 is the VelvetRope API, group velvetrope.io, version v1alpha1.
// It imports apimachinery only, so any client can use it.
// +kubebuilder:object:generate=true
// +groupName=velvetrope.io
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of this API.
	GroupVersion = schema.GroupVersion{Group: "velvetrope.io", Version: "v1alpha1"}

	// SchemeBuilder registers the types of this API.
	SchemeBuilder = runtime.NewSchemeBuilder(func(s *runtime.Scheme) error {
		s.AddKnownTypes(GroupVersion, &Invitation{}, &InvitationList{})
		metav1.AddToGroupVersion(s, GroupVersion)
		return nil
	})

	// AddToScheme adds this API to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
