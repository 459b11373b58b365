package regtoken

import (
	"os"
	"strings"
	"testing"
)

// TestDocsShowTheExample: docs/registration.md shows example_test.go as it
// is, and the token TestFormat pins, so the page cannot drift from the code.
func TestDocsShowTheExample(t *testing.T) {
	doc, err := os.ReadFile("../../docs/registration.md")
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile("example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), "```go\n"+string(example)+"```\n") {
		t.Error("docs/registration.md must show pkg/regtoken/example_test.go verbatim, in a ```go block")
	}
	for _, want := range []string{sign(t, mustKey("example-key-do-not-use-0123456789"), exampleGrant), "EUSj4Ek4"} {
		if !strings.Contains(string(doc), want) {
			t.Errorf("docs/registration.md does not show %s", want)
		}
	}
}
