package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/velvetrope/velvetrope/internal/testbed"
)

// browser starts headless Chromium (Debian's, which .ci/run installs) with
// the flags this network-less machine needs. Without Chromium the test fails
// and says how to get it; VELVETROPE_SKIP_BROWSER=1 skips it on purpose.
func browser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("VELVETROPE_SKIP_BROWSER") == "1" {
			t.Skip("VELVETROPE_SKIP_BROWSER=1: the real-browser test is skipped on request")
		}
		t.Fatal("chromium is not installed: apt-get install chromium (CI's .ci/run does), or set VELVETROPE_SKIP_BROWSER=1 to skip this test knowingly")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(420, 760))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() { cancelTimeout(); cancel(); cancelAlloc() })
	return ctx
}

// screenshots go to out/screenshots (git-ignored), the test's output
// directory; docs/screenshots holds the copies the docs link to.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	root, err := testbed.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "out", "screenshots")
	os.MkdirAll(dir, 0o755)
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// submit types email into the form, submits it and waits for the result.
func submit(ctx context.Context, email string) (string, error) {
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS("#email"))); err != nil {
		return "", err
	}
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[any](`document.getElementById('email').value = ''; document.getElementById('result').textContent = ''`)); err != nil {
		return "", err
	}
	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.CSS("#email"), email)); err != nil {
		return "", err
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("button[type=submit]"))); err != nil {
		return "", err
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.getElementById('result').textContent.length > 0 && !document.querySelector('button').disabled`,
		chromedp.WithPollingTimeout(20*time.Second))); err != nil {
		return "", err
	}
	return chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#result")))
}

func navigate(t *testing.T, ctx context.Context, url, textOf string) string {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatal(err)
	}
	text, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(textOf)))
	if err != nil {
		t.Fatal(err)
	}
	return text
}

func TestLandingPageInABrowser(t *testing.T) {
	e := newEnv(t, active("browser", 2), active("nojs", 5))
	r := e.redeemer("--game-name", "Starfall")
	ctx := browser(t)
	base := "http://" + r.Addr + "/invitations/"

	if text := navigate(t, ctx, base+"browser?lang=ru", "h1"); !strings.Contains(text, "Закрытый бета-тест") {
		t.Errorf("Russian heading: %q", text)
	}
	screenshot(t, ctx, "ru-open")
	if text := navigate(t, ctx, base+"browser?lang=en", "h1"); !strings.Contains(text, "Join the Starfall closed beta") {
		t.Errorf("English heading: %q", text)
	}
	screenshot(t, ctx, "en-open")

	steps := []struct {
		email, want, shot string
	}{
		{"Browser.Player@example.com", "You're in!", "en-redeemed"},
		{"browser.player+again@example.com", "already redeemed", "en-already"},
		{"not an email", "valid email", "en-invalid"},
	}
	for _, s := range steps {
		got, err := submit(ctx, s.email)
		if err != nil || !strings.Contains(got, s.want) {
			t.Fatalf("%s: result %q, %v; want %q", s.email, got, err, s.want)
		}
		screenshot(t, ctx, s.shot)
	}
	if invalid, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS("#email"), "aria-invalid")); err != nil || invalid.Value != "true" {
		t.Errorf("an invalid email marks the field (aria-invalid=%q, %v)", invalid.Value, err)
	}

	// The second and last place, then the page says the code is full.
	if got, err := submit(ctx, "second@example.com"); err != nil || !strings.Contains(got, "You're in!") {
		t.Fatalf("second: %q, %v", got, err)
	}
	// A new visitor (the page is cached for 5 s, so this tab would still
	// show its copy): the code is full, and there is no form.
	if text := navigate(t, ctx, base+"browser?lang=en&from=share", ".state"); !strings.Contains(text, "every place on this invitation is taken") {
		t.Errorf("full: %q", text)
	}
	screenshot(t, ctx, "en-full")

	// Without JavaScript the plain form works: POST, redirect, result page.
	noJS := chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true})
		return err
	})
	if err := chromedp.Do(ctx, noJS,
		chromedp.Navigate(base+"nojs?lang=ru"),
		chromedp.SendKeys(chromedp.CSS("#email"), "nojs.player@example.com"),
		chromedp.Submit(chromedp.CSS("#redeem")),
		chromedp.WaitVisible(chromedp.CSS(".result.success"))); err != nil {
		t.Fatal(err)
	}
	if text, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#result"))); !strings.Contains(text, "Готово!") {
		t.Errorf("no-JS result: %q", text)
	}
	if location, _ := chromedp.Run(ctx, chromedp.Location()); !strings.Contains(location, "/invitations/nojs/result?outcome=redeemed") {
		t.Errorf("no-JS flow ended at %s", location)
	}
	screenshot(t, ctx, "ru-nojs-redeemed")
	if n, _ := e.store.Used(context.Background(), "nojs"); n != 1 {
		t.Errorf("no-JS redemption stored %d, want 1", n)
	}
}
