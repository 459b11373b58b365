// Package controllers holds the Invitation reconciler: it writes invitations
// to MongoDB, reports their usage, and runs a redeemer fleet per campaign.
// It never imports net/http or the MongoDB driver (storage comes in through
// Store).
package controllers

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	kerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	ctrlevent "sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	v1alpha1 "github.com/velvetrope/velvetrope/api/v1alpha1"
	"github.com/velvetrope/velvetrope/internal/invite"
	"github.com/velvetrope/velvetrope/internal/mail"
)

// Store is what the reconciler needs from MongoDB.
type Store interface {
	// PutInvitation writes the code and closes or reopens slots so that
	// storage admits exactly maxUses people (invite.PlanSlots).
	PutInvitation(ctx context.Context, inv invite.Invitation) error
	// BalanceSlots does the slot part again, for revocations since.
	BalanceSlots(ctx context.Context, code string) error
	// MailTemplates are the templates MongoDB holds for code.
	MailTemplates(ctx context.Context, code string) (map[string]string, error)
	// HoldsInvitation says whether MongoDB holds inv as PutInvitation
	// would write it (one read by _id).
	HoldsInvitation(ctx context.Context, inv invite.Invitation) (bool, error)
	// Tallies and MailByCode summarise every code at once, and CodeTimes
	// reads the changed codes' latest redemption and oldest pending email
	// in one query (usageBoard).
	Tallies(ctx context.Context) (map[string]invite.Tally, error)
	MailByCode(ctx context.Context) (map[string]invite.MailCounts, error)
	CodeTimes(ctx context.Context, latest, pending []string) (last, oldestPending map[string]time.Time, err error)
	// Ping tells a slow read from MongoDB not answering.
	Ping(ctx context.Context) error
}

const (
	// Finalizer keeps an Invitation until its code is revoked in MongoDB.
	Finalizer = "velvetrope.io/revoke"
	// FieldOwner is the server-side apply field manager for fleet objects.
	FieldOwner   = "velvetrope-operator"
	campaignKey  = "spec.campaign"
	codeKey      = "effectiveCode"
	inactiveSync = time.Minute
	// storeTimeout bounds each MongoDB step of a pass, so an outage shows
	// on every Invitation within seconds instead of queueing passes behind
	// slow server selections.
	storeTimeout = 3 * time.Second
)

// InvitationReconciler reconciles Invitation objects.
type InvitationReconciler struct {
	Client client.Client
	// Reader reads ConfigMaps uncached (mgr.GetAPIReader()): caching every
	// ConfigMap of the cluster for a few templates would cost more memory
	// than the occasional GET.
	Reader   client.Reader
	Store    Store
	Recorder events.EventRecorder
	Now      func() time.Time
	Fleet    FleetConfig
	Routes   RouteConfig
	// UsageInterval is how often an Active invitation's usage is re-read:
	// at most one status write per invitation per interval, whatever the
	// crowd does.
	UsageInterval time.Duration
	// MailDelayAfter is how old a pending email may get before the
	// MailDelivered condition says delivery is stuck.
	MailDelayAfter time.Duration
	// Workers is how many Invitations are reconciled at once [4].
	Workers int

	written *written     // set up by SetupWithManager
	board   *usageBoard  // likewise
	passes  *fleetPasses // likewise
	fleets  *fleetWatch  // likewise
}

// resync bounds how long an unchanged write may be skipped.
const resync = 5 * time.Minute

// +kubebuilder:rbac:groups=velvetrope.io,resources=invitations,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=velvetrope.io,resources=invitations/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=velvetrope.io,resources=invitations/finalizers,verbs=update
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=autoscaling,resources=horizontalpodautoscalers,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=policy,resources=poddisruptionbudgets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=networking.k8s.io,resources=networkpolicies;ingresses,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=gateway.networking.k8s.io,resources=httproutes,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get

