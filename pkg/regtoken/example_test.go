package regtoken_test

import (
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/velvetrope/velvetrope/pkg/regtoken"
)

// The game's registration backend: the player followed the link in their
// invitation email and registers with an email address.
func Example() {
	// The secrets the redeemers sign with (MAIL_TOKEN_KEY): the current one
	// and, during a rotation, the one before it. Read them from your own
	// secret store; these are the examples of docs/registration.md.
	current, err := regtoken.NewKey([]byte("example-key-do-not-use-0123456789"))
	if err != nil {
		log.Fatal(err)
	}
	previous, err := regtoken.NewKey([]byte("previous-key-do-not-use-012345678"))
	if err != nil {
		log.Fatal(err)
	}
	verifier, err := regtoken.NewVerifier(current, previous)
	if err != nil {
		log.Fatal(err)
	}

	// The token from the link (?token=), and the email the player registers
	// with, in VelvetRope's canonical form (docs/registration.md).
	token := "vr2.EUSj4Ek4.AAAAAPSGVwAMdHdpdHRlci1yZWcxAm4woNPNSXEMdrxg_PZg5N985Q.7bqMkmlsu8NCkeD1bCTRrb25k6WWmnBRW3QLHYIWgjk"
	email := "player@example.com"

	claims, err := verifier.VerifyFor(token, email, time.Now())
	switch {
	case errors.Is(err, regtoken.ErrExpired):
		fmt.Println("This invitation link has expired.")
	case errors.Is(err, regtoken.ErrWrongEmail):
		fmt.Println("Register with the address your invitation was sent to.")
	case err != nil:
		fmt.Println("This is not a valid invitation link.")
	default:
		// Still yours to do: accept claims.RedemptionID once (a unique
		// key in your database), then create the account.
		fmt.Println("Welcome: code", claims.Code, "redemption", claims.RedemptionID)
	}
	// Output: Welcome: code twitter-reg1 redemption n0
}
