// Package argocd tests the Argo CD health check for Invitations (health.lua)
// the way Argo CD evaluates it: a Lua VM with the object as the global obj.
package argocd

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	lua "github.com/yuin/gopher-lua"
)

// health runs health.lua against an object given as JSON.
func health(t *testing.T, object string) (status, message string) {
	t.Helper()
	script, err := os.ReadFile("health.lua")
	if err != nil {
		t.Fatal(err)
	}
	var obj any
	if err := json.Unmarshal([]byte(object), &obj); err != nil {
		t.Fatal(err)
	}
	L := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer L.Close()
	for _, open := range []lua.LGFunction{lua.OpenBase, lua.OpenTable, lua.OpenString} {
		L.Push(L.NewFunction(open))
		L.Call(0, 0)
	}
	L.SetGlobal("obj", toLua(L, obj))
	if err := L.DoString(string(script)); err != nil {
		t.Fatalf("health.lua: %v", err)
	}
	ret, ok := L.Get(-1).(*lua.LTable)
	if !ok {
		t.Fatalf("health.lua returned %v, want a table", L.Get(-1))
	}
	return ret.RawGetString("status").String(), ret.RawGetString("message").String()
}

// toLua converts decoded JSON as Argo CD does: objects to tables, arrays to
// sequences, numbers to numbers.
func toLua(L *lua.LState, v any) lua.LValue {
	switch v := v.(type) {
	case map[string]any:
		t := L.NewTable()
		for k, e := range v {
			t.RawSetString(k, toLua(L, e))
		}
		return t
	case []any:
		t := L.NewTable()
		for _, e := range v {
			t.Append(toLua(L, e))
		}
		return t
	case string:
		return lua.LString(v)
	case float64:
		return lua.LNumber(v)
	case bool:
		return lua.LBool(v)
	}
	return lua.LNil
}

func TestInvitationHealth(t *testing.T) {
	const ready = `{"type":"Ready","status":"True","reason":"Serving","message":"Active: 3 of 1000 used"}`
	tests := []struct {
		name, object, status string
	}{
		{"just created", `{"metadata":{"generation":1},"spec":{"maxUses":1000}}`, "Progressing"},
		{"serving", `{"metadata":{"generation":2},"spec":{"maxUses":1000},"status":{"phase":"Active","observedGeneration":2,"conditions":[` + ready + `]}}`, "Healthy"},
		{"exhausted is done, not broken", `{"metadata":{"generation":1},"spec":{"maxUses":3},"status":{"phase":"Exhausted","observedGeneration":1,"conditions":[{"type":"Ready","status":"True","reason":"Serving","message":"Exhausted: 3 of 3 used"}]}}`, "Healthy"},
		{"spec changed, not seen yet", `{"metadata":{"generation":3},"spec":{"maxUses":1000},"status":{"observedGeneration":2,"conditions":[` + ready + `]}}`, "Progressing"},
		{"paused", `{"metadata":{"generation":2},"spec":{"maxUses":1000,"paused":true},"status":{"phase":"Paused","observedGeneration":2,"conditions":[` + ready + `]}}`, "Suspended"},
		{"MongoDB down", `{"metadata":{"generation":1},"spec":{"maxUses":10},"status":{"observedGeneration":1,"conditions":[{"type":"Ready","status":"False","reason":"MongoDBUnavailable","message":"connection refused"}]}}`, "Degraded"},
		{"a failure on the latest spec, before any pass without errors", `{"metadata":{"generation":2},"spec":{"maxUses":10},"status":{"observedGeneration":1,"conditions":[{"type":"Ready","status":"False","reason":"TemplateInvalid","message":"x","observedGeneration":2}]}}`, "Degraded"},
		{"paused but MongoDB down: the pause is not applied", `{"metadata":{"generation":2},"spec":{"maxUses":10,"paused":true},"status":{"observedGeneration":1,"conditions":[{"type":"Ready","status":"False","reason":"MongoDBUnavailable","message":"x","observedGeneration":2}]}}`, "Degraded"},
		{"the Ready condition judged an older spec", `{"metadata":{"generation":3},"spec":{"maxUses":10},"status":{"observedGeneration":2,"conditions":[{"type":"Ready","status":"True","reason":"Serving","message":"x","observedGeneration":2}]}}`, "Progressing"},
		{"code taken", `{"metadata":{"generation":1},"spec":{"maxUses":10},"status":{"observedGeneration":1,"conditions":[{"type":"Ready","status":"False","reason":"CodeConflict","message":"x"}]}}`, "Degraded"},
		{"fleet pods starting", `{"metadata":{"generation":1},"spec":{"maxUses":10},"status":{"observedGeneration":1,"conditions":[{"type":"Ready","status":"False","reason":"FleetProgressing","message":"1 of 2 pods ready","observedGeneration":1}]}}`, "Progressing"},
		{"fleet cannot start", `{"metadata":{"generation":1},"spec":{"maxUses":10},"status":{"observedGeneration":1,"conditions":[{"type":"Ready","status":"False","reason":"FleetUnavailable","message":"ImagePullBackOff","observedGeneration":1}]}}`, "Degraded"},
		{"deleted, MongoDB has not taken the revocation", `{"metadata":{"generation":2},"spec":{"maxUses":10},"status":{"observedGeneration":1,"conditions":[{"type":"Ready","status":"False","reason":"RevokePending","message":"x","observedGeneration":2}]}}`, "Degraded"},
		{"no Ready condition yet", `{"metadata":{"generation":1},"spec":{"maxUses":10},"status":{"observedGeneration":1,"conditions":[{"type":"OverLimit","status":"False"}]}}`, "Progressing"},
	}
	for _, tt := range tests {
		status, message := health(t, tt.object)
		if status != tt.status {
			t.Errorf("%s: %s (%s), want %s", tt.name, status, message, tt.status)
		}
		if message == "" || message == "nil" {
			t.Errorf("%s: no message", tt.name)
		}
	}
}

// TestDocsQuoteTheScript keeps docs/gitops.md's argocd-cm block identical to
// health.lua, so what people copy is what is tested.
func TestDocsQuoteTheScript(t *testing.T) {
	script, err := os.ReadFile("health.lua")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("../../docs/gitops.md")
	if err != nil {
		t.Fatal(err)
	}
	var indented strings.Builder
	for _, line := range strings.SplitAfter(string(script), "\n") {
		if strings.TrimSpace(line) != "" {
			indented.WriteString("    ")
		}
		indented.WriteString(line)
	}
	if !strings.Contains(string(doc), indented.String()) {
		t.Error("docs/gitops.md does not quote config/argocd/health.lua as it is: update the doc")
	}
}
