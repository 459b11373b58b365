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

// pinnedVersion reads the version of module mod pinned in hack/tools/go.mod, so
// cached binaries are keyed by the one place the version is written.
func pinnedVersion(root, mod string) (string, error) {
	b, err := os.ReadFile(filepath.Join(root, "hack", "tools", "go.mod"))
	if err != nil {
		return "", err
	}
	m := regexp.MustCompile(`(?m)^\s*(?:require\s+)?` + regexp.QuoteMeta(mod) + `\s+(v\S+)`).FindSubmatch(b)
	if m == nil {
		return "", fmt.Errorf("testbed: %s is not pinned in hack/tools/go.mod", mod)
	}
	return string(m[1]), nil
}

// toolBinary returns bin/<name>-<version>, building ./<name> of hack/tools when
// it is missing. It builds to a temporary name and renames, so packages
// testing in parallel never see a half-written binary.
func toolBinary(name, mod string) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	version, err := pinnedVersion(root, mod)
	if err != nil {
		return "", err
	}
	bin := filepath.Join(root, "bin", name+"-"+version)
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return "", err
	}
	tmp := fmt.Sprintf("%s.tmp%d", bin, os.Getpid())
	cmd := exec.Command("go", "build", "-o", tmp, "./"+name)
	cmd.Dir = filepath.Join(root, "hack", "tools")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("testbed: building %s %s (make testbed does the same): %w\n%s", name, version, err, out)
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