// Reconcile brings one Invitation, its MongoDB document and its campaign's
// fleet in line, then writes its status once.
func (r *InvitationReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	inv := &v1alpha1.Invitation{}
	if err := r.Client.Get(ctx, req.NamespacedName, inv); err != nil {
		if apierrors.IsNotFound(err) {
			forgetMetrics(req.Namespace, req.Name)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !inv.DeletionTimestamp.IsZero() {
		return r.reconcileDelete(ctx, inv)
	}
	if base := inv.DeepCopy(); controllerutil.AddFinalizer(inv, Finalizer) {
		// A patch, not an update: it cannot overwrite a spec edited since
		// we read the object.
		if err := r.Client.Patch(ctx, inv, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
			return ctrl.Result{}, err
		}
	}

	var obs observation
	var results []ctrl.Result
	var errs []error
	for _, step := range []func(context.Context, *v1alpha1.Invitation, *observation) (ctrl.Result, error){
		r.reconcileSeed, r.reconcileUsage, r.reconcileFleet, r.reconcileRoutes,
	} {
		res, err := step(ctx, inv, &obs)
		results = append(results, res)
		errs = append(errs, err)
	}

	next := computeStatus(inv, inv.Status, obs, r.Now(), r.MailDelayAfter)
	if err := r.writeStatus(ctx, inv, next); err != nil {
		return ctrl.Result{}, kerrors.NewAggregate(append(errs, err))
	}
	recordMetrics(inv, next)
	results = append(results, r.requeue(inv, next, obs))
	// A result or an error, not both: with an error controller-runtime
	// retries with backoff and ignores the result.
	if err := kerrors.NewAggregate(errs); err != nil {
		return ctrl.Result{}, err
	}
	return soonest(results...), nil
}

// writeStatus writes next as inv's status when it differs, then emits the
// events of the transition.
func (r *InvitationReconciler) writeStatus(ctx context.Context, inv *v1alpha1.Invitation, next v1alpha1.InvitationStatus) error {
	prev := inv.Status
	if equality.Semantic.DeepEqual(prev, next) {
		return nil
	}
	patch := client.MergeFrom(inv.DeepCopy())
	inv.Status = next
	if err := r.Client.Status().Patch(ctx, inv, patch); err != nil {
		return err
	}
	for _, e := range transitions(prev, next) {
		kind := corev1.EventTypeNormal
		if e.warning {
			kind = corev1.EventTypeWarning
		}
		r.Recorder.Eventf(inv, nil, kind, e.reason, e.action, "%s", e.note)
	}
	return nil
}

// reconcileSeed writes the invitation to MongoDB as the spec says.
func (r *InvitationReconciler) reconcileSeed(ctx context.Context, inv *v1alpha1.Invitation, obs *observation) (ctrl.Result, error) {
	doc, key := Document(inv), "seed/"+inv.Namespace+"/"+inv.Name
	templates, tmplErr := r.mailTemplates(ctx, inv)
	if tmplErr != nil && !errors.Is(tmplErr, errTemplateInvalid) {
		obs.seedErr = tmplErr
		return ctrl.Result{}, tmplErr
	}
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	if tmplErr != nil {
		// Broken templates never hold back pause, revoke, maxUses or
		// expiry (the kill switch): write those with the templates
		// MongoDB already has, and say what is wrong.
		var err error
		if templates, err = r.Store.MailTemplates(ctx, doc.Code); err != nil {
			obs.seedErr = err
			return ctrl.Result{}, fmt.Errorf("seeding %s: %w", inv.EffectiveCode(), err)
		}
	}
	doc.MailTemplates = templates
	if r.written.unchanged(key, doc, r.Now()) {
		obs.seeded = true
		return templatesResult(obs, tmplErr, r.UsageInterval), nil
	}
	if r.written.same(key, doc) {
		// The resync of an unchanged spec: write only if someone changed
		// the document behind our back. Every Invitation comes here every
		// resync; a write would cost a slot balance and make every
		// redeemer reload every invitation.
		holds, err := r.Store.HoldsInvitation(ctx, doc)
		if err == nil && holds {
			r.written.record(key, doc, r.Now())
			obs.seeded = true
			return templatesResult(obs, tmplErr, r.UsageInterval), nil
		}
	}
	if err := r.Store.PutInvitation(ctx, doc); err != nil {
		obs.seedErr = err
		if errors.Is(err, invite.ErrCodeTaken) {
			// Retrying will not help until the other owner goes away;
			// the status says so and we look again now and then.
			return ctrl.Result{RequeueAfter: inactiveSync}, nil
		}
		return ctrl.Result{}, fmt.Errorf("seeding %s: %w", inv.EffectiveCode(), err)
	}
	r.written.record(key, doc, r.Now())
	obs.seeded = true
	return templatesResult(obs, tmplErr, r.UsageInterval), nil
}

// templatesResult reports an invalid templates ConfigMap once the rest of
// the invitation is in MongoDB, and looks again until someone fixes it.
func templatesResult(obs *observation, tmplErr error, every time.Duration) ctrl.Result {
	if tmplErr == nil {
		return ctrl.Result{}
	}
	obs.seedErr = tmplErr
	return ctrl.Result{RequeueAfter: every}
}

// errTemplateInvalid marks a templates ConfigMap that is missing or does not
// render; the code keeps its previous templates in MongoDB meanwhile.
var errTemplateInvalid = errors.New("invalid mail templates")

// mailTemplates reads and validates spec.mail.templatesConfigMap.
func (r *InvitationReconciler) mailTemplates(ctx context.Context, inv *v1alpha1.Invitation) (map[string]string, error) {
	if inv.Spec.Mail == nil || inv.Spec.Mail.TemplatesConfigMap == "" {
		return nil, nil
	}
	var cm corev1.ConfigMap
	key := client.ObjectKey{Namespace: inv.Namespace, Name: inv.Spec.Mail.TemplatesConfigMap}
	if err := r.Reader.Get(ctx, key, &cm); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("%w: ConfigMap %s not found", errTemplateInvalid, key.Name)
		}
		return nil, err
	}
	if _, err := mail.DefaultTemplates().Override(cm.Data); err != nil {
		return nil, fmt.Errorf("%w: ConfigMap %s: %v", errTemplateInvalid, key.Name, err)
	}
	return cm.Data, nil
}

