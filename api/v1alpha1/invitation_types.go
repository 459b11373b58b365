package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// InvitationSpec is what staff ask for: a code, how many people may use it,
// and when.
// +kubebuilder:validation:XValidation:rule="has(self.code) == has(oldSelf.code) && (!has(self.code) || self.code == oldSelf.code)",message="spec.code is immutable: create a new Invitation for a new code"
type InvitationSpec struct {
	// code is the invitation code in the link players open
	// (https://<game>/invitations/<code>). It defaults to metadata.name and
	// cannot be changed once set: 1 to 63 lower-case letters, digits and
	// inner hyphens.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Code string `json:"code,omitempty"`

	// maxUses is how many people may redeem the code, 1 to 1000. It may be
	// lowered below the current usage; no redemption is ever undone, the
	// code is then simply full.
	// +required
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	MaxUses int32 `json:"maxUses"`

	// expiresAt is when the code stops accepting redemptions; unset, it
	// never expires.
	// +optional
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`

	// paused stops new redemptions at once (players get 423) without
	// revoking the code; set it back to false to resume.
	// +optional
	Paused bool `json:"paused,omitempty"`

	// campaign groups invitations that share one redeemer fleet
	// (Deployment, Service, HPA and PodDisruptionBudget), so a flash crowd
	// on one campaign cannot starve another. A DNS label of at most 40
	// characters; default "default".
	// +optional
	// +kubebuilder:default=default
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=40
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Campaign string `json:"campaign,omitempty"`

	// launchAt is when the code will be posted. From the operator's
	// pre-scaling window before it, the campaign's fleet is scaled up ahead
	// of the crowd (see expectedPeakRPS).
	// +optional
	LaunchAt *metav1.Time `json:"launchAt,omitempty"`

	// mail customises the instructions email of this invitation.
	// +optional
	Mail *MailSpec `json:"mail,omitempty"`

	// expectedPeakRPS is the request rate expected right after launchAt.
	// The campaign's minimum replicas during pre-scaling is the sum over its
	// invitations divided by the per-pod capacity.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000000
	ExpectedPeakRPS int32 `json:"expectedPeakRPS,omitempty"`
}

// MailSpec customises the instructions email.
type MailSpec struct {
	// templatesConfigMap names a ConfigMap in the Invitation's namespace
	// whose keys override parts of the default email: "<lang>.<part>" with
	// lang en or ru and part subject, text or html (Go templates; the
	// fields are .GameName, .Code, .Position, .Link and .Expires). Missing
	// keys keep the default. Invalid templates make Ready False with reason
	// TemplateInvalid and are not used.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	TemplatesConfigMap string `json:"templatesConfigMap,omitempty"`
}

// InvitationPhase summarises where an invitation is in its life.
// +kubebuilder:validation:Enum=Pending;Active;Paused;Exhausted;Expired
type InvitationPhase string

const (
	// PhasePending: not yet written to MongoDB.
	PhasePending InvitationPhase = "Pending"
	// PhaseActive: players can redeem it.
	PhaseActive InvitationPhase = "Active"
	// PhasePaused: spec.paused is set.
	PhasePaused InvitationPhase = "Paused"
	// PhaseExhausted: maxUses people have redeemed it.
	PhaseExhausted InvitationPhase = "Exhausted"
	// PhaseExpired: expiresAt has passed.
	PhaseExpired InvitationPhase = "Expired"
)

// Condition types.
const (
	// ConditionReady is True when MongoDB holds the invitation as specified,
	// its usage was read and its campaign's fleet serves: the code is served
	// as asked.
	ConditionReady = "Ready"
	// ConditionOverLimit is True when maxUses was lowered below the
	// redemptions that already exist.
	ConditionOverLimit = "OverLimit"
	// ConditionMailDelivered is False when the fleet has no mail server,
	// emails wait too long (the mail server is failing) or some were given
	// up.
	ConditionMailDelivered = "MailDelivered"
	// ConditionFleetAvailable is True when the campaign's redeemer fleet
	// serves (Deployment Available, pods ready); False names the cause
	// (CreateContainerConfigError, ImagePullBackOff, CrashLoopBackOff,
	// Unschedulable…).
	ConditionFleetAvailable = "FleetAvailable"
	// ConditionScalingLimited is True when --fleet-max-replicas holds the
	// fleet below what the campaign's launches expect (expectedPeakRPS);
	// set only on Invitations that declare a launch.
	ConditionScalingLimited = "ScalingLimited"
)

// MailStatus counts the instructions emails of an invitation.
type MailStatus struct {
	// sent: accepted by the mail server.
	// +optional
	// +kubebuilder:default=0
	Sent int32 `json:"sent"`
	// pending: not sent yet, including retries.
	// +optional
	// +kubebuilder:default=0
	Pending int32 `json:"pending"`
	// failed: given up (a permanent refusal or too many attempts).
	// +optional
	// +kubebuilder:default=0
	Failed int32 `json:"failed"`
}

// InvitationStatus is what the operator observed.
type InvitationStatus struct {
	// code is the effective code (spec.code or metadata.name).
	// +optional
	Code string `json:"code,omitempty"`

	// used is how many people redeemed the code.
	// +optional
	// +kubebuilder:default=0
	Used int32 `json:"used"`

	// remaining is how many more people may redeem it.
	// +optional
	// +kubebuilder:default=0
	Remaining int32 `json:"remaining"`

	// phase is Pending, Active, Paused, Exhausted or Expired.
	// +optional
	Phase InvitationPhase `json:"phase,omitempty"`

	// lastRedemptionTime is when the latest redemption happened.
	// +optional
	LastRedemptionTime *metav1.Time `json:"lastRedemptionTime,omitempty"`

	// mail counts the instructions emails of this invitation's redemptions.
	// +optional
	Mail MailStatus `json:"mail,omitempty"`

	// observedGeneration is the generation the status was computed from.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready, OverLimit, MailDelivered.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// Invitation is one invitation code for a closed beta: how many people may
// use it and when. The operator writes it to MongoDB, where the redeemers
// serve it, and reports usage back here.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=inv,categories=velvetrope
// +kubebuilder:validation:XValidation:rule="has(self.spec.code) || self.metadata.name.matches('^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$')",message="without spec.code, metadata.name is the code and must be 1-63 lower-case letters, digits and inner hyphens"
// +kubebuilder:printcolumn:name="Code",type=string,JSONPath=`.status.code`
// +kubebuilder:printcolumn:name="Max",type=integer,JSONPath=`.spec.maxUses`
// +kubebuilder:printcolumn:name="Used",type=integer,JSONPath=`.status.used`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Campaign",type=string,JSONPath=`.spec.campaign`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].message`,priority=1
type Invitation struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired invitation.
	// +required
	Spec InvitationSpec `json:"spec"`

	// status is what the operator observed.
	// +optional
	Status InvitationStatus `json:"status,omitempty"`
}

// EffectiveCode is spec.code, or metadata.name when it is unset.
func (i *Invitation) EffectiveCode() string {
	if i.Spec.Code != "" {
		return i.Spec.Code
	}
	return i.Name
}

// InvitationList is a list of Invitations.
// +kubebuilder:object:root=true
type InvitationList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Invitation `json:"items"`
}
