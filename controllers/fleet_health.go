package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// fleetHealth is whether a campaign's fleet serves, and if not, why.
type fleetHealth struct {
	Available      bool
	Ready, Desired int32
	// Reason and Message name what keeps pods from serving: a container
	// waiting reason (CreateContainerConfigError, ImagePullBackOff,
	// CrashLoopBackOff…), Unschedulable, ProgressDeadlineExceeded; or
	// ReasonFleetProgressing while pods are simply starting.
	Reason, Message string
}

// Causes Kubernetes gives for a container that will not start by itself.
var stuckReasons = map[string]bool{
	"CreateContainerConfigError": true, "CreateContainerError": true, "InvalidImageName": true,
	"ErrImagePull": true, "ImagePullBackOff": true, "CrashLoopBackOff": true, "RunContainerError": true,
}

// judgeFleet reads a fleet's health from its Deployment and, only when it
// does not serve, from its pods. Pure.
func judgeFleet(d *appsv1.Deployment, pods []corev1.Pod) fleetHealth {
	if d == nil {
		return fleetHealth{Reason: ReasonFleetProgressing, Message: "the fleet's Deployment is being created"}
	}
	// Serving means a pod answers players. Not the Deployment's Available
	// condition: with maxUnavailable 0 it turns False whenever the HPA
	// scales out, which is exactly during a crowd.
	h := fleetHealth{Ready: d.Status.AvailableReplicas, Desired: d.Status.Replicas, Available: d.Status.AvailableReplicas > 0}
	if h.Available {
		return h
	}
	var progressing *appsv1.DeploymentCondition
	for i, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentProgressing {
			progressing = &d.Status.Conditions[i]
		}
	}
	for _, p := range pods {
		for _, cs := range p.Status.ContainerStatuses {
			if w := cs.State.Waiting; w != nil && stuckReasons[w.Reason] {
				h.Reason, h.Message = w.Reason, fmt.Sprintf("pod %s: %s", p.Name, w.Message)
				return h
			}
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
				h.Reason, h.Message = c.Reason, fmt.Sprintf("pod %s: %s", p.Name, c.Message)
				return h
			}
		}
	}
	if progressing != nil && progressing.Reason == "ProgressDeadlineExceeded" {
		h.Reason, h.Message = progressing.Reason, progressing.Message
		return h
	}
	h.Reason, h.Message = ReasonFleetProgressing, fmt.Sprintf("%d of %d pods ready", h.Ready, h.Desired)
	return h
}

// fleetWatch observes fleets for reconcile passes. A campaign of a thousand
// Invitations asks about its fleet a thousand times per interval; the pods
// are listed (uncached: the operator does not cache every pod of the
// cluster) at most once per Deployment version and ttl.
type fleetWatch struct {
	client client.Reader // the cache: Deployments
	reader client.Reader // the API server: pods, the mail Secret
	mail   string        // the mail Secret's name; empty: none
	ttl    time.Duration
	now    func() time.Time

	mu     sync.Mutex
	health map[string]seenHealth
	smtp   map[string]seenMail // by namespace
}

type seenHealth struct {
	version string
	at      time.Time
	h       fleetHealth
}

type seenMail struct {
	at time.Time
	mailSecret
}

// mailSecret is what the operator looks at in a namespace's mail Secret.
type mailSecret struct {
	Configured mailSetup
	Version    string // a digest of the Secret's data; empty: no Secret
}

// mailSetup is which of the settings a fleet needs to send mail the mail
// Secret holds: presence only, never a value.
type mailSetup struct {
	SMTPHost bool // SMTP_HOST is set: the fleet has a mail server
	// TokenKey: MAIL_TOKEN_KEY is set. Without it a fleet with a mail
	// server sends nothing rather than sign registration links with a key
	// only one pod knows (docs/registration.md).
	TokenKey bool
}

// mailSetupOf reads which mail settings s holds, by presence.
func mailSetupOf(s *corev1.Secret) mailSetup {
	return mailSetup{SMTPHost: len(s.Data["SMTP_HOST"]) > 0, TokenKey: len(s.Data["MAIL_TOKEN_KEY"]) > 0}
}

func newFleetWatch(cache, api client.Reader, mailSecret string, ttl time.Duration, now func() time.Time) *fleetWatch {
	return &fleetWatch{client: cache, reader: api, mail: mailSecret, ttl: ttl, now: now,
		health: map[string]seenHealth{}, smtp: map[string]seenMail{}}
}

