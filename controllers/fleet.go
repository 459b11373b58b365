package controllers

import (
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	autoscalingv2ac "k8s.io/client-go/applyconfigurations/autoscaling/v2"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
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
	CPURequest      resource.Quantity
	MemoryRequest   resource.Quantity
	MemoryLimit     resource.Quantity
}

// Labels of fleet objects.
const (
	LabelCampaign  = "velvetrope.io/campaign"
	LabelName      = "app.kubernetes.io/name"
	LabelInstance  = "app.kubernetes.io/instance"
	LabelManagedBy = "app.kubernetes.io/managed-by"
	managedBy      = "velvetrope-operator"
	redeemerName   = "velvetrope-redeemer"
	httpPort       = 8080
)

// campaign is one (namespace, campaign) and its live invitations.
type campaign struct {
	Namespace, Name string
	Invitations     []v1alpha1.Invitation
}

// fleetName names every object of a campaign's fleet. Campaign names are at
// most 40 characters, so this stays a valid DNS label.
func fleetName(campaign string) string { return "velvetrope-" + campaign }

func fleetLabels(campaign string) map[string]string {
	return map[string]string{LabelName: redeemerName, LabelInstance: campaign, LabelCampaign: campaign, LabelManagedBy: managedBy}
}

func selectorLabels(campaign string) map[string]string {
	return map[string]string{LabelName: redeemerName, LabelCampaign: campaign}
}

// floor is the HPA's minimum for a campaign at now: from PrescaleWindow before
// the earliest launchAt among invitations still open, enough pods for the sum
// of their expectedPeakRPS; MinReplicas otherwise, and once every invitation
// is exhausted, expired or paused.
func floor(cfg FleetConfig, invs []v1alpha1.Invitation, now time.Time) int32 {
	var open []v1alpha1.Invitation
	for _, inv := range invs {
		switch phase(&inv, inv.Status.Used, true, now) {
		case v1alpha1.PhaseActive:
			open = append(open, inv)
		}
	}
	var earliest time.Time
	var rps int64
	for _, inv := range open {
		if inv.Spec.LaunchAt == nil || inv.Spec.ExpectedPeakRPS == 0 {
			continue
		}
		if earliest.IsZero() || inv.Spec.LaunchAt.Time.Before(earliest) {
			earliest = inv.Spec.LaunchAt.Time
		}
		rps += int64(inv.Spec.ExpectedPeakRPS)
	}
	if earliest.IsZero() || now.Before(earliest.Add(-cfg.PrescaleWindow)) || cfg.PodCapacityRPS <= 0 {
		return cfg.MinReplicas
	}
	pods := (rps + int64(cfg.PodCapacityRPS) - 1) / int64(cfg.PodCapacityRPS)
	return int32(min(max(pods, int64(cfg.MinReplicas)), int64(cfg.MaxReplicas)))
}

// nextFleetChange is when floor may change without any event: the start of
// the pre-scaling window of a future launch. Zero when there is none.
func nextFleetChange(cfg FleetConfig, invs []v1alpha1.Invitation, now time.Time) time.Time {
	var next time.Time
	for _, inv := range invs {
		if inv.Spec.LaunchAt == nil {
			continue
		}
		if at := inv.Spec.LaunchAt.Add(-cfg.PrescaleWindow); at.After(now) && (next.IsZero() || at.Before(next)) {
			next = at
		}
	}
	return next
}

