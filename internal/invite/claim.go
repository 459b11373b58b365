package invite

import "time"

// Redemption is one person holding one slot of one code.
type Redemption struct {
	Code       string
	Slot       int
	Email      Email
	Nonce      string // identifies the request that wrote it; see ClaimInserted
	RedeemedAt time.Time
	Lang       string    // the player's language ("en", "ru"), for their email
	Mail       MailState // where their instructions email is (read back only)
}

// Outcome of a successful redemption request.
type Outcome int

const (
	// Redeemed: this request took a new slot.
	Redeemed Outcome = iota + 1
	// AlreadyRedeemed: the same person already holds a slot of the same code;
	// answering success again makes the request safe to retry.
	AlreadyRedeemed
)

// ClaimStatus is what storage says about one attempted slot claim.
type ClaimStatus int

const (
	// ClaimInserted: the slot is ours. Also returned when the slot holds a
	// redemption with the claim's nonce, which is how a retried write that had
	// in fact succeeded is recognised.
	ClaimInserted ClaimStatus = iota + 1
	// ClaimSlotTaken: somebody else holds the slot; Holder says who.
	ClaimSlotTaken
	// ClaimSlotClosed: the slot is closed (maxUses was lowered); try another.
	ClaimSlotClosed
	// ClaimEmailTaken: the person already holds a slot, maybe of another
	// code; Holder is that redemption.
	ClaimEmailTaken
	// ClaimEmailConflict: the claim met a duplicate key that its slot does
	// not explain (the slot was free when read), so the person's email is
	// held, maybe by another code: who holds it is a separate, slower read
	// (the claim's batch does not wait for it). Never final.
	ClaimEmailConflict
	// ClaimRetry: the conflict vanished before it could be explained (a
	// redemption was deleted meanwhile); try again.
	ClaimRetry
	// ClaimFailed: the write failed; Err says why.
	ClaimFailed
)

// ClaimResult is the answer for one claim of a batch.
type ClaimResult struct {
	Status ClaimStatus
	Holder Redemption // for ClaimSlotTaken and ClaimEmailTaken
	Tally  int64      // the tally (see Tally) of the document that decided: ours, the slot's or the holder's
	Err    error      // for ClaimFailed
}

// Unanswered returns the indexes of results left zero: claims a partial
// answer (a look-up in hints) did not decide, which go on to the next step.
func Unanswered(results []ClaimResult) []int {
	var rest []int
	for i, r := range results {
		if r.Status == 0 {
			rest = append(rest, i)
		}
	}
	return rest
}

// Settle turns a storage answer into the answer for the person who claimed
// slot of code. done is false when the request must try another slot.
func Settle(code string, email Email, r ClaimResult) (out Outcome, done bool, err error) {
	switch r.Status {
	case ClaimInserted:
		return Redeemed, true, nil
	case ClaimSlotTaken:
		if r.Holder.Email.Canonical == email.Canonical {
			return AlreadyRedeemed, true, nil
		}
		return 0, false, nil
	case ClaimEmailTaken:
		if r.Holder.Code == code {
			return AlreadyRedeemed, true, nil
		}
		return 0, true, ErrUsedElsewhere
	case ClaimRetry, ClaimSlotClosed, ClaimEmailConflict:
		return 0, false, nil
	default:
		if r.Err == nil {
			return 0, true, ErrUnavailable
		}
		return 0, true, r.Err
	}
}