// reconcileUsage reads how many people redeemed the code and how their mail
// is doing from the usage board, in memory (the board reads MongoDB in the
// background and wakes the Invitations whose figures changed), and gives
// back closed slots that revocations freed when the code's tally changed.
func (r *InvitationReconciler) reconcileUsage(ctx context.Context, inv *v1alpha1.Invitation, obs *observation) (ctrl.Result, error) {
	if !obs.seeded {
		return ctrl.Result{}, nil
	}
	code := inv.EffectiveCode()
	u, mail, read, err := r.board.get(code)
	if err != nil {
		obs.usageErr = err
		return ctrl.Result{}, fmt.Errorf("reading usage of %s: %w", code, err)
	}
	if !read {
		// The board reads it now and wakes this Invitation then.
		obs.usageUnread = true
		return ctrl.Result{}, nil
	}
	obs.usage, obs.mail = u, mail
	if t, due := r.board.balanceDue(code); due {
		ctx, cancel := context.WithTimeout(ctx, storeTimeout)
		defer cancel()
		if err := r.Store.BalanceSlots(ctx, code); err != nil {
			obs.usageErr = err
			return ctrl.Result{}, fmt.Errorf("balancing the slots of %s: %w", code, err)
		}
		r.board.balancedAt(code, t)
	}
	return ctrl.Result{}, nil
}

// reconcileFleet applies the fleet of the invitation's campaign, hands on
// the fleets this invitation owned in campaigns it left, and observes
// whether the fleet serves and whether its mail has a server.
func (r *InvitationReconciler) reconcileFleet(ctx context.Context, inv *v1alpha1.Invitation, obs *observation) (ctrl.Result, error) {
	mail, mailKnown := r.fleets.mailSecret(ctx, inv.Namespace)
	obs.mailSecret, obs.mailConfigured, obs.mailKnown = r.Fleet.MailSecretName, mail.Configured, mailKnown
	if p, ok := r.passes.get(inv); ok && !mailKnown {
		// The Secret could not be read: keep the fleet as it was rather
		// than roll it without, then with, the version.
		mail.Version = p.mailVersion
	}
	next, settled := r.fleetSettled(inv, mail.Version)
	if settled {
		// A periodic pass over an Invitation whose spec the fleet already
		// reflects: its campaign holds maybe thousands of Invitations, and
		// any change to one of them, or to a fleet object, makes its own
		// full pass. (Status, usage and fleet health are read every pass
		// regardless.)
		p, _ := r.passes.get(inv)
		obs.prescale = p.prescale
	} else {
		c, err := r.campaign(ctx, inv.Namespace, inv.Spec.Campaign)
		if err == nil {
			obs.prescale = prescaleAt(r.Fleet, c.Invitations, r.Now())
			err = r.applyFleet(ctx, c, obs.prescale, mail.Version)
		}
		if err == nil {
			err = r.handOnFleets(ctx, inv)
		}
		if err != nil {
			obs.fleetErr = fmt.Errorf("fleet of campaign %s: %w", inv.Spec.Campaign, err)
			return ctrl.Result{}, obs.fleetErr
		}
		next = nextFleetChange(r.Fleet, c.Invitations, r.Now())
		r.passes.record(inv, fleetPass{next: next, prescale: obs.prescale, mailVersion: mail.Version})
	}
	h, err := r.fleets.fleet(ctx, inv.Namespace, inv.Spec.Campaign)
	if err != nil {
		obs.fleetErr = fmt.Errorf("fleet of campaign %s: %w", inv.Spec.Campaign, err)
		return ctrl.Result{}, obs.fleetErr
	}
	obs.fleet, obs.fleetKnown = h, true
	if !next.IsZero() {
		return ctrl.Result{RequeueAfter: next.Sub(r.Now())}, nil
	}
	return ctrl.Result{}, nil
}

