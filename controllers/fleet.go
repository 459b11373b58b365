package controllers

import (
	"cmp"
	"slices"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	autoscalingv2ac "k8s.io/client-go/applyconfigurations/autoscaling/v2"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	networkingv1ac "k8s.io/client-go/applyconfigurations/networking/v1"
	policyv1ac "k8s.io/client-go/applyconfigurations/policy/v1"

	v1alpha1 "github.com/velvetrope/velvetrope/api/v1alpha1"
)

// FleetConfig is how every campaign's redeemer fleet is built (manager flags).
type FleetConfig struct {
	Image           string
	ImagePullPolicy corev1.PullPolicy
	// MongoSecretName and MongoSecretKey name the Secret key holding the
	// MongoDB URI; it is never copied into a spec.
	MongoSecretName string
	MongoSecretKey  string
	MongoDatabase   string
	// MailSecretName names an optional Secret whose keys become the
	// redeemers' environment: SMTP_HOST, SMTP_PORT, SMTP_USERNAME,
	// SMTP_PASSWORD, MAIL_TOKEN_KEY, MAIL_FROM, GAME_NAME, MAIL_LINK_BASE…
	MailSecretName string
	// TrustedProxies are the CIDRs (comma-separated) of the proxies in
	// front of the fleets (the ingress controller's pods): their
	// X-Forwarded-For is believed, so each player has a rate-limit bucket
	// of their own instead of all sharing the proxy's.
	TrustedProxies  string
	MinReplicas     int32 // HPA floor outside pre-scaling
	MaxReplicas     int32
	CPUTarget       int32 // average CPU utilisation, percent of requests
	PodCapacityRPS  int32 // requests per second one pod serves comfortably
	PrescaleWindow  time.Duration
	DrainDelay      time.Duration
	ShutdownTimeout time.Duration
	// PrescaleHold is how long after launchAt a launch still counts
	// towards the floor: the crowd arrives at launch and fades.
	PrescaleHold  time.Duration
	CPURequest    resource.Quantity
	MemoryRequest resource.Quantity
	MemoryLimit   resource.Quantity
	// ServiceAccountName runs the redeemer pods ("": the namespace's
	// default); their token is never mounted, they do not call the API.
	ServiceAccountName string
	ImagePullSecrets   []string
	// NetworkPolicy adds a policy per fleet admitting only player traffic,
	// metrics scrapes and the fleet's own replicas on the peer port.
	NetworkPolicy bool
}

// Labels of fleet objects.
const (
	LabelCampaign  = "velvetrope.io/campaign"
	LabelName      = "app.kubernetes.io/name"
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// AnnotationMailSecretVersion on a fleet's pods is the mail Secret's
	// version they were started with.
	AnnotationMailSecretVersion = "velvetrope.io/mail-secret-version"
	managedBy                   = "velvetrope-operator"
	redeemerName                = "velvetrope-redeemer"
	httpPort                    = 8080
	metricsPort                 = 9090
	peerPort                    = 8081 // replica to replica (one writer per code): no Service port
	servicePort                 = 80
	// fleetOwners is how many of a campaign's Invitations own its fleet
	// objects: Kubernetes' garbage collector removes the fleet once all of
	// them are gone, and the operator hands ownership on as Invitations
	// come and go. A few, not all: a campaign may hold thousands.
	fleetOwners = 3
)

// campaign is one (namespace, campaign) and its live invitations.
type campaign struct {
	Namespace, Name string
	Invitations     []v1alpha1.Invitation
}

// fleetName names every object of a campaign's fleet. Campaign names are at
// most 40 characters, so this stays a valid DNS label.
func fleetName(campaign string) string { return "velvetrope-" + campaign }

// fleetLabels label a fleet's objects. No app.kubernetes.io/instance: Argo
// CD's label tracking reads it as an Application's name, and a campaign named
// like one would have its fleet adopted or pruned.
func fleetLabels(campaign string) map[string]string {
	return map[string]string{LabelName: redeemerName, LabelCampaign: campaign, LabelManagedBy: managedBy}
}