func desiredDeployment(cfg FleetConfig, c campaign) *appsv1ac.DeploymentApplyConfiguration {
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
		WithPorts(corev1ac.ContainerPort().WithName("http").WithContainerPort(httpPort).WithProtocol(corev1.ProtocolTCP)).
		WithEnv(
			corev1ac.EnvVar().WithName("MONGODB_URI").WithValueFrom(corev1ac.EnvVarSource().
				WithSecretKeyRef(corev1ac.SecretKeySelector().WithName(cfg.MongoSecretName).WithKey(cfg.MongoSecretKey))),
			corev1ac.EnvVar().WithName("MONGODB_DATABASE").WithValue(cfg.MongoDatabase),
			// A fleet loads only the codes its routes send it.
			corev1ac.EnvVar().WithName("CAMPAIGN").WithValue(c.Name),
			corev1ac.EnvVar().WithName("LISTEN_ADDR").WithValue(":"+strconv.Itoa(httpPort)),
			corev1ac.EnvVar().WithName("DRAIN_DELAY").WithValue(cfg.DrainDelay.String()),
			corev1ac.EnvVar().WithName("SHUTDOWN_TIMEOUT").WithValue(cfg.ShutdownTimeout.String()),
			// Without a mail server, emails go to files on this volume (the
			// root filesystem is read-only).
			corev1ac.EnvVar().WithName("MAIL_DIR").WithValue("/var/spool/velvetrope"),
		).
		WithVolumeMounts(corev1ac.VolumeMount().WithName("mail-spool").WithMountPath("/var/spool/velvetrope")).
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
			WithLabelSelector(metav1ac.LabelSelector().WithMatchLabels(selectorLabels(c.Name)))
	}
	return appsv1ac.Deployment(fleetName(c.Name), c.Namespace).
		WithLabels(fleetLabels(c.Name)).
		WithSpec(appsv1ac.DeploymentSpec().
			// No replicas: the HPA owns them, and a field we never apply is
			// a field we never fight over.
			WithSelector(metav1ac.LabelSelector().WithMatchLabels(selectorLabels(c.Name))).
			WithStrategy(appsv1ac.DeploymentStrategy().WithType(appsv1.RollingUpdateDeploymentStrategyType).
				WithRollingUpdate(appsv1ac.RollingUpdateDeployment().
					WithMaxUnavailable(intstr.FromInt32(0)).
					WithMaxSurge(intstr.FromString("25%")))).
			WithTemplate(corev1ac.PodTemplateSpec().
				WithLabels(fleetLabels(c.Name)).
				WithSpec(corev1ac.PodSpec().
					WithTerminationGracePeriodSeconds(grace).
					WithSecurityContext(corev1ac.PodSecurityContext().
						WithRunAsNonRoot(true).
						WithRunAsUser(65532).
						WithSeccompProfile(corev1ac.SeccompProfile().WithType(corev1.SeccompProfileTypeRuntimeDefault))).
					WithTopologySpreadConstraints(spread("topology.kubernetes.io/zone"), spread("kubernetes.io/hostname")).
					WithVolumes(corev1ac.Volume().WithName("mail-spool").WithEmptyDir(corev1ac.EmptyDirVolumeSource())).
					WithContainers(container))))
}

func desiredService(c campaign) *corev1ac.ServiceApplyConfiguration {
	return corev1ac.Service(fleetName(c.Name), c.Namespace).
		WithLabels(fleetLabels(c.Name)).
		WithSpec(corev1ac.ServiceSpec().
			WithSelector(selectorLabels(c.Name)).
			WithPorts(corev1ac.ServicePort().WithName("http").WithPort(80).WithTargetPort(intstr.FromString("http")).WithProtocol(corev1.ProtocolTCP)))
}

func desiredHPA(cfg FleetConfig, c campaign, minReplicas int32) *autoscalingv2ac.HorizontalPodAutoscalerApplyConfiguration {
	return autoscalingv2ac.HorizontalPodAutoscaler(fleetName(c.Name), c.Namespace).
		WithLabels(fleetLabels(c.Name)).
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
		WithSpec(policyv1ac.PodDisruptionBudgetSpec().
			WithMaxUnavailable(intstr.FromInt32(1)).
			// An unready pod serves nobody: evicting it never blocks a
			// node drain.
			WithUnhealthyPodEvictionPolicy(policyv1.AlwaysAllow).
			WithSelector(metav1ac.LabelSelector().WithMatchLabels(selectorLabels(c.Name))))
}