// reconcileRoutes applies the invitation's HTTPRoute and Ingress, as
// configured, once MongoDB holds its code: a code another Invitation owns is
// not routed to this one's fleet. Kubernetes' garbage collector deletes them
// with the Invitation (they are its controlled children).
func (r *InvitationReconciler) reconcileRoutes(ctx context.Context, inv *v1alpha1.Invitation, obs *observation) (ctrl.Result, error) {
	if !obs.seeded {
		return ctrl.Result{}, nil
	}
	routes := map[string]runtime.ApplyConfiguration{}
	if len(r.Routes.Gateways) > 0 {
		routes["HTTPRoute"] = desiredHTTPRoute(r.Routes, inv)
	}
	if r.Routes.Ingress {
		routes["Ingress"] = desiredIngress(r.Routes, inv)
	}
	for kind, obj := range routes {
		if err := r.apply(ctx, "route/"+kind+"/"+inv.Namespace+"/"+inv.Name, obj); err != nil {
			obs.fleetErr = fmt.Errorf("%s of %s: %w", kind, inv.EffectiveCode(), err)
			return ctrl.Result{}, obs.fleetErr
		}
	}
	return ctrl.Result{}, nil
}

// fleetSettled reports whether inv's campaign fleet needs no pass now: this
// generation of inv already had a full one, every fleet object was applied
// recently and no watch event has marked one changed since, and no
// pre-scaling change is due. next is when the next one is.
func (r *InvitationReconciler) fleetSettled(inv *v1alpha1.Invitation, mailVersion string) (next time.Time, ok bool) {
	p, ok := r.passes.get(inv)
	if !ok || p.generation != inv.Generation || p.campaign != inv.Spec.Campaign || !p.next.IsZero() && !r.Now().Before(p.next) ||
		p.mailVersion != mailVersion {
		return time.Time{}, false
	}
	kinds := fleetKinds
	if r.Fleet.NetworkPolicy {
		kinds = append(slices.Clone(kinds), "NetworkPolicy")
	}
	for _, kind := range kinds {
		if !r.written.fresh(fleetKey(kind, inv.Namespace, inv.Spec.Campaign), r.Now()) {
			return time.Time{}, false
		}
	}
	return p.next, true
}

// fleetPasses remembers, per Invitation, which generation last had a full
// fleet pass.
type fleetPasses struct {
	mu   sync.Mutex
	last map[types.UID]fleetPass
}

type fleetPass struct {
	generation  int64
	campaign    string
	next        time.Time // the next pre-scaling change; zero: none
	prescale    prescale  // as of the pass
	mailVersion string    // of the mail Secret the fleet was applied with
}

func (f *fleetPasses) get(inv *v1alpha1.Invitation) (fleetPass, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.last[inv.UID]
	return p, ok
}

func (f *fleetPasses) record(inv *v1alpha1.Invitation, p fleetPass) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p.generation, p.campaign = inv.Generation, inv.Spec.Campaign
	f.last[inv.UID] = p
}

func (f *fleetPasses) forget(inv *v1alpha1.Invitation) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.last, inv.UID)
}

// reconcileDelete revokes the code (its redemptions stay: they are records of
// real people), hands the campaign's fleet on to the invitations that stay,
// then lets the object go. The fleet of a campaign's last invitation, and
// the invitation's routes, go with it: Kubernetes' garbage collector deletes
// objects whose owners are all gone.
func (r *InvitationReconciler) reconcileDelete(ctx context.Context, inv *v1alpha1.Invitation) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(inv, Finalizer) {
		return ctrl.Result{}, nil
	}
	// A code owned by another Invitation is not ours to revoke.
	r.written.forget("seed/" + inv.Namespace + "/" + inv.Name)
	r.passes.forget(inv)
	sctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	if err := r.Store.PutInvitation(sctx, domainInvitation(inv, invite.StateRevoked)); err != nil && !errors.Is(err, invite.ErrCodeTaken) {
		// The object stays (the finalizer holds it) until MongoDB takes the
		// revocation; status and a Warning say so, and the retries back
		// off to at most a minute (SetupWithManager).
		err = fmt.Errorf("revoking %s: %w", inv.EffectiveCode(), err)
		return ctrl.Result{}, kerrors.NewAggregate([]error{err, r.writeStatus(ctx, inv, revokePending(inv, err))})
	}
	if err := r.handOnFleets(ctx, inv); err != nil {
		return ctrl.Result{}, err
	}
	log.FromContext(ctx).Info("Revoked invitation", "code", inv.EffectiveCode())
	base := inv.DeepCopy()
	controllerutil.RemoveFinalizer(inv, Finalizer)
	return ctrl.Result{}, r.Client.Patch(ctx, inv, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{}))
}

