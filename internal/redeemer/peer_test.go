package redeemer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/go-logr/logr"

	"github.com/velvetrope/velvetrope/internal/invite"
)

var testToken = PeerToken([]byte("mongodb://fleet"))

// peerLocal answers every claim with what its fields say.
type peerLocal struct {
	out   invite.Outcome
	err   error
	got   []invite.Email
	occ   []invite.Occupant
	known bool
}

func (l *peerLocal) RedeemHere(_ context.Context, _ string, email invite.Email, _ string) (invite.Outcome, error) {
	l.got = append(l.got, email)
	return l.out, l.err
}

func (l *peerLocal) OccupantsHere(string) ([]invite.Occupant, bool) { return l.occ, l.known }

// servePeer serves h on a loopback port as cmd/redeemer does, and returns
// its address.
func servePeer(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	ConfigurePeerServer(srv)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// TestAHandedOverClaimIsAnsweredAsTheWriterAnswered: every outcome and every
// error of the table comes back through the same row, so the player hears
// from the replica they asked what the writer would have told them.
func TestAHandedOverClaimIsAnsweredAsTheWriterAnswered(t *testing.T) {
	local := &peerLocal{}
	addr := servePeer(t, NewPeerHandler(Config{}, local, testToken, logr.Discard()))
	client := NewPeerClient(testToken)
	email, _ := invite.ParseEmail("Player.One+beta@GMail.com", invite.DefaultFolding)
	ctx := context.Background()

	for _, want := range []invite.Outcome{invite.Redeemed, invite.AlreadyRedeemed} {
		local.out, local.err = want, nil
		out, err, answered := client.Redeem(ctx, addr, "c", email, "de")
		if !answered || err != nil || out != want {
			t.Errorf("outcome %v came back as %v, %v, answered %v", want, out, err, answered)
		}
	}
	if last := local.got[len(local.got)-1]; last != email {
		t.Errorf("the writer parsed %+v; want %+v", last, email)
	}
	rows := 0
	for _, k := range problemTable {
		if k.err == nil || !slices.Contains([]error{invite.ErrUnknownCode, invite.ErrPaused, invite.ErrExhausted, invite.ErrExpired,
			invite.ErrRevoked, invite.ErrUsedElsewhere, invite.ErrBusy, invite.ErrUnavailable}, k.err) {
			continue // HTTP-level errors: never a claim's answer
		}
		rows++
		local.out, local.err = 0, fmt.Errorf("%w: at the writer", k.err)
		if k.err == invite.ErrUnavailable {
			local.err = &invite.UnavailableError{Reason: "not-primary", Err: errors.New("stepdown")}
		}
		_, err, answered := client.Redeem(ctx, addr, "c", email, "")
		got, _ := kindOf(err)
		if !answered || got.code != k.code {
			t.Errorf("%s came back as %v (row %s), answered %v", k.code, err, got.code, answered)
		}
		if k.err == invite.ErrUnavailable && invite.UnavailableReason(err) != "not-primary" {
			t.Errorf("storage failure's reason lost: %v", err)
		}
	}
	if rows != 8 {
		t.Errorf("%d domain rows in the table; this test knows 8", rows)
	}
	local.err = errors.New("a bug")
	if _, err, answered := client.Redeem(ctx, addr, "c", email, ""); !answered || err == nil {
		t.Errorf("an unexpected error came back as %v, answered %v", err, answered)
	} else if got, found := kindOf(err); found {
		t.Errorf("an unexpected error came back as row %s; want the generic 500", got.code)
	}
}

// TestNoAnswerMeansTheSenderWritesItself: a replica gone, or one that does
// not serve the peer route (an older version mid-rollout), is no answer.
func TestNoAnswerMeansTheSenderWritesItself(t *testing.T) {
	client := NewPeerClient(testToken)
	email, _ := invite.ParseEmail("a@example.com", invite.DefaultFolding)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	gone := ln.Addr().String()
	ln.Close()
	if _, _, answered := client.Redeem(context.Background(), gone, "c", email, ""); answered {
		t.Error("a closed port counted as an answer")
	}
	old := servePeer(t, http.NotFoundHandler())
	if _, _, answered := client.Redeem(context.Background(), old, "c", email, ""); answered {
		t.Error("a 404 counted as an answer")
	}
	if _, known := client.Occupants(context.Background(), old, "c"); known {
		t.Error("a 404 counted as known occupants")
	}
}

func TestTheWriterTellsOccupantsOnlyWhenItKnows(t *testing.T) {
	local := &peerLocal{occ: []invite.Occupant{{Slot: 3, Email: "a@example.com", Tally: 42}, {Slot: 7, Closed: true, Tally: 9}}}
	addr := servePeer(t, NewPeerHandler(Config{}, local, testToken, logr.Discard()))
	client := NewPeerClient(testToken)
	if _, known := client.Occupants(context.Background(), addr, "c"); known {
		t.Error("occupants the writer does not know for certain were told")
	}
	local.known = true
	occ, known := client.Occupants(context.Background(), addr, "c")
	if !known || !slices.Equal(occ, local.occ) {
		t.Errorf("Occupants = %v, %v; want %v", occ, known, local.occ)
	}
}

// TestThePeerPortServesOnlyTheFleet: without the fleet's token (another
// fleet, anything else that reaches a pod's IP) nothing is written and no
// holder is told; the sender hears no answer.
func TestThePeerPortServesOnlyTheFleet(t *testing.T) {
	local := &peerLocal{out: invite.Redeemed, occ: []invite.Occupant{{Slot: 1, Email: "a@example.com"}}, known: true}
	addr := servePeer(t, NewPeerHandler(Config{}, local, testToken, logr.Discard()))
	email, _ := invite.ParseEmail("a@example.com", invite.DefaultFolding)
	stranger := NewPeerClient(PeerToken([]byte("mongodb://another-fleet")))
	if _, _, answered := stranger.Redeem(context.Background(), addr, "c", email, ""); answered || len(local.got) != 0 {
		t.Errorf("a claim without the fleet's token was answered %v, written %d times", answered, len(local.got))
	}
	if _, known := stranger.Occupants(context.Background(), addr, "c"); known {
		t.Error("a code's holders were told to a request without the fleet's token")
	}
	resp, err := http.Post("http://"+addr+PeerClaimsPath, "application/json", strings.NewReader(`{"code":"c","email":"a@example.com","timeoutMs":1000}`))
	if err != nil || resp.StatusCode != http.StatusUnauthorized || len(local.got) != 0 {
		t.Errorf("a bare request: %v, %v; written %d times", resp, err, len(local.got))
	}
	if _, _, answered := NewPeerClient(testToken).Redeem(context.Background(), addr, "c", email, ""); !answered || len(local.got) != 1 {
		t.Error("the fleet's own token was refused")
	}
}
