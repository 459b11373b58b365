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

// binary returns bin/<name>-<version>, building it when it is missing. It
// builds to a temporary name and renames, so packages testing in parallel
// never see a half-written binary.
func (t tool) binary() (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(root, "hack", "tools", t.dir)
	version, err := pinnedVersion(dir, t.module)
	if err != nil {
		return "", err
	}
	bin := filepath.Join(root, "bin", t.name+"-"+version)
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return "", err
	}
	tmp := fmt.Sprintf("%s.tmp%d", bin, os.Getpid())
	args := []string{"build", "-o", tmp}
	if len(t.ldflags) > 0 {
		var x []string
		for _, f := range t.ldflags {
			x = append(x, "-X", fmt.Sprintf(f, version))
		}
		args = append(args, "-ldflags", strings.Join(x, " "))
	}
	cmd := exec.Command("go", append(args, "./"+t.name)...)
	cmd.Dir = dir
	fmt.Fprintf(os.Stderr, "testbed: building %s %s (once; cached in bin/)\n", t.name, version)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("testbed: building %s %s (make testbed does the same): %w\n%s", t.name, version, err, out)
	}
	return bin, os.Rename(tmp, bin)
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
