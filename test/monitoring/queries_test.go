package monitoring

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"sigs.k8s.io/yaml"
)

// query is one PromQL expression the chart ships, and where.
type query struct {
	where string // "alert VelvetRopeX", `panel 9 "Title" target A`, "variable campaign"
	expr  string // as written; dashboard expressions still hold Grafana's variables
	// label is the label a dashboard variable's label_values() lists, which
	// must exist on its selector's metric.
	label string
}

// shipped renders the chart's monitoring template with the dashboard and the
// rules enabled and the chart's default thresholds, and returns every
// expression in them and the dashboard's JSON. (charts/ tests the rendering
// itself.)
func shipped(t *testing.T) ([]query, []byte) {
	t.Helper()
	ch, err := loader.Load("../../charts/velvetrope")
	if err != nil {
		t.Fatal(err)
	}
	values, err := chartutil.ToRenderValues(ch, map[string]any{"monitoring": map[string]any{
		"dashboard": map[string]any{"enabled": true}, "prometheusRule": map[string]any{"enabled": true}}},
		chartutil.ReleaseOptions{Name: "vr", Namespace: "velvetrope-system", IsInstall: true}, chartutil.DefaultCapabilities)
	if err != nil {
		t.Fatal(err)
	}
	rendered, err := engine.Render(ch, values)
	if err != nil {
		t.Fatal(err)
	}
	manifest, ok := rendered["velvetrope/templates/monitoring.yaml"]
	if !ok {
		t.Fatal("the chart has no templates/monitoring.yaml")
	}
	var queries []query
	var dashboard []byte
	for _, doc := range strings.Split(manifest, "\n---") {
		var o struct {
			Kind string
			Data map[string]string
			Spec struct {
				Groups []struct {
					Rules []struct{ Alert, Record, Expr string }
				}
			}
		}
		if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
			t.Fatalf("rendered manifest: %v", err)
		}
		switch o.Kind {
		case "PrometheusRule":
			for _, g := range o.Spec.Groups {
				for _, r := range g.Rules {
					queries = append(queries, query{where: "alert " + r.Alert + r.Record, expr: r.Expr})
				}
			}
		case "ConfigMap":
			if d, ok := o.Data["velvetrope-launch.json"]; ok {
				dashboard = []byte(d)
			}
		}
	}
	if dashboard == nil {
		t.Fatal("no dashboard ConfigMap rendered")
	}
	return append(queries, dashboardQueries(t, dashboard)...), dashboard
}

// panel is what the tests read of a dashboard panel; the schema check reads
// the rest.
type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		Type, UID string
	} `json:"datasource"`
	Targets []struct {
		RefID      string `json:"refId"`
		Expr       string `json:"expr"`
		Datasource *struct {
			Type, UID string
		} `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a row's
}

type dashboardModel struct {
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Type, Name string
			Query      json.RawMessage
			Datasource *struct{ Type, UID string }
		}
	}
}

func parseDashboard(t *testing.T, b []byte) dashboardModel {
	t.Helper()
	var d dashboardModel
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	return d
}

// allPanels flattens rows.
func allPanels(ps []panel) []panel {
	var all []panel
	for _, p := range ps {
		all = append(all, p)
		all = append(all, allPanels(p.Panels)...)
	}
	return all
}

var labelValues = regexp.MustCompile(`^label_values\((.*),\s*([A-Za-z_][A-Za-z0-9_]*)\)$`)

func dashboardQueries(t *testing.T, b []byte) []query {
	t.Helper()
	d := parseDashboard(t, b)
	var qs []query
	for _, p := range allPanels(d.Panels) {
		for _, tg := range p.Targets {
			qs = append(qs, query{where: fmt.Sprintf("panel %d %q target %s", p.ID, p.Title, tg.RefID), expr: tg.Expr})
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q string
		if json.Unmarshal(v.Query, &q) != nil {
			var obj struct{ Query string }
			json.Unmarshal(v.Query, &obj)
			q = obj.Query
		}
		m := labelValues.FindStringSubmatch(strings.TrimSpace(q))
		if m == nil {
			t.Errorf("variable %s: query %q is not label_values(<selector>, <label>)", v.Name, q)
			continue
		}
		qs = append(qs, query{where: "variable " + v.Name, expr: m[1], label: m[2]})
	}
	return qs
}

var (
	grafanaDurations = regexp.MustCompile(`\$__(rate_interval|interval|range)\b|\$\{__(rate_interval|interval|range)\}`)
	grafanaVariables = regexp.MustCompile(`\$\{[A-Za-z_][A-Za-z0-9_]*(:[a-z]+)?\}|\$[A-Za-z_][A-Za-z0-9_]*|\[\[[A-Za-z_][A-Za-z0-9_]*\]\]`)
)

// promQL is q's expression as Prometheus receives it: Grafana replaces its
// interval variables by durations and the others by their values (here a
// regular expression any value matches: the variables select, in =~).
func (q query) promQL() string {
	s := grafanaDurations.ReplaceAllString(q.expr, "5m")
	return grafanaVariables.ReplaceAllString(s, ".+")
}

// parseAll parses every query's expression, as Prometheus receives it, with
// the Prometheus parser.
func parseAll(t *testing.T, queries []query) checkAnswer {
	t.Helper()
	var req checkRequest
	for _, q := range queries {
		req.Exprs = append(req.Exprs, q.promQL())
	}
	return promcheck(t, req)
}

// TestExpressionsParse: every expression of the rules and the dashboard
// (targets and variables) parses with the Prometheus parser, and the rules
// are shaped as alerts (a comparison, so they fire on a condition).
func TestExpressionsParse(t *testing.T) {
	queries, _ := shipped(t)
	parsed := parseAll(t, queries)
	var alerts, targets, variables int
	for i, q := range queries {
		a := parsed.Exprs[i]
		if a.Error != "" {
			t.Errorf("%s: %s\n%s", q.where, a.Error, q.expr)
			continue
		}
		switch {
		case strings.HasPrefix(q.where, "alert "):
			alerts++
			if !a.Comparison {
				t.Errorf("%s: an alert's expression should end in a comparison: %s", q.where, q.expr)
			}
		case strings.HasPrefix(q.where, "variable "):
			variables++
		default:
			targets++
		}
		if strings.Contains(q.promQL(), "$") {
			t.Errorf("%s: a Grafana variable this test does not know: %s", q.where, q.expr)
		}
	}
	if alerts < 7 || targets < 25 || variables < 2 {
		t.Errorf("%d alerts, %d dashboard targets, %d variables: fewer than the chart ships", alerts, targets, variables)
	}
}

// TestTheParserCatchesMistakes keeps the parse check honest: broken
// expressions of the kinds one writes by hand fail it.
func TestTheParserCatchesMistakes(t *testing.T) {
	bad := []query{
		{expr: `sum by (code) (rate(velvetrope_http_requests_total[5m])`}, // unbalanced
		{expr: `rate(velvetrope_http_requests_total)`},                    // rate of an instant vector
		{expr: `histogram_quantile(0.99, sum by (le) (rate(velvetrope_http_request_duration_seconds_bucket[$__rate_interval)))`},
		{expr: `max by namespace (velvetrope_mail_oldest_pending_age_seconds)`}, // grouping without parentheses
		{expr: `velvetrope_mail_configured{namespace=~$namespace}`},             // unquoted variable
		{expr: ``},
	}
	for i, a := range parseAll(t, bad).Exprs {
		if a.Error == "" {
			t.Errorf("parsed: %q", bad[i].expr)
		}
	}
}
