package invite

import "time"

// MailState is where a redemption's instructions email is.
type MailState string

const (
	MailPending MailState = "pending" // not sent yet (maybe retrying)
	MailSent    MailState = "sent"
	MailFailed  MailState = "failed" // given up: permanent error or too many attempts
)

// Outbound is a redemption whose email is due.
type Outbound struct {
	Redemption
	Lang     string // "en" or "ru": the language the player used
	Attempts int    // attempts made so far
}

// Attempt is the outcome of one delivery attempt, as recorded.
type Attempt struct {
	Number int
	State  MailState // sent, pending (will retry) or failed
	NextAt time.Time // for pending: when to try again
	Error  string    // for failures; never contains the address
	At     time.Time
}

// MailCounts is how a code's emails are doing.
type MailCounts struct {
	Pending, Sent, Failed int
	// OldestPending is when the oldest email not sent yet was redeemed
	// (zero when none is pending): an old one means delivery is stuck.
	OldestPending time.Time
}
