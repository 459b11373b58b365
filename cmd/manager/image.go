package main

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// ownImage returns the image of the manager's own container, read from its
// Pod (POD_NAME and POD_NAMESPACE come from the downward API, which cannot
// give the image itself). The fleets then run exactly the image the
// operator was deployed with, so kustomize's images: and Helm's image
// values reach them without a second setting; and with the same pull
// policy (image.pullPolicy).
func ownImage(ctx context.Context, cfg *rest.Config, namespace, name string) (string, corev1.PullPolicy, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return "", "", err
	}
	pod, err := cs.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", "", fmt.Errorf("reading the manager's own Pod for its image (or set --redeemer-image): %w", err)
	}
	for _, c := range pod.Spec.Containers {
		if c.Name == "manager" {
			return c.Image, c.ImagePullPolicy, nil
		}
	}
	return "", "", fmt.Errorf("the manager's Pod %s/%s has no container named manager (set --redeemer-image)", namespace, name)
}
