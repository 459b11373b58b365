// Package testbed starts the real servers that tests, benchmarks and the local
// platform run against: the FerretDB MongoDB test bed (or the server named by
// MONGODB_URI). Product code never imports it.
package testbed

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

// ModuleRoot returns the directory of the velvetrope go.mod, found by walking up
// from the working directory (go test runs in the package directory).
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil &&
			bytes.HasPrefix(b, []byte("module github.com/velvetrope/velvetrope\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("testbed: not inside the velvetrope module")
		}
		dir = parent
	}
}

// tool is a binary built from a pinned module under hack/tools.
type tool struct {
	name    string   // binary and package directory name
	dir     string   // module directory below hack/tools ("" for hack/tools itself)
	module  string   // the pinned module whose version keys the cache
	ldflags []string // -X settings; %s is replaced by the version
}

var (
	ferretdbTool      = tool{name: "ferretdb", module: "github.com/FerretDB/FerretDB"}
	etcdTool          = tool{name: "etcd", dir: "etcd", module: "go.etcd.io/etcd/server/v3"}
	kubeVersionFlags  = []string{"k8s.io/component-base/version.gitVersion=%s", "k8s.io/client-go/pkg/version.gitVersion=%s"}
	kubeAPIServerTool = tool{name: "kube-apiserver", dir: "kube", module: "k8s.io/kubernetes", ldflags: kubeVersionFlags}
	kubectlTool       = tool{name: "kubectl", dir: "kube", module: "k8s.io/kubernetes", ldflags: kubeVersionFlags}
	metricsServerTool = tool{name: "metrics-server", dir: "metrics-server", module: "sigs.k8s.io/metrics-server"}
	// The real node's binaries, built together in one go build (they share
	// most of their packages).
	nodeTools = []tool{
		{name: "kubelet", dir: "kube", module: "k8s.io/kubernetes", ldflags: kubeVersionFlags},
		{name: "kube-controller-manager", dir: "kube", module: "k8s.io/kubernetes", ldflags: kubeVersionFlags},
		{name: "kube-scheduler", dir: "kube", module: "k8s.io/kubernetes", ldflags: kubeVersionFlags},
		{name: "kube-proxy", dir: "kube", module: "k8s.io/kubernetes", ldflags: kubeVersionFlags},
	}
)

// pinnedVersion reads the version of module mod pinned in the go.mod in dir,
// so cached binaries are keyed by the one place the version is written.
func pinnedVersion(dir, mod string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return "", err
	}
	m := regexp.MustCompile(`(?m)^\s*(?:require\s+)?` + regexp.QuoteMeta(mod) + `\s+(v\S+)`).FindSubmatch(b)
	if m == nil {
		return "", fmt.Errorf("testbed: %s is not pinned in %s/go.mod", mod, dir)
	}
	return string(m[1]), nil
}

// binary returns bin/<name>-<version>, building it when it is missing.
func (t tool) binary() (string, error) {
	bins, err := buildTools(t)
	if err != nil {
		return "", err
	}
	return bins[0], nil
}

// buildTools returns bin/<name>-<version> for each tool, building the missing
// ones in one go build invocation (so they share work). All tools must live
// in the same module directory. It builds into a temporary directory and
// renames, so packages testing in parallel never see a half-written binary.
func buildTools(tools ...tool) ([]string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(root, "hack", "tools", tools[0].dir)
	version, err := pinnedVersion(dir, tools[0].module)
	if err != nil {
		return nil, err
	}
	var bins, missing []string
	for _, t := range tools {
		bin := filepath.Join(root, "bin", t.name+"-"+version)
		bins = append(bins, bin)
		if _, err := os.Stat(bin); err != nil {
			missing = append(missing, t.name)
		}
	}
	if len(missing) == 0 {
		return bins, nil
	}
	if err := os.MkdirAll(filepath.Join(root, "bin"), 0o755); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(filepath.Join(root, "bin"), ".build-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	args := []string{"build", "-o", tmp + "/"}
	if len(tools[0].ldflags) > 0 {
		var x []string
		for _, f := range tools[0].ldflags {
			x = append(x, "-X", fmt.Sprintf(f, version))
		}
		args = append(args, "-ldflags", strings.Join(x, " "))
	}
	for _, name := range missing {
		args = append(args, "./"+name)
	}
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	fmt.Fprintf(os.Stderr, "testbed: building %s %s (once; cached in bin/)\n", strings.Join(missing, ", "), version)
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("testbed: building %s %s: %w\n%s", strings.Join(missing, ", "), version, err, out)
	}
	for _, name := range missing {
		if err := os.Rename(filepath.Join(tmp, name), filepath.Join(root, "bin", name+"-"+version)); err != nil {
			return nil, err
		}
	}
	return bins, nil
}

// readFirstLine returns the first line a process prints, which our wrappers
// use to announce their address once they listen.
func readFirstLine(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	return line[:len(line)-1], nil
}