func selectorLabels(campaign string) map[string]string {
	return map[string]string{LabelName: redeemerName, LabelCampaign: campaign}
}

// prescale is a campaign's pre-scaling at some instant.
type prescale struct {
	Floor  int32 // the HPA's minimum
	Wanted int32 // pods the launches in their window need, before MaxReplicas caps them
	RPS    int64 // the launches' expected peaks, summed
}

// Capped reports whether MaxReplicas holds the fleet below what the launches
// in their window expect.
func (p prescale) Capped() bool { return p.Wanted > p.Floor }

// prescaleAt is the campaign's pre-scaling at now: enough pods for the sum of
// expectedPeakRPS of the open invitations whose launch window holds now (from
// PrescaleWindow before launchAt to PrescaleHold after it); MinReplicas
// otherwise. A launch weeks away, or long past, counts for nothing.
func prescaleAt(cfg FleetConfig, invs []v1alpha1.Invitation, now time.Time) prescale {
	p := prescale{Floor: cfg.MinReplicas}
	for _, inv := range invs {
		if inLaunchWindow(cfg, &inv, now) && phase(&inv, inv.Status.Used, true, now) == v1alpha1.PhaseActive {
			p.RPS += int64(inv.Spec.ExpectedPeakRPS)
		}
	}
	if p.RPS == 0 || cfg.PodCapacityRPS <= 0 {
		return p
	}
	pods := (p.RPS + int64(cfg.PodCapacityRPS) - 1) / int64(cfg.PodCapacityRPS)
	p.Wanted = int32(min(pods, int64(1<<30)))
	p.Floor = min(max(p.Wanted, cfg.MinReplicas), cfg.MaxReplicas)
	return p
}

// launchWindow is when inv's launch raises its fleet's floor; ok is false
// when it declares no launch.
func launchWindow(cfg FleetConfig, inv *v1alpha1.Invitation) (from, to time.Time, ok bool) {
	if inv.Spec.LaunchAt == nil || inv.Spec.ExpectedPeakRPS == 0 {
		return time.Time{}, time.Time{}, false
	}
	at := inv.Spec.LaunchAt.Time
	return at.Add(-cfg.PrescaleWindow), at.Add(cfg.PrescaleHold), true
}

func inLaunchWindow(cfg FleetConfig, inv *v1alpha1.Invitation, now time.Time) bool {
	from, to, ok := launchWindow(cfg, inv)
	return ok && !now.Before(from) && now.Before(to)
}

// nextFleetChange is when the floor may change without any event: the next
// start or end of a launch window. Zero when there is none.
func nextFleetChange(cfg FleetConfig, invs []v1alpha1.Invitation, now time.Time) time.Time {
	var next time.Time
	for _, inv := range invs {
		from, to, ok := launchWindow(cfg, &inv)
		if !ok {
			continue
		}
		for _, at := range []time.Time{from, to} {
			if at.After(now) && (next.IsZero() || at.Before(next)) {
				next = at
			}
		}
	}
	return next
}

// owners are the fleet objects' owner references: the campaign's oldest
// live Invitations (fleetOwners of them).
func owners(c campaign) []*metav1ac.OwnerReferenceApplyConfiguration {
	invs := slices.Clone(c.Invitations)
	slices.SortFunc(invs, func(a, b v1alpha1.Invitation) int {
		return cmp.Or(a.CreationTimestamp.Compare(b.CreationTimestamp.Time), cmp.Compare(a.Name, b.Name))
	})
	var refs []*metav1ac.OwnerReferenceApplyConfiguration
	for _, inv := range invs[:min(len(invs), fleetOwners)] {
		refs = append(refs, ownerRef(&inv, false))
	}
	return refs
}

