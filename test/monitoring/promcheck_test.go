package monitoring

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/velvetrope/velvetrope/internal/testbed"
)

// promcheck's request and answer (promcheck/main.go).
type (
	checkRequest struct {
		Exprs      []string `json:"exprs,omitempty"`
		Exposition []string `json:"exposition,omitempty"`
		Dashboards []string `json:"dashboards,omitempty"`
	}
	checkAnswer struct {
		Exprs []struct {
			Error      string
			Comparison bool
			Selectors  []selector
		}
		Exposition []struct {
			Error  string
			Series series
		}
		Dashboards []struct{ Error string }
	}
	// selector is one vector selector of an expression: its metric, its
	// label matchers (without __name__) and the labels the aggregations
	// around it group or match on.
	selector struct {
		Metric   string
		Matchers []struct{ Name, Op, Value string }
		Grouping []string
	}
)

// binDir holds the binaries the tests build: promcheck, the redeemer and
// the manager.
var binDir string

func TestMain(m *testing.M) {
	os.Exit(func() int {
		var err error
		if binDir, err = os.MkdirTemp("", "monitoring-"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(binDir)
		return m.Run()
	}())
}

var promcheckBuild = sync.OnceValues(func() (string, error) {
	root, err := testbed.ModuleRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(binDir, "promcheck")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = filepath.Join(root, "test", "monitoring", "promcheck")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%w\n%s", err, out)
	}
	return bin, nil
})

// promcheck asks the promcheck module (built once per test binary) to
// parse expressions and scrapes and to check dashboards.
func promcheck(t *testing.T, req checkRequest) checkAnswer {
	t.Helper()
	bin, err := promcheckBuild()
	if err != nil {
		t.Fatalf("building test/monitoring/promcheck: %v", err)
	}
	in, _ := json.Marshal(req)
	var stderr bytes.Buffer
	cmd := exec.Command(bin)
	cmd.Stdin, cmd.Stderr = bytes.NewReader(in), &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("promcheck: %v\n%s", err, stderr.String())
	}
	var ans checkAnswer
	if err := json.Unmarshal(out, &ans); err != nil {
		t.Fatalf("promcheck's answer: %v", err)
	}
	if len(ans.Exprs) != len(req.Exprs) || len(ans.Exposition) != len(req.Exposition) || len(ans.Dashboards) != len(req.Dashboards) {
		t.Fatalf("promcheck answered %d/%d/%d for %d/%d/%d", len(ans.Exprs), len(ans.Exposition), len(ans.Dashboards),
			len(req.Exprs), len(req.Exposition), len(req.Dashboards))
	}
	return ans
}