// campaign lists the live invitations of a campaign (not being deleted).
func (r *InvitationReconciler) campaign(ctx context.Context, namespace, name string) (campaign, error) {
	var list v1alpha1.InvitationList
	// Read only, and a campaign may hold thousands of invitations: no copy
	// of each on every pass.
	if err := r.Client.List(ctx, &list, client.InNamespace(namespace), client.MatchingFields{campaignKey: name}, client.UnsafeDisableDeepCopy); err != nil {
		return campaign{}, err
	}
	c := campaign{Namespace: namespace, Name: name}
	for _, inv := range list.Items {
		if inv.DeletionTimestamp.IsZero() {
			c.Invitations = append(c.Invitations, inv)
		}
	}
	return c, nil
}

// liveCampaign is campaign read from the API server, not the cache.
func (r *InvitationReconciler) liveCampaign(ctx context.Context, namespace, name string) (campaign, error) {
	var list v1alpha1.InvitationList
	if err := r.Reader.List(ctx, &list, client.InNamespace(namespace)); err != nil {
		return campaign{}, err
	}
	c := campaign{Namespace: namespace, Name: name}
	for _, inv := range list.Items {
		if inv.DeletionTimestamp.IsZero() && inv.Spec.Campaign == name {
			c.Invitations = append(c.Invitations, inv)
		}
	}
	return c, nil
}

// applyFleet server-side applies the campaign's children, skipping those
// applied unchanged recently (see written).
func (r *InvitationReconciler) applyFleet(ctx context.Context, c campaign, p prescale, mailVersion string) error {
	if len(c.Invitations) == 0 {
		// A pass that read its Invitation just before the deletion began,
		// and the campaign just after: applying now would strip the
		// owners, and nothing would ever collect the fleet.
		return nil
	}
	objs := map[string]runtime.ApplyConfiguration{
		"Deployment":              desiredDeployment(r.Fleet, c, mailVersion),
		"Service":                 desiredService(c),
		"HorizontalPodAutoscaler": desiredHPA(r.Fleet, c, p.Floor),
		"PodDisruptionBudget":     desiredPDB(c),
	}
	if r.Fleet.NetworkPolicy {
		objs["NetworkPolicy"] = desiredNetworkPolicy(c)
	}
	for kind, obj := range objs {
		if err := r.apply(ctx, fleetKey(kind, c.Namespace, c.Name), obj); err != nil {
			return err
		}
	}
	return nil
}

// apply server-side applies obj unless it was applied unchanged recently
// under key (see written).
func (r *InvitationReconciler) apply(ctx context.Context, key string, obj runtime.ApplyConfiguration) error {
	now := r.Now()
	if r.written.unchanged(key, obj, now) {
		return nil
	}
	// Recorded before the apply: Apply fills obj with the server's answer
	// (status, resourceVersion, managedFields), which would never digest
	// equal to the next pass's desired object.
	r.written.record(key, obj, now)
	if err := r.Client.Apply(ctx, obj, client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
		r.written.forget(key)
		return err
	}
	return nil
}

// fleetKinds are the kinds of a fleet's objects, as applyFleet names them.
var fleetKinds = []string{"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"}

func fleetKey(kind, namespace, campaign string) string {
	return "fleet/" + kind + "/" + namespace + "/" + campaign
}

// handOnFleets re-applies the fleet of every campaign whose objects inv owns
// but which inv no longer keeps alive (it moved to another campaign, or is
// being deleted), so ownership passes to the Invitations that stay. A
// campaign left with none has its fleet deleted: the garbage collector
// would keep it while inv, a live owner, exists.
func (r *InvitationReconciler) handOnFleets(ctx context.Context, inv *v1alpha1.Invitation) error {
	var deployments appsv1.DeploymentList
	if err := r.Client.List(ctx, &deployments, client.InNamespace(inv.Namespace), client.MatchingLabels{LabelManagedBy: managedBy}, client.UnsafeDisableDeepCopy); err != nil {
		return err
	}
	var errs []error
	for _, d := range deployments.Items {
		name := d.Labels[LabelCampaign]
		if name == inv.Spec.Campaign && inv.DeletionTimestamp.IsZero() || !ownedBy(d.OwnerReferences, inv.UID) {
			continue
		}
		c, err := r.campaign(ctx, inv.Namespace, name)
		if err == nil && !inv.DeletionTimestamp.IsZero() {
			// The owners must be alive: a cache that has not seen other
			// deletions yet could hand the fleet to Invitations already
			// gone, and the garbage collector would delete a live fleet.
			c, err = r.liveCampaign(ctx, inv.Namespace, name)
		}
		switch {
		case err != nil:
			errs = append(errs, err)
		case len(c.Invitations) > 0:
			r.forgetFleet(inv.Namespace, name)
			mail, _ := r.fleets.mailSecret(ctx, inv.Namespace)
			errs = append(errs, r.applyFleet(ctx, c, prescaleAt(r.Fleet, c.Invitations, r.Now()), mail.Version))
		case inv.DeletionTimestamp.IsZero():
			errs = append(errs, r.deleteFleet(ctx, inv.Namespace, name))
		}
	}
	return errors.Join(errs...)
}

