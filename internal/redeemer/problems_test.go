package redeemer

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// problemStatus is every problem code a client can get, with its status:
// the rows of problemTable and the generic 500.
func problemStatus() map[string]int {
	m := map[string]int{internalProblem.code: internalProblem.status}
	for _, k := range problemTable {
		m[k.code] = k.status
	}
	return m
}

// TestPageMessages holds the landing page to the problem table: a message in
// every language for every outcome, none for a code the table lacks. enhance.js
// gets its codes from the page (msgs.codes); it must not grow its own list.
func TestPageMessages(t *testing.T) {
	want := problemStatus()
	want["redeemed"], want["already-redeemed"] = 201, 200
	for code := range want {
		if _, ok := resultOf[code]; !ok {
			t.Errorf("resultOf has no message for %q", code)
		}
	}
	for code, key := range resultOf {
		if _, ok := want[code]; !ok {
			t.Errorf("resultOf maps %q, which is neither a success nor in problemTable", code)
		}
		for lang, msgs := range strings2 {
			if msgs[key] == "" {
				t.Errorf("%s: no text for %q (the message for %s)", lang, key, code)
			}
		}
	}
	delete(want, "redeemed")
	delete(want, "already-redeemed")
	for _, m := range regexp.MustCompile(`['"]([a-z-]+)['"]`).FindAllStringSubmatch(enhanceJS, -1) {
		if _, ok := want[m[1]]; ok {
			t.Errorf("enhance.js names problem code %q; it should look codes up in msgs.codes", m[1])
		}
	}
	for _, m := range regexp.MustCompile(`msgs\.(\w+)`).FindAllStringSubmatch(enhanceJS, -1) {
		for lang, msgs := range strings2 {
			if _, ok := msgs[m[1]]; !ok && m[1] != "codes" {
				t.Errorf("enhance.js uses msgs.%s, which %s lacks", m[1], lang)
			}
		}
	}
}

// TestAPIDocProblems holds the status table of docs/api.md to the problem
// table. In the table's "when" column a lower-case word in backticks is a
// problem code.
func TestAPIDocProblems(t *testing.T) {
	b, err := os.ReadFile("../../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	_, doc, _ := strings.Cut(string(b), "## `POST /invitations/{code}`")
	doc, _, _ = strings.Cut(doc, "\n## ")
	row := regexp.MustCompile("(?m)^\\| `(\\d{3})[^`]*` \\| ([^|]*) \\|")
	name := regexp.MustCompile("`([a-z]+(?:-[a-z]+)*)`")
	got := map[string]int{}
	for _, r := range row.FindAllStringSubmatch(doc, -1) {
		status, _ := strconv.Atoi(r[1])
		for _, n := range name.FindAllStringSubmatch(r[2], -1) {
			if s, ok := got[n[1]]; ok && s != status {
				t.Errorf("docs/api.md gives %q both %d and %d", n[1], s, status)
			}
			got[n[1]] = status
		}
	}
	want := problemStatus()
	for code, status := range want {
		if s, ok := got[code]; !ok {
			t.Errorf("docs/api.md does not name %q (%d)", code, status)
		} else if s != status {
			t.Errorf("docs/api.md gives %q status %d, want %d", code, s, status)
		}
	}
	for code, status := range got {
		if _, ok := want[code]; !ok {
			t.Errorf("docs/api.md names %q (%d), which is not in problemTable", code, status)
		}
	}
}
