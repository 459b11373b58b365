package controllers

import (
	"errors"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/velvetrope/velvetrope/api/v1alpha1"
	"github.com/velvetrope/velvetrope/internal/invite"
)

// observation is what one reconcile pass found out; status is computed from
// it alone, by pure functions.
type observation struct {
	seeded bool              // MongoDB holds the invitation as specified
	usage  invite.Usage      // valid when usageErr is nil, seeded and not usageUnread
	mail   invite.MailCounts // likewise
	// usageUnread: the usage board has not read the code yet (a new code,
	// or the operator just started); it wakes the Invitation when it has.
	usageUnread bool
	seedErr     error
	usageErr    error
	fleetErr    error

	fleetKnown bool        // fleet was observed this pass
	fleet      fleetHealth // valid when fleetKnown
	prescale   prescale    // the campaign's, when fleetKnown
	// mailKnown says whether mailConfigured could be told (the mail Secret
	// was readable); mailSecret names it, for the message.
	mailKnown      bool
	mailConfigured mailSetup
	mailSecret     string
}

// Condition reasons.
const (
	ReasonServing           = "Serving"
	ReasonCodeConflict      = "CodeConflict"
	ReasonTemplateInvalid   = "TemplateInvalid"
	ReasonMongoUnavailable  = "MongoDBUnavailable"
	ReasonFleetFailed       = "FleetFailed"
	ReasonFleetProgressing  = "FleetProgressing"
	ReasonFleetUnavailable  = "FleetUnavailable"
	ReasonAvailable         = "Available"
	ReasonMaxReplicas       = "MaxReplicas"
	ReasonWithinMax         = "WithinMaxReplicas"
	ReasonMailNotConfigured = "MailNotConfigured"
	ReasonTokenKeyMissing   = "MailTokenKeyMissing"
	ReasonRevokePending     = "RevokePending"
	ReasonWithinLimit       = "WithinLimit"
	ReasonBelowUsage        = "MaxUsesBelowUsage"
	ReasonDelivering        = "Delivering"
	ReasonMailDelayed       = "MailDelayed"
	ReasonMailFailed        = "MailFailed"
)

