package redeemer_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/velvetrope/velvetrope/internal/redeemer"
)

// TestPageRecountsInABrowser: in headless Chromium, the page's script says
// the places left again after each answer about the code, without a reload;
// and coming back to the page shows the count after the redemption, not
// the browser's copy from before. (test/e2e/browser_test.go covers the rest
// of the page against the real binary.)
func TestPageRecountsInABrowser(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("VELVETROPE_SKIP_BROWSER") == "1" {
			t.Skip("VELVETROPE_SKIP_BROWSER=1: the real-browser test is skipped on request")
		}
		t.Fatal("chromium is not installed: apt-get install chromium (CI's .ci/run does), or set VELVETROPE_SKIP_BROWSER=1 to skip this test knowingly")
	}
	r := startReplica(t, newStore(t, active("recount", 3)), redeemer.Config{Brands: redeemer.Brands{Default: redeemer.Branding{Title: "Starfall", Accent: "#aa3300"}}})
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.UserDataDir(t.TempDir()))...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	defer cancelTimeout()

	url := r.URL + "/invitations/recount?lang=en"
	state := func() string {
		t.Helper()
		text, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#state")))
		if err != nil {
			t.Fatal(err)
		}
		return text
	}
	// submit redeems email through the page and waits until the state line
	// says want.
	submit := func(email, want string) {
		t.Helper()
		if _, err := chromedp.Run(ctx, chromedp.Evaluate[any](`document.getElementById('email').value = ''`)); err != nil {
			t.Fatal(err)
		}
		if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.CSS("#email"), email), chromedp.Click(chromedp.CSS("button[type=submit]"))); err != nil {
			t.Fatal(err)
		}
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.getElementById('state').textContent.indexOf(`+jsString(want)+`) >= 0`,
			chromedp.WithPollingTimeout(20*time.Second))); err != nil {
			t.Fatalf("after redeeming %s the page says %q, want %q (%v)", email, state(), want, err)
		}
	}

	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatal(err)
	}
	if got := state(); !strings.Contains(got, "3 places left") {
		t.Fatalf("before: %q", got)
	}
	submit("first@example.com", "2 places left")

	// Back to the page: the browser revalidates its copy (max-age=0) and
	// gets the new count.
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatal(err)
	}
	if got := state(); !strings.Contains(got, "2 places left") {
		t.Fatalf("the page again after redeeming: %q, want 2 places left", got)
	}

	// Others take the rest; the first player, answered "already", sees
	// that the code is now full.
	for _, email := range []string{"second@example.com", "third@example.com"} {
		if got := redeem(t, r.Client(), r.URL, "recount", email); got.status != 201 {
			t.Fatalf("%s: %d", email, got.status)
		}
	}
	submit("first@example.com", "every place on this invitation is taken")
}

// jsString quotes s for a JavaScript expression.
func jsString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}
