package monitoring

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestDashboardSchema decodes the shipped dashboard strictly (promcheck) with
// the Grafana Foundation SDK's dashboard types, which are generated from
// Grafana's published dashboard schema (its "dashboard" kind): an unknown or
// misspelt field, a wrong type or a missing required field fails, in the
// dashboard, in every panel's options and field config (the panel plugins'
// schemas) and in every Prometheus query. Then the conventions a sidecar
// install relies on: a fixed uid, the datasource variable everywhere, panel
// ids unique, every target an expression.
func TestDashboardSchema(t *testing.T) {
	_, b := shipped(t)
	if e := promcheck(t, checkRequest{Dashboards: []string{string(b)}}).Dashboards[0].Error; e != "" {
		t.Fatalf("the dashboard does not decode strictly as a Grafana dashboard:\n%s", e)
	}
	var top struct {
		UID, Title string
		ID         *int
	}
	json.Unmarshal(b, &top)
	if top.UID != "velvetrope-launch" || top.Title == "" || top.ID != nil {
		t.Errorf("a fixed uid (links survive re-imports), a title and no id (Grafana assigns one): %+v", top)
	}

	m := parseDashboard(t, b)
	vars := map[string]string{}
	for _, v := range m.Templating.List {
		vars[v.Name] = v.Type
		if v.Type == "query" && (v.Datasource == nil || v.Datasource.UID != "${datasource}") {
			t.Errorf("variable %s queries %v, not the datasource variable", v.Name, v.Datasource)
		}
	}
	if vars["datasource"] != "datasource" || vars["namespace"] != "query" || vars["campaign"] != "query" {
		t.Errorf("variables %v: want datasource (type datasource), namespace and campaign (queries)", vars)
	}

	ids := map[int]string{}
	for _, p := range allPanels(m.Panels) {
		if p.ID <= 0 {
			t.Errorf("panel %q has no id", p.Title)
		} else if other, dup := ids[p.ID]; dup {
			t.Errorf("panels %q and %q share id %d", other, p.Title, p.ID)
		}
		ids[p.ID] = p.Title
		if p.Title == "" {
			t.Errorf("panel %d has no title", p.ID)
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.Type != "prometheus" || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %d %q: datasource %v, want the prometheus ${datasource} variable", p.ID, p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %d %q has no target", p.ID, p.Title)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" || tg.RefID == "" || refs[tg.RefID] {
				t.Errorf("panel %d %q: target %q without an expression or with a duplicate refId", p.ID, p.Title, tg.RefID)
			}
			refs[tg.RefID] = true
			if tg.Datasource == nil || tg.Datasource.UID != "${datasource}" {
				t.Errorf("panel %d %q target %s: datasource %v", p.ID, p.Title, tg.RefID, tg.Datasource)
			}
		}
	}
	if len(ids) < 20 {
		t.Errorf("%d panels", len(ids))
	}
}

// TestTheSchemaCatchesMistakes keeps the schema check honest: a misspelt
// field and a wrong type fail it.
func TestTheSchemaCatchesMistakes(t *testing.T) {
	_, b := shipped(t)
	var names []string
	var req checkRequest
	for name, edit := range map[string][2]string{
		"misspelt panel field":    {`"gridPos"`, `"gridPosition"`},
		"misspelt query field":    {`"legendFormat"`, `"legend"`},
		"wrong type":              {`"schemaVersion": 39`, `"schemaVersion": "39"`},
		"misspelt option":         {`"showLegend"`, `"showLegends"`},
		"unknown dashboard field": {`"uid": "velvetrope-launch"`, `"uid": "velvetrope-launch", "uuid": "x"`},
	} {
		broken := strings.Replace(string(b), edit[0], edit[1], 1)
		if broken == string(b) {
			t.Fatalf("%s: %s is not in the dashboard", name, edit[0])
		}
		names = append(names, name)
		req.Dashboards = append(req.Dashboards, broken)
	}
	for i, a := range promcheck(t, req).Dashboards {
		if a.Error == "" {
			t.Errorf("%s: decoded", names[i])
		}
	}
}