func ownedBy(refs []metav1.OwnerReference, uid types.UID) bool {
	return slices.ContainsFunc(refs, func(o metav1.OwnerReference) bool { return o.UID == uid })
}

// forgetFleet makes the next applyFleet of a campaign apply every object.
func (r *InvitationReconciler) forgetFleet(namespace, campaign string) {
	for _, kind := range append(fleetKinds, "NetworkPolicy") {
		r.written.forget(fleetKey(kind, namespace, campaign))
	}
}

// deleteFleet deletes a campaign's fleet whose last Invitation moved away.
func (r *InvitationReconciler) deleteFleet(ctx context.Context, namespace, campaign string) error {
	r.forgetFleet(namespace, campaign)
	var errs []error
	for _, obj := range []client.Object{&appsv1.Deployment{}, &corev1.Service{}, &autoscalingv2.HorizontalPodAutoscaler{},
		&policyv1.PodDisruptionBudget{}, &networkingv1.NetworkPolicy{}} {
		obj.SetNamespace(namespace)
		obj.SetName(fleetName(campaign))
		if err := r.Client.Delete(ctx, obj); err != nil && !apierrors.IsNotFound(err) && !meta.IsNoMatchError(err) {
			errs = append(errs, err)
		}
	}
	log.FromContext(ctx).Info("Deleted fleet of a campaign without invitations", "campaign", campaign)
	return errors.Join(errs...)
}

// requeue says when to look again without any event. Usage needs none: the
// usage board wakes the Invitations whose figures changed. What no event
// announces: a fleet that does not serve may show its cause (a pod's
// waiting reason) without any Deployment change; an edited templates
// ConfigMap; expiresAt; a pending email turning late (MailDelayed). Otherwise a pass now and then (written's
// resync heals edits made behind the operator's back).
func (r *InvitationReconciler) requeue(inv *v1alpha1.Invitation, st v1alpha1.InvitationStatus, obs observation) ctrl.Result {
	after := inactiveSync
	// ConfigMaps are read, not watched (caching every ConfigMap of the
	// cluster for a few templates would cost more than these reads).
	if obs.fleetKnown && !obs.fleet.Available || inv.Spec.Mail != nil && inv.Spec.Mail.TemplatesConfigMap != "" {
		after = r.UsageInterval
	}
	if inv.Spec.ExpiresAt != nil {
		if until := inv.Spec.ExpiresAt.Sub(r.Now()); until > 0 && until < after {
			after = until + 10*time.Millisecond // land after the instant, not on it
		}
	}
	if !obs.mail.OldestPending.IsZero() {
		if until := obs.mail.OldestPending.Add(r.MailDelayAfter).Sub(r.Now()); until >= 0 && until < after {
			after = until + 10*time.Millisecond
		}
	}
	return ctrl.Result{RequeueAfter: after}
}

// soonest keeps the earliest requeue of several steps.
func soonest(results ...ctrl.Result) ctrl.Result {
	var out ctrl.Result
	for _, r := range results {
		if r.RequeueAfter > 0 && (out.RequeueAfter == 0 || r.RequeueAfter < out.RequeueAfter) {
			out.RequeueAfter = r.RequeueAfter
		}
	}
	return out
}

// Document is the one Invitation -> MongoDB document mapping: what the
// operator seeds for inv (active or paused as the spec says, owned by
// "<namespace>/<name>"), and what `make run-local` seeds for the same YAML.
// The mail templates come from a ConfigMap and are the caller's to add.
func Document(inv *v1alpha1.Invitation) invite.Invitation {
	state := invite.StateActive
	if inv.Spec.Paused {
		state = invite.StatePaused
	}
	return domainInvitation(inv, state)
}

func domainInvitation(inv *v1alpha1.Invitation, state invite.State) invite.Invitation {
	// The API server defaults spec.campaign; a local run without one
	// reads the YAML as written.
	campaign := cmp.Or(inv.Spec.Campaign, "default")
	out := invite.Invitation{Code: inv.EffectiveCode(), MaxUses: int(inv.Spec.MaxUses), State: state, Campaign: campaign,
		Owner: inv.Namespace + "/" + inv.Name}
	if inv.Spec.ExpiresAt != nil {
		out.ExpiresAt = inv.Spec.ExpiresAt.Time
	}
	return out
}

