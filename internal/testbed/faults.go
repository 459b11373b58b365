package testbed

import (
	"context"
	"sync"
	"time"

	"github.com/velvetrope/velvetrope/internal/claim"
	"github.com/velvetrope/velvetrope/internal/invite"
)

// Faults wraps a real store and injects what the FerretDB test bed cannot
// produce: a primary stepping down after a write landed, a write concern that
// times out, an outage after the view was loaded, a database that hangs. Errors
// given to it should come from mongostore.Classify of a driver error, so the
// classification under test is the product's own. It is the only stepdown
// any automated test sees, on the test bed and on a replica set at
// MONGODB_URI alike: no test steps a real primary down (docs/reliability.md).
type Faults struct {
	claim.Store

	mu        sync.Mutex
	claimErrs []claimFault  // the next Claim calls fail, in order
	down      error         // every operation fails while set
	held      chan struct{} // while set, Claim waits until it is closed
	claimed   int           // claims that reached the real store
}

type claimFault struct {
	err  error
	land bool // the write reaches storage first, then its answer is lost
}

// FailNextClaim makes the next Claim fail with err for every claim of the
// batch; with land the batch is written first (the outcome is lost, not the
// write).
func (f *Faults) FailNextClaim(err error, land bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.claimErrs = append(f.claimErrs, claimFault{err, land})
}

// Down makes every operation fail with err; Down(nil) ends the outage.
func (f *Faults) Down(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = err
}

// Hold makes every Claim wait (a slow database) until Release, or until its
// context ends.
func (f *Faults) Hold() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.held == nil {
		f.held = make(chan struct{})
	}
}

// Release lets held and future Claims through.
func (f *Faults) Release() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.held != nil {
		close(f.held)
		f.held = nil
	}
}

// Claimed is how many claims reached the real store.
func (f *Faults) Claimed() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.claimed
}

func (f *Faults) Invitations(ctx context.Context) ([]invite.Invitation, error) {
	if err := f.outage(); err != nil {
		return nil, err
	}
	return f.Store.Invitations(ctx)
}

func (f *Faults) InvitationsVersion(ctx context.Context) (string, error) {
	if err := f.outage(); err != nil {
		return "", err
	}
	return f.Store.InvitationsVersion(ctx)
}

func (f *Faults) Occupants(ctx context.Context, code string) ([]invite.Occupant, error) {
	if err := f.outage(); err != nil {
		return nil, err
	}
	return f.Store.Occupants(ctx, code)
}

func (f *Faults) Tallies(ctx context.Context) (map[string]invite.Tally, error) {
	if err := f.outage(); err != nil {
		return nil, err
	}
	return f.Store.Tallies(ctx)
}

func (f *Faults) Claim(ctx context.Context, claims []invite.Redemption) []invite.ClaimResult {
	f.mu.Lock()
	down, held := f.down, f.held
	var fault *claimFault
	if down == nil && len(f.claimErrs) > 0 {
		fault = &f.claimErrs[0]
		f.claimErrs = f.claimErrs[1:]
	}
	f.mu.Unlock()
	if held != nil {
		select {
		case <-held:
		case <-ctx.Done():
		}
	}
	failed := func(err error) []invite.ClaimResult {
		out := make([]invite.ClaimResult, len(claims))
		for i := range out {
			out[i] = invite.ClaimResult{Status: invite.ClaimFailed, Err: err}
		}
		return out
	}
	switch {
	case down != nil:
		return failed(down)
	case fault == nil:
		f.count(len(claims))
		return f.Store.Claim(ctx, claims)
	case fault.land:
		f.count(len(claims))
		f.Store.Claim(ctx, claims)
	}
	return failed(fault.err)
}

func (f *Faults) ExplainEmails(ctx context.Context, claims []invite.Redemption) []invite.ClaimResult {
	if err := f.outage(); err != nil {
		out := make([]invite.ClaimResult, len(claims))
		for i := range out {
			out[i] = invite.ClaimResult{Status: invite.ClaimFailed, Err: err}
		}
		return out
	}
	return f.Store.ExplainEmails(ctx, claims)
}

func (f *Faults) HintedHolders(ctx context.Context, claims []invite.Redemption) []invite.ClaimResult {
	if f.outage() != nil {
		return make([]invite.ClaimResult, len(claims))
	}
	return f.Store.HintedHolders(ctx, claims)
}

func (f *Faults) RecordHolders(ctx context.Context, claims []invite.Redemption) {
	if f.outage() == nil {
		f.Store.RecordHolders(ctx, claims)
	}
}

func (f *Faults) Lease(ctx context.Context, code string, blocks []int, holder string, ttl time.Duration) ([]bool, error) {
	if err := f.outage(); err != nil {
		return nil, err
	}
	return f.Store.Lease(ctx, code, blocks, holder, ttl)
}

func (f *Faults) count(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.claimed += n
}

func (f *Faults) outage() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.down
}
