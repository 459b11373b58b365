package charts

import (
	"encoding/json"
	"maps"
	"os"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// TestMonitoring: the launch dashboard (a ConfigMap for Grafana's sidecar)
// and the alerting rules (a PrometheusRule) are off by default and follow
// their values when enabled. test/monitoring checks their PromQL against
// the running processes.
func TestMonitoring(t *testing.T) {
	objs, err := render(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	if find(t, objs, "ConfigMap", nil) || find(t, objs, "PrometheusRule", nil) {
		t.Error("dashboard or alerts rendered though not enabled")
	}
	dashboard, err := os.ReadFile("velvetrope/files/dashboard.json")
	if err != nil {
		t.Fatal(err)
	}

	for name, tc := range map[string]struct {
		monitoring                      map[string]any
		namespace, label, value         string
		annotations, alertLabels        map[string]string
		ruleLabel, runbook, ratio, mail string
	}{
		"defaults": {
			monitoring: map[string]any{"dashboard": map[string]any{"enabled": true}, "prometheusRule": map[string]any{"enabled": true}},
			namespace:  "velvetrope-system", label: "grafana_dashboard", value: "1", ratio: "> 0.05", mail: "> 10 * 60",
		},
		"custom": {
			monitoring: map[string]any{
				"dashboard": map[string]any{"enabled": true, "namespace": "monitoring", "labels": map[string]any{"dashboards": "games"},
					"annotations": map[string]any{"grafana_folder": "Games"}},
				"prometheusRule": map[string]any{"enabled": true, "labels": map[string]any{"release": "prom"}, "alertLabels": map[string]any{"team": "games"},
					"runbookURL": "https://docs.example.com/operations#launch-dashboard-and-alerts", "serverErrorRatio": 0.02, "mailOldestPendingMinutes": 30,
					"sustained503For": "15m"},
			},
			namespace: "monitoring", label: "dashboards", value: "games", annotations: map[string]string{"grafana_folder": "Games"},
			alertLabels: map[string]string{"team": "games"}, ruleLabel: "prom", runbook: "https://docs.example.com/operations#launch-dashboard-and-alerts",
			ratio: "> 0.02", mail: "> 30 * 60",
		},
	} {
		objs, err := render(t, map[string]any{"monitoring": tc.monitoring})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var cm corev1.ConfigMap
		if !find(t, objs, "ConfigMap", &cm) {
			t.Fatalf("%s: no dashboard ConfigMap", name)
		}
		if cm.Namespace != tc.namespace || cm.Labels[tc.label] != tc.value || cm.Labels["app.kubernetes.io/instance"] != "vr" || !maps.Equal(cm.Annotations, tc.annotations) {
			t.Errorf("%s: ConfigMap %s/%s labels %v annotations %v", name, cm.Namespace, cm.Name, cm.Labels, cm.Annotations)
		}
		if tc.label != "grafana_dashboard" && cm.Labels["grafana_dashboard"] != "" {
			t.Errorf("%s: the default sidecar label stays beside labels that replace it: %v", name, cm.Labels)
		}
		if got := cm.Data["velvetrope-launch.json"]; got != strings.TrimRight(string(dashboard), "\n") || !json.Valid([]byte(got)) {
			t.Errorf("%s: the ConfigMap does not carry files/dashboard.json as it is (%d bytes)", name, len(got))
		}

		pr := object(objs, "PrometheusRule")
		if pr == nil {
			t.Fatalf("%s: no PrometheusRule", name)
		}
		if pr.GetAPIVersion() != "monitoring.coreos.com/v1" || pr.GetNamespace() != "velvetrope-system" || pr.GetLabels()["release"] != tc.ruleLabel {
			t.Errorf("%s: PrometheusRule %s in %q, labels %v", name, pr.GetAPIVersion(), pr.GetNamespace(), pr.GetLabels())
		}
		exprs := ruleExprs(t, pr)
		for _, alert := range []string{"VelvetRopeMongoDBUnavailable", "VelvetRopeSustained503", "VelvetRopeServerErrors", "VelvetRopeMailDelayed",
			"VelvetRopeMailNotConfigured", "VelvetRopeInvitationExhausted", "VelvetRopeOperatorReconcileErrors"} {
			if exprs[alert] == "" {
				t.Errorf("%s: no alert %s", name, alert)
			}
		}
		if !strings.Contains(exprs["VelvetRopeServerErrors"], tc.ratio) || !strings.Contains(exprs["VelvetRopeMailDelayed"], tc.mail) {
			t.Errorf("%s: thresholds: %q, %q", name, exprs["VelvetRopeServerErrors"], exprs["VelvetRopeMailDelayed"])
		}
		if want := map[string]string{"defaults": "10m", "custom": "15m"}[name]; ruleFor(t, pr, "VelvetRopeSustained503") != want {
			t.Errorf("%s: VelvetRopeSustained503 for %q, want %s", name, ruleFor(t, pr, "VelvetRopeSustained503"), want)
		}
		for _, r := range rules(t, pr) {
			severity := r.Labels["severity"]
			if severity != "critical" && severity != "warning" && severity != "info" {
				t.Errorf("%s: %s: severity %q", name, r.Alert, severity)
			}
			for k, v := range tc.alertLabels {
				if r.Labels[k] != v {
					t.Errorf("%s: %s lacks the alert label %s=%s: %v", name, r.Alert, k, v, r.Labels)
				}
			}
			for _, a := range []string{"summary", "description", "runbook"} {
				if r.Annotations[a] == "" {
					t.Errorf("%s: %s has no %s", name, r.Alert, a)
				}
			}
			if r.Annotations["runbook_url"] != tc.runbook {
				t.Errorf("%s: %s runbook_url %q", name, r.Alert, r.Annotations["runbook_url"])
			}
			// Prometheus, not Helm, fills in $labels and $value.
			if !strings.Contains(r.Annotations["summary"], "{{ $labels.") && !strings.Contains(r.Annotations["summary"], "{{ $value") {
				t.Errorf("%s: %s summary names no label or value: %q", name, r.Alert, r.Annotations["summary"])
			}
		}
	}
}

type alertRule struct {
	Alert, Expr, For    string
	Labels, Annotations map[string]string
}

// rules returns every alerting rule of a PrometheusRule.
func rules(t *testing.T, pr *unstructured.Unstructured) []alertRule {
	t.Helper()
	var spec struct{ Groups []struct{ Rules []alertRule } }
	b, _ := json.Marshal(pr.Object["spec"])
	if err := json.Unmarshal(b, &spec); err != nil {
		t.Fatal(err)
	}
	var all []alertRule
	for _, g := range spec.Groups {
		all = append(all, g.Rules...)
	}
	return all
}

func ruleExprs(t *testing.T, pr *unstructured.Unstructured) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, r := range rules(t, pr) {
		m[r.Alert] = r.Expr
	}
	return m
}

func ruleFor(t *testing.T, pr *unstructured.Unstructured, alert string) string {
	t.Helper()
	for _, r := range rules(t, pr) {
		if r.Alert == alert {
			return r.For
		}
	}
	return ""
}
