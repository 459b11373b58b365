package staff

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/velvetrope/velvetrope/internal/invite"
	"github.com/velvetrope/velvetrope/internal/testbed"
)

var mongo *testbed.Mongo

func TestMain(m *testing.M) { testbed.MainWithMongo(m, &mongo) }

// invitations stands in for the Kubernetes side: two Invitations and the
// Events recorded on them.
type invitations struct {
	mu     sync.Mutex
	events []string
}

func (f *invitations) Code(_ context.Context, ns, name string) (string, error) {
	codes := map[string]string{"beta/twitter-reg1": "twitter-reg1", "beta/telegram-test": "telegram-test"}
	if c, ok := codes[ns+"/"+name]; ok {
		return c, nil
	}
	return "", ErrNotFound
}

func (f *invitations) Revoked(_ context.Context, ns, name, note string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, ns+"/"+name+": "+note)
}

func TestStaffAPI(t *testing.T) {
	ctx := context.Background()
	st := mongo.Store(t,
		invite.Invitation{Code: "twitter-reg1", MaxUses: 10, State: invite.StateActive, Campaign: "twitter", Owner: "beta/twitter-reg1"},
		invite.Invitation{Code: "telegram-test", MaxUses: 10, State: invite.StateActive, Campaign: "telegram", Owner: "beta/telegram-test"})
	at := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	var claims []invite.Redemption
	for i, raw := range []string{"Ann@Example.com", "=HYPERLINK@example.com", "bob@example.com"} {
		e, err := invite.ParseEmail(raw, invite.DefaultFolding)
		if err != nil {
			t.Fatal(raw, err)
		}
		code := "twitter-reg1"
		if i == 2 {
			code = "telegram-test"
		}
		claims = append(claims, invite.Redemption{Code: code, Slot: i, Email: e, Nonce: raw, RedeemedAt: at.Add(time.Duration(i) * time.Minute), Lang: "ru"})
	}
	for _, r := range st.Claim(ctx, claims) {
		if r.Status != invite.ClaimInserted {
			t.Fatalf("claim: %+v", r)
		}
	}
	invs := &invitations{}
	srv := httptest.NewServer(NewHandler(Handler{Store: st, Invitations: invs, User: func(*http.Request) string { return "alice" }, Log: logr.Discard()}))
	defer srv.Close()
	do := func(method, path, accept, body string) (int, string, http.Header) {
		req, _ := http.NewRequest(method, srv.URL+prefix+path, strings.NewReader(body))
		req.Header.Set("Accept", accept)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(b), resp.Header
	}

	if code, body, _ := do("GET", "", "", ""); code != 200 || !strings.Contains(body, `"invitations/redemptions"`) {
		t.Errorf("discovery: %d %s", code, body)
	}

	code, body, _ := do("GET", "/namespaces/beta/invitations/twitter-reg1/redemptions", "application/json", "")
	var list RedemptionList
	if err := json.Unmarshal([]byte(body), &list); err != nil || code != 200 {
		t.Fatalf("list: %d %s %v", code, body, err)
	}
	if list.Code != "twitter-reg1" || len(list.Redemptions) != 2 || list.Redemptions[0].Email != "Ann@Example.com" ||
		list.Redemptions[0].Language != "ru" || list.Redemptions[0].Mail != "pending" || !list.Redemptions[0].RedeemedAt.Equal(at) {
		t.Errorf("list: %+v", list)
	}

	code, body, h := do("GET", "/namespaces/beta/invitations/twitter-reg1/redemptions", "text/csv", "")
	rows, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if err != nil || code != 200 || h.Get("Content-Type") != "text/csv; charset=utf-8" {
		t.Fatalf("csv: %d %s %v", code, body, err)
	}
	if len(rows) != 3 || strings.Join(rows[0], ",") != "email,redeemed_at,language,mail" || rows[1][0] != "Ann@Example.com" ||
		rows[2][0] != "'=HYPERLINK@example.com" || rows[1][1] != "2026-11-24T12:00:00Z" {
		t.Errorf("csv rows %q: a header, one row per redemption, no formula a spreadsheet would run", rows)
	}

	// Revoking: scoped to the Invitation's code, by any spelling of the
	// person, with an Event holding only a hash of the email.
	if code, body, _ := do("POST", "/namespaces/beta/invitations/twitter-reg1/revocations", "", `{"email":"bob@example.com"}`); code != 404 || !strings.Contains(body, `"kind":"Status"`) {
		t.Errorf("revoking another code's redemption: %d %s", code, body)
	}
	if code, body, _ := do("POST", "/namespaces/beta/invitations/twitter-reg1/revocations", "", `{"email":"ann@EXAMPLE.com"}`); code != 200 || !strings.Contains(body, "Ann@Example.com") {
		t.Errorf("revoke: %d %s", code, body)
	}
	if n, _ := st.Used(ctx, "twitter-reg1"); n != 1 {
		t.Errorf("%d redemptions left, want 1", n)
	}
	if code, _, _ := do("POST", "/namespaces/beta/invitations/twitter-reg1/revocations", "", `{"email":"ann@example.com"}`); code != 404 {
		t.Errorf("revoking twice: %d", code)
	}
	if len(invs.events) != 1 || strings.Contains(strings.ToLower(invs.events[0]), "ann@") || !strings.Contains(invs.events[0], EmailHash("ann@example.com")) ||
		!strings.Contains(invs.events[0], "alice") {
		t.Errorf("events %q: one, naming the user and a hash, never the email", invs.events)
	}

	for _, bad := range []struct{ method, path, body string }{
		{"POST", "/namespaces/beta/invitations/twitter-reg1/revocations", `{"email":"not an email"}`},
		{"POST", "/namespaces/beta/invitations/twitter-reg1/revocations", `{"mail":"ann@example.com"}`},
		{"POST", "/namespaces/beta/invitations/twitter-reg1/revocations", `[`},
	} {
		if code, body, _ := do(bad.method, bad.path, "", bad.body); code != 400 || !strings.Contains(body, `"reason":"BadRequest"`) {
			t.Errorf("%s %s: %d %s", bad.body, bad.path, code, body)
		}
	}
	if code, _, _ := do("GET", "/namespaces/beta/invitations/nope/redemptions", "", ""); code != 404 {
		t.Errorf("unknown Invitation: %d", code)
	}
	if code, _, _ := do("DELETE", "/namespaces/beta/invitations/twitter-reg1/redemptions", "", ""); code != 405 {
		t.Errorf("DELETE: %d", code)
	}
}
