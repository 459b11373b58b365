// Command promcheck reads, for the monitoring tests (test/monitoring), what
// needs Prometheus' and Grafana's own code: it parses PromQL with the
// Prometheus parser, parses the text exposition format, and decodes Grafana
// dashboards strictly with the types generated from Grafana's published
// dashboard schema. It is a module of its own so that the Prometheus server's
// module and the Grafana schema types stay out of the product's go.mod; the
// tests build it with go build.
//
// It reads one JSON request on stdin and writes one JSON answer on stdout:
//
//	{"exprs": ["sum(rate(x[5m]))"], "exposition": ["# TYPE x counter\nx 1\n"], "dashboards": ["{...}"]}
//	{"exprs": [{"error": "", "comparison": false, "selectors": [{"metric": "x", "matchers": [], "grouping": []}]}],
//	 "exposition": [{"error": "", "series": {"x": [{}]}}], "dashboards": [{"error": ""}]}
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

type request struct {
	Exprs      []string `json:"exprs"`
	Exposition []string `json:"exposition"`
	Dashboards []string `json:"dashboards"`
}

type answer struct {
	Exprs      []exprAnswer       `json:"exprs"`
	Exposition []expositionAnswer `json:"exposition"`
	Dashboards []dashboardAnswer  `json:"dashboards"`
}

type exprAnswer struct {
	Error string `json:"error,omitempty"`
	// Comparison: the outermost operation is a comparison (an alert's shape).
	Comparison bool       `json:"comparison"`
	Selectors  []selector `json:"selectors"`
}

// selector is one vector selector: its metric, its label matchers (without
// __name__) and the labels the aggregations and vector matchings around it
// group or match on.
type selector struct {
	Metric   string    `json:"metric"`
	Matchers []matcher `json:"matchers"`
	Grouping []string  `json:"grouping"`
}

type matcher struct {
	Name  string `json:"name"`
	Op    string `json:"op"` // =, !=, =~, !~
	Value string `json:"value"`
}

type expositionAnswer struct {
	Error string `json:"error,omitempty"`
	// Series by name as Prometheus stores them: a histogram x as x_bucket
	// (with le), x_sum and x_count.
	Series map[string][]map[string]string `json:"series"`
}

type dashboardAnswer struct {
	Error string `json:"error,omitempty"`
}

func main() {
	var req request
	if err := json.NewDecoder(os.Stdin).Decode(&req); err != nil {
		fmt.Fprintln(os.Stderr, "promcheck:", err)
		os.Exit(2)
	}
	var ans answer
	// A default Prometheus' parser: no experimental functions.
	p := parser.NewParser(parser.Options{})
	for _, e := range req.Exprs {
		ans.Exprs = append(ans.Exprs, parseExpr(p, e))
	}
	for _, text := range req.Exposition {
		ans.Exposition = append(ans.Exposition, parseExposition(text))
	}
	plugins.RegisterDefaultPlugins()
	for _, d := range req.Dashboards {
		ans.Dashboards = append(ans.Dashboards, checkDashboard(d))
	}
	if err := json.NewEncoder(os.Stdout).Encode(ans); err != nil {
		fmt.Fprintln(os.Stderr, "promcheck:", err)
		os.Exit(1)
	}
}

func parseExpr(p parser.Parser, input string) exprAnswer {
	if strings.TrimSpace(input) == "" {
		return exprAnswer{Error: "empty expression"}
	}
	expr, err := p.ParseExpr(input)
	if err != nil {
		return exprAnswer{Error: err.Error()}
	}
	a := exprAnswer{Selectors: []selector{}}
	if b, ok := expr.(*parser.BinaryExpr); ok && b.Op.IsComparisonOperator() {
		a.Comparison = true
	}
	parser.Inspect(expr, func(node parser.Node, path []parser.Node) error {
		vs, ok := node.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		s := selector{Metric: vs.Name, Matchers: []matcher{}, Grouping: []string{}}
		for _, m := range vs.LabelMatchers {
			if m.Name == labels.MetricName {
				if s.Metric == "" && m.Type == labels.MatchEqual {
					s.Metric = m.Value
				}
				continue
			}
			s.Matchers = append(s.Matchers, matcher{Name: m.Name, Op: m.Type.String(), Value: m.Value})
		}
		for _, n := range path {
			switch n := n.(type) {
			case *parser.AggregateExpr:
				if !n.Without {
					s.Grouping = append(s.Grouping, n.Grouping...)
				}
			case *parser.BinaryExpr:
				if n.VectorMatching != nil && n.VectorMatching.On {
					s.Grouping = append(s.Grouping, n.VectorMatching.MatchingLabels...)
				}
			}
		}
		a.Selectors = append(a.Selectors, s)
		return nil
	})
	return a
}

func parseExposition(text string) expositionAnswer {
	tp := expfmt.NewTextParser(model.UTF8Validation)
	families, err := tp.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		return expositionAnswer{Error: err.Error()}
	}
	series := map[string][]map[string]string{}
	add := func(name string, ls map[string]string) { series[name] = append(series[name], ls) }
	for name, f := range families {
		for _, m := range f.GetMetric() {
			ls := map[string]string{}
			for _, l := range m.GetLabel() {
				ls[l.GetName()] = l.GetValue()
			}
			switch f.GetType() {
			case dto.MetricType_HISTOGRAM:
				for _, b := range m.GetHistogram().GetBucket() {
					withLe := map[string]string{"le": model.FloatString(b.GetUpperBound()).String()}
					for k, v := range ls {
						withLe[k] = v
					}
					add(name+"_bucket", withLe)
				}
				add(name+"_sum", ls)
				add(name+"_count", ls)
			case dto.MetricType_SUMMARY:
				add(name, ls)
				add(name+"_sum", ls)
				add(name+"_count", ls)
			default:
				add(name, ls)
			}
		}
	}
	return expositionAnswer{Series: series}
}

// checkDashboard decodes d strictly (an unknown or misspelt field, a wrong
// type, a missing required field fail, in the dashboard, in each panel's
// options and field config by its plugin's schema, and in each Prometheus
// query) and validates it.
func checkDashboard(d string) dashboardAnswer {
	var db dashboard.Dashboard
	if err := db.UnmarshalJSONStrict([]byte(d)); err != nil {
		return dashboardAnswer{Error: err.Error()}
	}
	if err := db.Validate(); err != nil {
		return dashboardAnswer{Error: err.Error()}
	}
	return dashboardAnswer{}
}