// desiredDeployment is the campaign's fleet. mailVersion, the mail Secret's
// resourceVersion, annotates the pods: a pod reads the Secret when it
// starts, so a changed Secret (SMTP_HOST added, a key rotated) rolls the
// fleet onto it.
func desiredDeployment(cfg FleetConfig, c campaign, mailVersion string) *appsv1ac.DeploymentApplyConfiguration {
	grace := int64((cfg.DrainDelay + cfg.ShutdownTimeout + 5*time.Second) / time.Second)
	probe := func(path string, period, failures int32) *corev1ac.ProbeApplyConfiguration {
		return corev1ac.Probe().
			WithHTTPGet(corev1ac.HTTPGetAction().WithPath(path).WithPort(intstr.FromString("http"))).
			WithPeriodSeconds(period).WithFailureThreshold(failures).WithTimeoutSeconds(2)
	}
	container := corev1ac.Container().
		WithName("redeemer").
		WithImage(cfg.Image).
		WithImagePullPolicy(cfg.ImagePullPolicy).
		WithPorts(
			corev1ac.ContainerPort().WithName("http").WithContainerPort(httpPort).WithProtocol(corev1.ProtocolTCP),
			corev1ac.ContainerPort().WithName("metrics").WithContainerPort(metricsPort).WithProtocol(corev1.ProtocolTCP),
			corev1ac.ContainerPort().WithName("peer").WithContainerPort(peerPort).WithProtocol(corev1.ProtocolTCP)).
		WithEnv(
			corev1ac.EnvVar().WithName("MONGODB_URI").WithValueFrom(corev1ac.EnvVarSource().
				WithSecretKeyRef(corev1ac.SecretKeySelector().WithName(cfg.MongoSecretName).WithKey(cfg.MongoSecretKey))),
			corev1ac.EnvVar().WithName("MONGODB_DATABASE").WithValue(cfg.MongoDatabase),
			// A fleet loads only the codes its routes send it.
			corev1ac.EnvVar().WithName("CAMPAIGN").WithValue(c.Name),
			corev1ac.EnvVar().WithName("LISTEN_ADDR").WithValue(":"+strconv.Itoa(httpPort)),
			corev1ac.EnvVar().WithName("DRAIN_DELAY").WithValue(cfg.DrainDelay.String()),
			corev1ac.EnvVar().WithName("SHUTDOWN_TIMEOUT").WithValue(cfg.ShutdownTimeout.String()),
			corev1ac.EnvVar().WithName("METRICS_ADDR").WithValue(":"+strconv.Itoa(metricsPort)),
			// The peer listener binds every interface; the other replicas
			// dial POD_IP with its port.
			corev1ac.EnvVar().WithName("POD_IP").WithValueFrom(corev1ac.EnvVarSource().
				WithFieldRef(corev1ac.ObjectFieldSelector().WithFieldPath("status.podIP"))),
			corev1ac.EnvVar().WithName("PEER_LISTEN").WithValue(":"+strconv.Itoa(peerPort)),
			// No MAIL_DIR: without a mail server, emails wait in MongoDB
			// (MailDelivered says so) instead of going to files that die
			// with the pod.
		).
		WithReadinessProbe(probe("/readyz", 2, 2)).
		WithLivenessProbe(probe("/healthz", 10, 3)).
		WithResources(corev1ac.ResourceRequirements().
			WithRequests(corev1.ResourceList{corev1.ResourceCPU: cfg.CPURequest, corev1.ResourceMemory: cfg.MemoryRequest}).
			WithLimits(corev1.ResourceList{corev1.ResourceMemory: cfg.MemoryLimit})).
		WithSecurityContext(corev1ac.SecurityContext().
			WithAllowPrivilegeEscalation(false).
			WithReadOnlyRootFilesystem(true).
			WithRunAsNonRoot(true).
			WithCapabilities(corev1ac.Capabilities().WithDrop("ALL")))
	if cfg.TrustedProxies != "" {
		container.WithEnv(corev1ac.EnvVar().WithName("TRUSTED_PROXIES").WithValue(cfg.TrustedProxies))
	}
	if cfg.MailSecretName != "" {
		container.WithEnvFrom(corev1ac.EnvFromSource().
			WithSecretRef(corev1ac.SecretEnvSource().WithName(cfg.MailSecretName).WithOptional(true)))
	}
	spread := func(key string) *corev1ac.TopologySpreadConstraintApplyConfiguration {
		return corev1ac.TopologySpreadConstraint().WithMaxSkew(1).WithTopologyKey(key).
			WithWhenUnsatisfiable(corev1.ScheduleAnyway).
			WithLabelSelector(metav1ac.LabelSelector().WithMatchLabels(selectorLabels(c.Name))).
			// Spread each rollout's pods on their own, not the old and new
			// ReplicaSets together.
			WithMatchLabelKeys(appsv1.DefaultDeploymentUniqueLabelKey)
	}
	pod := corev1ac.PodSpec().
		WithTerminationGracePeriodSeconds(grace).
		WithAutomountServiceAccountToken(false).
		WithSecurityContext(corev1ac.PodSecurityContext().
			WithRunAsNonRoot(true).
			WithRunAsUser(65532).
			WithSeccompProfile(corev1ac.SeccompProfile().WithType(corev1.SeccompProfileTypeRuntimeDefault))).
		WithTopologySpreadConstraints(spread("topology.kubernetes.io/zone"), spread("kubernetes.io/hostname")).
		WithContainers(container)
	if cfg.ServiceAccountName != "" {
		pod.WithServiceAccountName(cfg.ServiceAccountName)
	}
	for _, name := range cfg.ImagePullSecrets {
		pod.WithImagePullSecrets(corev1ac.LocalObjectReference().WithName(name))
	}
	template := corev1ac.PodTemplateSpec().WithLabels(fleetLabels(c.Name)).WithSpec(pod)
	if mailVersion != "" {
		template.WithAnnotations(map[string]string{AnnotationMailSecretVersion: mailVersion})
	}
	return appsv1ac.Deployment(fleetName(c.Name), c.Namespace).
		WithLabels(fleetLabels(c.Name)).
		WithOwnerReferences(owners(c)...).
		WithSpec(appsv1ac.DeploymentSpec().
			// No replicas: the HPA owns them, and a field we never apply is
			// a field we never fight over.
			WithSelector(metav1ac.LabelSelector().WithMatchLabels(selectorLabels(c.Name))).
			WithStrategy(appsv1ac.DeploymentStrategy().WithType(appsv1.RollingUpdateDeploymentStrategyType).
				WithRollingUpdate(appsv1ac.RollingUpdateDeployment().
					WithMaxUnavailable(intstr.FromInt32(0)).
					WithMaxSurge(intstr.FromString("25%")))).
			WithTemplate(template))
}