// SetupWithManager registers the reconciler: it watches Invitations and the
// fleet objects, so a hand-edited or deleted child is put back.
func (r *InvitationReconciler) SetupWithManager(ctx context.Context, mgr ctrl.Manager) error {
	switch {
	case r.Client == nil, r.Reader == nil, r.Store == nil, r.Recorder == nil, r.Now == nil:
		return errors.New("InvitationReconciler needs Client, Reader, Store, Recorder and Now")
	case r.UsageInterval <= 0 || r.MailDelayAfter <= 0:
		return errors.New("InvitationReconciler needs a positive UsageInterval and MailDelayAfter")
	case r.Fleet.Image == "" || r.Fleet.MongoSecretName == "":
		return errors.New("InvitationReconciler needs a fleet image and a MongoDB Secret")
	}
	r.written = newWritten(resync)
	r.board = newUsageBoard(r.Store, r.UsageInterval, r.Now, mgr.GetLogger().WithName("usage"))
	r.passes = &fleetPasses{last: map[types.UID]fleetPass{}}
	if r.Workers <= 0 {
		r.Workers = 4
	}
	if err := mgr.GetFieldIndexer().IndexField(ctx, &v1alpha1.Invitation{}, campaignKey, func(o client.Object) []string {
		return []string{o.(*v1alpha1.Invitation).Spec.Campaign}
	}); err != nil {
		return err
	}
	if err := mgr.GetFieldIndexer().IndexField(ctx, &v1alpha1.Invitation{}, codeKey, func(o client.Object) []string {
		return []string{o.(*v1alpha1.Invitation).EffectiveCode()}
	}); err != nil {
		return err
	}
	r.fleets = newFleetWatch(mgr.GetClient(), r.Reader, r.Fleet.MailSecretName, r.UsageInterval, r.Now)
	children := builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool {
		return o.GetLabels()[LabelManagedBy] == managedBy
	}), childChanged())
	b := ctrl.NewControllerManagedBy(mgr).
		// Our own status writes change no generation: they wake nobody.
		For(&v1alpha1.Invitation{}, builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{}, predicate.LabelChangedPredicate{}, finalizersChanged()))).
		Watches(&appsv1.Deployment{}, r.onFleetEvent("Deployment"), children, builder.WithPredicates(notOnlyScaled())).
		Watches(&corev1.Service{}, r.onFleetEvent("Service"), children).
		Watches(&autoscalingv2.HorizontalPodAutoscaler{}, r.onFleetEvent("HorizontalPodAutoscaler"), children).
		Watches(&policyv1.PodDisruptionBudget{}, r.onFleetEvent("PodDisruptionBudget"), children).
		// What no watch announces: usage in MongoDB, the mail Secret. Run
		// by the controller, so only the leader polls.
		WatchesRawSource(source.Func(func(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
			go r.board.run(ctx, func(codes []string, all bool) { r.wakeCodes(ctx, q, codes, all) })
			go r.fleets.runMail(ctx, r.UsageInterval, func(namespace string) { r.wakeNamespace(ctx, q, namespace) })
			return nil
		}))
	if r.Fleet.NetworkPolicy {
		b = b.Watches(&networkingv1.NetworkPolicy{}, r.onFleetEvent("NetworkPolicy"), children)
	}
	if len(r.Routes.Gateways) > 0 {
		b = b.Watches(&gatewayv1.HTTPRoute{}, r.onRouteEvent("HTTPRoute"), children)
	}
	if r.Routes.Ingress {
		b = b.Watches(&networkingv1.Ingress{}, r.onRouteEvent("Ingress"), children)
	}
	return b.Named("invitation").
		WithOptions(controller.Options{MaxConcurrentReconciles: r.Workers,
			// Failed passes (MongoDB down) are retried with backoff, but
			// never more than a minute apart: recovery shows soon.
			RateLimiter: workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](250*time.Millisecond, time.Minute)}).
		Complete(r)
}

// wakeCodes queues the Invitations of codes, or every Invitation.
func (r *InvitationReconciler) wakeCodes(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request], codes []string, all bool) {
	if all {
		r.wakeNamespace(ctx, q, "")
		return
	}
	for _, code := range codes {
		var list v1alpha1.InvitationList
		if err := r.Client.List(ctx, &list, client.MatchingFields{codeKey: code}, client.UnsafeDisableDeepCopy); err != nil {
			log.FromContext(ctx).Error(err, "Listing the Invitations of a code", "code", code)
			continue
		}
		for _, inv := range list.Items {
			q.Add(reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&inv)})
		}
	}
}

