package invite

import "errors"

// Errors returned by the redemption path. The HTTP layer maps each one to a
// status and a problem type in one table; wrap them with %w to add detail.
var (
	ErrUnknownCode  = errors.New("unknown invitation code")
	ErrInvalidEmail = errors.New("invalid email address")
	ErrPaused       = errors.New("invitation is paused")
	ErrExhausted    = errors.New("invitation is exhausted")
	ErrExpired      = errors.New("invitation has expired")
	ErrRevoked      = errors.New("invitation was revoked")
	// ErrUsedElsewhere: this person already redeemed a different code.
	ErrUsedElsewhere = errors.New("email already redeemed another invitation")
	// ErrUnavailable: storage cannot be reached; the outcome is unknown and
	// the request is safe to retry.
	ErrUnavailable = errors.New("storage unavailable")
	// ErrCodeTaken: another owner already manages this code.
	ErrCodeTaken = errors.New("invitation code belongs to another owner")
	// ErrBusy: this replica sheds load; retry shortly.
	ErrBusy = errors.New("too many requests in progress")
	// ErrNotRedeemed: nobody with this email holds a slot.
	ErrNotRedeemed = errors.New("no redemption for this email")
)

// UnavailableError is an unknown outcome from storage: the write may or may
// not have happened, so the answer is "retry" (503), never "failed". Reason
// names the kind of failure for metrics and logs: network, timeout,
// not-primary (a stepdown or shutdown), write-concern or other.
type UnavailableError struct {
	Reason string
	Err    error
}

func (e *UnavailableError) Error() string {
	return "storage unavailable (" + e.Reason + "): " + e.Err.Error()
}

// Is makes errors.Is(err, ErrUnavailable) hold, so one table row maps them.
func (e *UnavailableError) Is(target error) bool { return target == ErrUnavailable }

func (e *UnavailableError) Unwrap() error { return e.Err }

// UnavailableReason is the Reason of the UnavailableError in err's chain, or
// "" when there is none.
func UnavailableReason(err error) string {
	var u *UnavailableError
	if errors.As(err, &u) {
		return u.Reason
	}
	return ""
}