// +kubebuilder:rbac:groups="",resources=pods,verbs=list

func (w *fleetWatch) fleet(ctx context.Context, namespace, campaign string) (fleetHealth, error) {
	var d appsv1.Deployment
	err := w.client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: fleetName(campaign)}, &d)
	if apierrors.IsNotFound(err) {
		return judgeFleet(nil, nil), nil
	}
	if err != nil {
		return fleetHealth{}, err
	}
	key, version := namespace+"/"+campaign, d.ResourceVersion
	w.mu.Lock()
	seen, ok := w.health[key]
	w.mu.Unlock()
	if ok && seen.version == version && (seen.h.Available || w.now().Sub(seen.at) < w.ttl) {
		return seen.h, nil
	}
	h := judgeFleet(&d, nil)
	if !h.Available {
		var pods corev1.PodList
		if err := w.reader.List(ctx, &pods, client.InNamespace(namespace), client.MatchingLabels(selectorLabels(campaign))); err != nil {
			return fleetHealth{}, err
		}
		h = judgeFleet(&d, pods.Items)
	}
	w.mu.Lock()
	w.health[key] = seenHealth{version: version, at: w.now(), h: h}
	w.mu.Unlock()
	return h, nil
}

// +kubebuilder:rbac:groups="",resources=secrets,verbs=get,resourceNames=velvetrope-mail

// mailSecret reports whether the namespace's fleets have a mail server
// (SMTP_HOST in the mail Secret) and a registration token key
// (MAIL_TOKEN_KEY), and the Secret's version: a pod reads the Secret when it
// starts, so the fleet is rolled when it changes. Of those two keys only
// their presence is read, and nothing else of the Secret is kept or logged.
// ok is false when it cannot be told (the Secret is not readable), so
// nothing is claimed.
func (w *fleetWatch) mailSecret(ctx context.Context, namespace string) (m mailSecret, ok bool) {
	if w.mail == "" {
		return mailSecret{}, true
	}
	w.mu.Lock()
	seen, cached := w.smtp[namespace]
	w.mu.Unlock()
	if cached {
		return seen.mailSecret, true // runMail keeps it fresh
	}
	m, ok = w.readMail(ctx, namespace)
	if ok {
		w.mu.Lock()
		w.smtp[namespace] = seenMail{at: w.now(), mailSecret: m}
		w.mu.Unlock()
	}
	return m, ok
}

func (w *fleetWatch) readMail(ctx context.Context, namespace string) (mailSecret, bool) {
	var s corev1.Secret
	err := w.reader.Get(ctx, client.ObjectKey{Namespace: namespace, Name: w.mail}, &s)
	if err != nil && !apierrors.IsNotFound(err) {
		return mailSecret{}, false
	}
	return mailSecret{Configured: mailSetupOf(&s), Version: dataVersion(s.Data)}, true
}

// runMail re-reads, every interval until ctx ends, the mail Secret of each
// namespace a pass has asked about (one GET per namespace: the operator may
// only get that one Secret, not watch it), and calls changed with each
// namespace where it changed or can no longer be read.
func (w *fleetWatch) runMail(ctx context.Context, every time.Duration, changed func(namespace string)) {
	if w.mail == "" {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		w.mu.Lock()
		namespaces := slices.Collect(maps.Keys(w.smtp))
		w.mu.Unlock()
		for _, ns := range namespaces {
			m, ok := w.readMail(ctx, ns)
			w.mu.Lock()
			seen := w.smtp[ns]
			switch {
			case !ok:
				delete(w.smtp, ns) // the next pass reads it itself, and says nothing meanwhile
			case seen.mailSecret != m:
				w.smtp[ns] = seenMail{at: w.now(), mailSecret: m}
			}
			w.mu.Unlock()
			if !ok || seen.mailSecret != m {
				changed(ns)
			}
		}
	}
}

func (w *fleetWatch) forget(namespace, campaign string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.health, namespace+"/"+campaign)
}

// dataVersion digests a Secret's data: it changes when a key or value does,
// not on an edit of labels or annotations. A one-way digest: the values
// cannot be read back from it.
func dataVersion(data map[string][]byte) string {
	if len(data) == 0 {
		return ""
	}
	h := sha256.New()
	for _, k := range slices.Sorted(maps.Keys(data)) {
		fmt.Fprintf(h, "%d:%s%d:", len(k), k, len(data[k]))
		h.Write(data[k])
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}