func desiredService(c campaign) *corev1ac.ServiceApplyConfiguration {
	return corev1ac.Service(fleetName(c.Name), c.Namespace).
		WithLabels(fleetLabels(c.Name)).
		WithOwnerReferences(owners(c)...).
		WithSpec(corev1ac.ServiceSpec().
			WithSelector(selectorLabels(c.Name)).
			WithPorts(corev1ac.ServicePort().WithName("http").WithPort(servicePort).WithTargetPort(intstr.FromString("http")).WithProtocol(corev1.ProtocolTCP)))
}

func desiredHPA(cfg FleetConfig, c campaign, minReplicas int32) *autoscalingv2ac.HorizontalPodAutoscalerApplyConfiguration {
	return autoscalingv2ac.HorizontalPodAutoscaler(fleetName(c.Name), c.Namespace).
		WithLabels(fleetLabels(c.Name)).
		WithOwnerReferences(owners(c)...).
		WithSpec(autoscalingv2ac.HorizontalPodAutoscalerSpec().
			WithScaleTargetRef(autoscalingv2ac.CrossVersionObjectReference().WithAPIVersion("apps/v1").WithKind("Deployment").WithName(fleetName(c.Name))).
			WithMinReplicas(minReplicas).
			WithMaxReplicas(max(cfg.MaxReplicas, minReplicas)).
			WithMetrics(autoscalingv2ac.MetricSpec().WithType(autoscalingv2.ResourceMetricSourceType).
				WithResource(autoscalingv2ac.ResourceMetricSource().WithName(corev1.ResourceCPU).
					WithTarget(autoscalingv2ac.MetricTarget().WithType(autoscalingv2.UtilizationMetricType).WithAverageUtilization(cfg.CPUTarget)))).
			// A flash crowd does not wait: scale up at once and steeply,
			// scale down slowly.
			WithBehavior(autoscalingv2ac.HorizontalPodAutoscalerBehavior().
				WithScaleUp(autoscalingv2ac.HPAScalingRules().WithStabilizationWindowSeconds(0).
					WithSelectPolicy(autoscalingv2.MaxChangePolicySelect).
					WithPolicies(
						autoscalingv2ac.HPAScalingPolicy().WithType(autoscalingv2.PercentScalingPolicy).WithValue(100).WithPeriodSeconds(15),
						autoscalingv2ac.HPAScalingPolicy().WithType(autoscalingv2.PodsScalingPolicy).WithValue(4).WithPeriodSeconds(15))).
				WithScaleDown(autoscalingv2ac.HPAScalingRules().WithStabilizationWindowSeconds(300))))
}