// wakeNamespace queues the Invitations of namespace ("": all).
func (r *InvitationReconciler) wakeNamespace(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request], namespace string) {
	var list v1alpha1.InvitationList
	if err := r.Client.List(ctx, &list, client.InNamespace(namespace), client.UnsafeDisableDeepCopy); err != nil {
		log.FromContext(ctx).Error(err, "Listing Invitations", "namespace", namespace)
		return
	}
	for _, inv := range list.Items {
		q.Add(reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&inv)})
	}
}

// childChanged lets through what the reconciler acts on: a child's spec,
// labels or owners changed by someone, a deletion, and a fleet Deployment
// starting or ceasing to serve; not the status churn of scaling and
// rollouts, which would requeue a whole campaign every few seconds in a
// crowd.
func childChanged() predicate.Funcs {
	return predicate.Funcs{UpdateFunc: func(e ctrlevent.UpdateEvent) bool {
		was, is := e.ObjectOld, e.ObjectNew
		if is.GetGeneration() == 0 { // a Service: no generation, hardly any status
			return was.GetResourceVersion() != is.GetResourceVersion()
		}
		if was.GetGeneration() != is.GetGeneration() || !maps.Equal(was.GetLabels(), is.GetLabels()) ||
			!equality.Semantic.DeepEqual(was.GetOwnerReferences(), is.GetOwnerReferences()) {
			return true
		}
		d1, ok1 := was.(*appsv1.Deployment)
		d2, ok2 := is.(*appsv1.Deployment)
		return ok1 && ok2 && judgeFleet(d1, nil).Available != judgeFleet(d2, nil).Available
	}}
}

// notOnlyScaled drops the Deployment updates in which the HPA only changed
// spec.replicas: each scaling step would otherwise requeue the campaign.
func notOnlyScaled() predicate.Funcs {
	return predicate.Funcs{UpdateFunc: func(e ctrlevent.UpdateEvent) bool {
		d1, ok1 := e.ObjectOld.(*appsv1.Deployment)
		d2, ok2 := e.ObjectNew.(*appsv1.Deployment)
		if !ok1 || !ok2 || d1.Generation == d2.Generation {
			return true
		}
		s1, s2 := d1.Spec.DeepCopy(), d2.Spec.DeepCopy()
		s1.Replicas, s2.Replicas = nil, nil
		return !equality.Semantic.DeepEqual(s1, s2) || !maps.Equal(d1.Labels, d2.Labels) ||
			judgeFleet(d1, nil).Available != judgeFleet(d2, nil).Available
	}}
}

// finalizersChanged passes the updates that start a deletion or change
// finalizers (neither changes the generation of every kind).
func finalizersChanged() predicate.Funcs {
	return predicate.Funcs{UpdateFunc: func(e ctrlevent.UpdateEvent) bool {
		return !e.ObjectOld.GetDeletionTimestamp().Equal(e.ObjectNew.GetDeletionTimestamp()) ||
			!slices.Equal(e.ObjectOld.GetFinalizers(), e.ObjectNew.GetFinalizers())
	}}
}

// onRouteEvent maps an event on a route to the Invitation that controls it,
// and marks the route dirty, so a hand-edited or deleted route is put back.
func (r *InvitationReconciler) onRouteEvent(kind string) handler.EventHandler {
	return handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
		owner := metav1.GetControllerOf(o)
		if owner == nil || owner.Kind != "Invitation" {
			return nil
		}
		r.written.forget("route/" + kind + "/" + o.GetNamespace() + "/" + owner.Name)
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: owner.Name}}}
	})
}

// onFleetEvent maps an event on a fleet object to the invitations of its
// campaign, and marks the object dirty: someone (maybe a person) changed or
// deleted it, so the next pass applies it even if our desired state is the
// same as last time. Our own no-op applies cause no events, so this settles.
func (r *InvitationReconciler) onFleetEvent(kind string) handler.EventHandler {
	return handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
		r.written.forget(fleetKey(kind, o.GetNamespace(), o.GetLabels()[LabelCampaign]))
		return r.invitationsOfFleet(ctx, o)
	})
}

// invitationsOfFleet maps a fleet object to the invitations of its campaign.
func (r *InvitationReconciler) invitationsOfFleet(ctx context.Context, o client.Object) []reconcile.Request {
	c, err := r.campaign(ctx, o.GetNamespace(), o.GetLabels()[LabelCampaign])
	if err != nil {
		return nil
	}
	reqs := make([]reconcile.Request, len(c.Invitations))
	for i, inv := range c.Invitations {
		reqs[i] = reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&inv)}
	}
	return reqs
}