// computeStatus derives the whole status from the spec, the previous status
// and what this pass observed. When MongoDB could not be read, the last known
// usage is kept rather than reported as zero. An email pending longer than
// mailDelay makes MailDelivered False: a failing mail server shows.
func computeStatus(inv *v1alpha1.Invitation, prev v1alpha1.InvitationStatus, obs observation, now time.Time, mailDelay time.Duration) v1alpha1.InvitationStatus {
	st := *prev.DeepCopy()
	st.Code = inv.EffectiveCode()
	usageKnown := obs.seeded && obs.usageErr == nil && !obs.usageUnread
	if usageKnown {
		st.Used = int32(obs.usage.Used)
		st.Mail = v1alpha1.MailStatus{Sent: int32(obs.mail.Sent), Pending: int32(obs.mail.Pending), Failed: int32(obs.mail.Failed)}
		st.LastRedemptionTime = nil
		if !obs.usage.LastRedemption.IsZero() {
			t := metav1.NewTime(obs.usage.LastRedemption)
			st.LastRedemptionTime = &t
		}
	}
	st.Remaining = max(inv.Spec.MaxUses-st.Used, 0)
	// The phase says what players get, so it follows what MongoDB holds:
	// a spec that could not be written (MongoDB down, code taken) keeps the
	// phase last written, never one the redeemers do not know about.
	switch {
	case obs.seeded:
		st.Phase = phase(inv, st.Used, true, now)
	case prev.Phase == "":
		st.Phase = v1alpha1.PhasePending
	}

	gen := inv.Generation
	ready := metav1.Condition{Type: v1alpha1.ConditionReady, ObservedGeneration: gen}
	switch err := firstErr(obs.seedErr, obs.usageErr); {
	case errors.Is(err, errTemplateInvalid):
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, ReasonTemplateInvalid, err.Error()
	case errors.Is(err, invite.ErrCodeTaken):
		ready.Status, ready.Reason = metav1.ConditionFalse, ReasonCodeConflict
		ready.Message = fmt.Sprintf("code %s belongs to another Invitation; choose another spec.code", st.Code)
	case err != nil:
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, ReasonMongoUnavailable, "MongoDB: "+err.Error()
	case obs.fleetErr != nil:
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, ReasonFleetFailed, obs.fleetErr.Error()
	case obs.fleetKnown && !obs.fleet.Available:
		// Starting pods are progress; a cause that will not go away by
		// itself (a missing Secret, an image that does not pull, a crash
		// loop) is a failure.
		ready.Status, ready.Reason = metav1.ConditionFalse, ReasonFleetUnavailable
		if obs.fleet.Reason == ReasonFleetProgressing {
			ready.Reason = ReasonFleetProgressing
		}
		ready.Message = fmt.Sprintf("the fleet of campaign %s does not serve yet: %s: %s", inv.Spec.Campaign, obs.fleet.Reason, obs.fleet.Message)
	case !usageKnown:
		// Serving says the usage was read: until the board has read it
		// (a second or so), Ready stays what it was.
		ready.Type = ""
	default:
		ready.Status, ready.Reason = metav1.ConditionTrue, ReasonServing
		ready.Message = fmt.Sprintf("%s: %d of %d used", st.Phase, st.Used, inv.Spec.MaxUses)
	}
	if ready.Type != "" {
		meta.SetStatusCondition(&st.Conditions, ready)
	}

	if obs.fleetKnown {
		// No pod counts in the message: they change with every scaling
		// step, and each change would be a status write.
		fleet := metav1.Condition{Type: v1alpha1.ConditionFleetAvailable, ObservedGeneration: gen,
			Status: metav1.ConditionTrue, Reason: ReasonAvailable, Message: "the campaign's pods serve players"}
		if !obs.fleet.Available {
			fleet.Status, fleet.Reason, fleet.Message = metav1.ConditionFalse, obs.fleet.Reason, obs.fleet.Message
		}
		meta.SetStatusCondition(&st.Conditions, fleet)
		if scaling, ok := scalingLimited(inv, obs.prescale, gen); ok {
			meta.SetStatusCondition(&st.Conditions, scaling)
		}
	}

	over := metav1.Condition{Type: v1alpha1.ConditionOverLimit, ObservedGeneration: gen,
		Status: metav1.ConditionFalse, Reason: ReasonWithinLimit, Message: "maxUses is at least the redemptions made"}
	if st.Used > inv.Spec.MaxUses {
		over.Status, over.Reason = metav1.ConditionTrue, ReasonBelowUsage
		over.Message = fmt.Sprintf("maxUses %d is below the %d redemptions already made; none is undone, the code stays full", inv.Spec.MaxUses, st.Used)
	}
	meta.SetStatusCondition(&st.Conditions, over)

	if usageKnown {
		mail := metav1.Condition{Type: v1alpha1.ConditionMailDelivered, ObservedGeneration: gen,
			Status: metav1.ConditionTrue, Reason: ReasonDelivering, Message: fmt.Sprintf("%d sent, %d pending", st.Mail.Sent, st.Mail.Pending)}
		switch {
		case obs.mailKnown && !obs.mailConfigured.SMTPHost:
			mail.Status, mail.Reason = metav1.ConditionFalse, ReasonMailNotConfigured
			mail.Message = fmt.Sprintf("no mail server: Secret %s in this namespace has no SMTP_HOST, so %d emails wait in MongoDB until it does", obs.mailSecret, st.Mail.Pending)
		case obs.mailKnown && !obs.mailConfigured.TokenKey:
			// The redeemers send nothing rather than sign links with a key
			// only one pod knows, which the game could not verify.
			mail.Status, mail.Reason = metav1.ConditionFalse, ReasonTokenKeyMissing
			mail.Message = fmt.Sprintf("no registration token key: Secret %s in this namespace has SMTP_HOST but no MAIL_TOKEN_KEY (at least 32 bytes; the game verifies links with it), "+
				"so the fleet sends no email and %d wait in MongoDB until it has one (docs/registration.md)", obs.mailSecret, st.Mail.Pending)
		case !obs.mail.OldestPending.IsZero() && now.Sub(obs.mail.OldestPending) > mailDelay:
			mail.Status, mail.Reason = metav1.ConditionFalse, ReasonMailDelayed
			mail.Message = fmt.Sprintf("%d emails pending, the oldest for %s: is the mail server failing?", st.Mail.Pending, now.Sub(obs.mail.OldestPending).Round(time.Second))
		case st.Mail.Failed > 0:
			mail.Status, mail.Reason = metav1.ConditionFalse, ReasonMailFailed
			mail.Message = fmt.Sprintf("%d emails given up (refused by the mail server or too many attempts), %d sent", st.Mail.Failed, st.Mail.Sent)
		}
		meta.SetStatusCondition(&st.Conditions, mail)
	}

	if obs.seedErr == nil && obs.usageErr == nil && obs.fleetErr == nil && !obs.usageUnread {
		st.ObservedGeneration = gen
	}
	return st
}

