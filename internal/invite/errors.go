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
)