func desiredPDB(c campaign) *policyv1ac.PodDisruptionBudgetApplyConfiguration {
	return policyv1ac.PodDisruptionBudget(fleetName(c.Name), c.Namespace).
		WithLabels(fleetLabels(c.Name)).
		WithOwnerReferences(owners(c)...).
		WithSpec(policyv1ac.PodDisruptionBudgetSpec().
			WithMaxUnavailable(intstr.FromInt32(1)).
			// An unready pod serves nobody: evicting it never blocks a
			// node drain.
			WithUnhealthyPodEvictionPolicy(policyv1.AlwaysAllow).
			WithSelector(metav1ac.LabelSelector().WithMatchLabels(selectorLabels(c.Name))))
}

// desiredNetworkPolicy admits players on the http port, scrapes on the
// metrics port, and the fleet's own replicas on the peer port, nothing else.
func desiredNetworkPolicy(c campaign) *networkingv1ac.NetworkPolicyApplyConfiguration {
	port := func(name string) *networkingv1ac.NetworkPolicyPortApplyConfiguration {
		return networkingv1ac.NetworkPolicyPort().WithProtocol(corev1.ProtocolTCP).WithPort(intstr.FromString(name))
	}
	return networkingv1ac.NetworkPolicy(fleetName(c.Name), c.Namespace).
		WithLabels(fleetLabels(c.Name)).
		WithOwnerReferences(owners(c)...).
		WithSpec(networkingv1ac.NetworkPolicySpec().
			WithPodSelector(metav1ac.LabelSelector().WithMatchLabels(selectorLabels(c.Name))).
			WithPolicyTypes(networkingv1.PolicyTypeIngress).
			WithIngress(
				networkingv1ac.NetworkPolicyIngressRule().WithPorts(port("http"), port("metrics")),
				// A podSelector without a namespaceSelector means this
				// namespace: another campaign's fleet, or anyone else, never
				// hands claims to this one.
				networkingv1ac.NetworkPolicyIngressRule().WithPorts(port("peer")).
					WithFrom(networkingv1ac.NetworkPolicyPeer().
						WithPodSelector(metav1ac.LabelSelector().WithMatchLabels(selectorLabels(c.Name))))))
}