// revokePending is the status of a deleted Invitation whose code MongoDB has
// not taken the revocation of yet.
func revokePending(inv *v1alpha1.Invitation, err error) v1alpha1.InvitationStatus {
	st := *inv.Status.DeepCopy()
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: v1alpha1.ConditionReady, ObservedGeneration: inv.Generation,
		Status: metav1.ConditionFalse, Reason: ReasonRevokePending,
		Message: "deleted, but players can still redeem until MongoDB takes the revocation (retrying): " + err.Error()})
	return st
}

// scalingLimited says, for an Invitation that declares a launch, whether
// MaxReplicas holds its campaign's fleet below what the launches in their
// window expect. ok is false when it declares none.
func scalingLimited(inv *v1alpha1.Invitation, p prescale, gen int64) (c metav1.Condition, ok bool) {
	if inv.Spec.LaunchAt == nil || inv.Spec.ExpectedPeakRPS == 0 {
		return c, false
	}
	c = metav1.Condition{Type: v1alpha1.ConditionScalingLimited, ObservedGeneration: gen,
		Status: metav1.ConditionFalse, Reason: ReasonWithinMax, Message: fmt.Sprintf("the fleet's floor is %d pods", p.Floor)}
	if p.Capped() {
		c.Status, c.Reason = metav1.ConditionTrue, ReasonMaxReplicas
		c.Message = fmt.Sprintf("the campaign's launches expect %d req/s, %d pods, but the fleet may have at most %d (--fleet-max-replicas)", p.RPS, p.Wanted, p.Floor)
	}
	return c, true
}

// phase orders the states as the redeemers do (internal/invite): expired
// beats paused, paused beats full.
func phase(inv *v1alpha1.Invitation, used int32, seeded bool, now time.Time) v1alpha1.InvitationPhase {
	switch {
	case !seeded:
		return v1alpha1.PhasePending
	case inv.Spec.ExpiresAt != nil && !now.Before(inv.Spec.ExpiresAt.Time):
		return v1alpha1.PhaseExpired
	case inv.Spec.Paused:
		return v1alpha1.PhasePaused
	case used >= inv.Spec.MaxUses:
		return v1alpha1.PhaseExhausted
	}
	return v1alpha1.PhaseActive
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// event is one Kubernetes Event to emit.
type event struct {
	warning        bool
	reason, action string
	note           string
}

// transitions lists the events for a status change: phase changes and
// readiness lost. Nothing is emitted when nothing changed.
func transitions(prev, next v1alpha1.InvitationStatus) []event {
	var evs []event
	if next.Phase != prev.Phase {
		switch {
		case (prev.Phase == "" || prev.Phase == v1alpha1.PhasePending) && next.Phase != v1alpha1.PhasePending:
			evs = append(evs, event{reason: "Seeded", action: "Seed", note: fmt.Sprintf("Code %s is in MongoDB (%s)", next.Code, next.Phase)})
		case prev.Phase == v1alpha1.PhasePaused && next.Phase != v1alpha1.PhasePaused:
			evs = append(evs, event{reason: "Resumed", action: "Resume", note: fmt.Sprintf("Code %s is %s again", next.Code, next.Phase)})
		}
		switch next.Phase {
		case v1alpha1.PhaseExhausted:
			evs = append(evs, event{reason: "Exhausted", action: "Exhaust", note: fmt.Sprintf("All %d places of %s are taken", next.Used, next.Code)})
		case v1alpha1.PhaseExpired:
			evs = append(evs, event{reason: "Expired", action: "Expire", note: fmt.Sprintf("Code %s has expired", next.Code)})
		case v1alpha1.PhasePaused:
			evs = append(evs, event{reason: "Paused", action: "Pause", note: fmt.Sprintf("Code %s is paused", next.Code)})
		}
	}
	for _, typ := range []string{v1alpha1.ConditionReady, v1alpha1.ConditionFleetAvailable, v1alpha1.ConditionMailDelivered} {
		was, now := meta.FindStatusCondition(prev.Conditions, typ), meta.FindStatusCondition(next.Conditions, typ)
		// Pods starting is no failure: it makes no Warning.
		if now != nil && now.Status == metav1.ConditionFalse && now.Reason != ReasonFleetProgressing &&
			(was == nil || was.Status != metav1.ConditionFalse || was.Reason != now.Reason) {
			evs = append(evs, event{warning: true, reason: now.Reason, action: "Reconcile", note: now.Message})
		}
	}
	return evs
}
