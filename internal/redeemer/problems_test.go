package redeemer

import (
	"maps"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
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
			if _, ok := msgs[m[1]]; !ok && m[1] != "codes" && m[1] != "states" {
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

// TestOpenAPIProblems holds docs/openapi.yaml to the problem table: a schema
// for every problem type, whose constants are the row's type URI, title,
// status and code, and none for a problem the table lacks. Each is an answer
// of some operation (or of components/responses) with its status. The
// document's enumerations of outcomes and states are the code's too.
func TestOpenAPIProblems(t *testing.T) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile("../../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		t.Fatal(err)
	}
	want := map[string]problemKind{internalProblem.code: internalProblem}
	for _, k := range problemTable {
		want[k.code] = k
	}
	constOf := func(s *openapi3.Schema, field string) any {
		if p := s.Properties[field]; p != nil && p.Value != nil {
			return p.Value.Const
		}
		return nil
	}
	schemaOf := map[string]string{} // problem code -> schema name
	for name, ref := range doc.Components.Schemas {
		code, ok := constOf(ref.Value, "code").(string)
		if !ok {
			continue
		}
		schemaOf[code] = name
		k, ok := want[code]
		if !ok {
			t.Errorf("docs/openapi.yaml: schema %s is problem %q, which is not in problemTable", name, code)
			continue
		}
		if got := constOf(ref.Value, "type"); got != ProblemTypeBase+k.code {
			t.Errorf("docs/openapi.yaml: %s: type %v, want %s", name, got, ProblemTypeBase+k.code)
		}
		if got := constOf(ref.Value, "title"); got != k.title {
			t.Errorf("docs/openapi.yaml: %s: title %v, want %q", name, got, k.title)
		}
		if got, _ := constOf(ref.Value, "status").(float64); int(got) != k.status {
			t.Errorf("docs/openapi.yaml: %s: status %v, want %d", name, constOf(ref.Value, "status"), k.status)
		}
		if len(ref.Value.AllOf) != 1 || ref.Value.AllOf[0].Ref != "#/components/schemas/Problem" {
			t.Errorf("docs/openapi.yaml: %s is not allOf Problem", name)
		}
	}
	for code, k := range want {
		if _, ok := schemaOf[code]; !ok {
			t.Errorf("docs/openapi.yaml has no schema for problem %q (%d %s)", code, k.status, k.title)
		}
	}

	// Where each problem schema is answered: status -> schema names.
	answered := map[string]map[int]bool{}
	collect := func(status int, r *openapi3.Response) {
		mt := r.Content.Get("application/problem+json")
		if mt == nil {
			return
		}
		refs := []*openapi3.SchemaRef{mt.Schema}
		refs = append(refs, mt.Schema.Value.OneOf...)
		for _, s := range refs {
			if name := strings.TrimPrefix(s.Ref, "#/components/schemas/"); name != "" {
				if answered[name] == nil {
					answered[name] = map[int]bool{}
				}
				answered[name][status] = true
			}
		}
	}
	for _, item := range doc.Paths.Map() {
		for _, op := range item.Operations() {
			for code, r := range op.Responses.Map() {
				status, _ := strconv.Atoi(code)
				collect(status, r.Value)
			}
		}
	}
	for name, r := range doc.Components.Responses {
		if name == "NotFound" {
			collect(http.StatusNotFound, r.Value)
		}
	}
	for code, name := range schemaOf {
		if k := want[code]; !answered[name][k.status] {
			t.Errorf("docs/openapi.yaml: no %d answer carries %s (problem %q)", k.status, name, code)
		}
	}

	// The result page's outcomes are the form's results; states are the
	// page's.
	enum := func(p *openapi3.Schema) []string {
		var out []string
		for _, v := range p.Enum {
			out = append(out, v.(string))
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	outcome := doc.Paths.Value("/invitations/{code}/result").Get.Parameters.GetByInAndName("query", "outcome")
	results := slices.Sorted(maps.Values(resultOf))
	if got := enum(outcome.Schema.Value); !slices.Equal(got, slices.Compact(results)) {
		t.Errorf("docs/openapi.yaml: outcome enum %v, want the values of resultOf %v", got, slices.Compact(results))
	}
	states := append(slices.Sorted(maps.Keys(stateText)), "active")
	slices.Sort(states)
	if got := enum(doc.Components.Schemas["InvitationStatus"].Value.Properties["state"].Value); !slices.Equal(got, states) {
		t.Errorf("docs/openapi.yaml: state enum %v, want %v", got, states)
	}
}
