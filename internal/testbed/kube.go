package testbed

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// EnvtestAssets returns a directory holding etcd, kube-apiserver and kubectl,
// as controller-runtime's envtest expects in BinaryAssetsDirectory. The
// binaries are built from the Go module proxy (hack/tools/kube and
// hack/tools/etcd) on first use, because no envtest download site is
// reachable here; the directory is keyed by both versions.
func EnvtestAssets() (string, error) {
	etcd, err := etcdTool.binary()
	if err != nil {
		return "", err
	}
	kube, err := buildTools(kubeAPIServerTool, kubectlTool)
	if err != nil {
		return "", err
	}
	bins := append([]string{etcd}, kube...)
	// bin/etcd-v3.5.35 and bin/kube-apiserver-v1.37.2 -> bin/envtest-v1.37.2-etcd-v3.5.35/
	kubeVersion := strings.TrimPrefix(filepath.Base(bins[1]), "kube-apiserver-")
	etcdVersion := strings.TrimPrefix(filepath.Base(bins[0]), "etcd-")
	dir := filepath.Join(filepath.Dir(bins[0]), fmt.Sprintf("envtest-%s-etcd-%s", kubeVersion, etcdVersion))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	for i, name := range []string{"etcd", "kube-apiserver", "kubectl"} {
		link := filepath.Join(dir, name)
		if target, err := os.Readlink(link); err == nil && target == bins[i] {
			continue
		}
		os.Remove(link)
		if err := os.Symlink(bins[i], link); err != nil && !os.IsExist(err) {
			return "", err
		}
	}
	return dir, nil
}

// NodeBinaries returns the paths of the real node's Kubernetes binaries,
// etcd and metrics-server by name, building the missing ones (the Kubernetes ones in one go
// build) and caching them in bin/.
func NodeBinaries() (map[string]string, error) {
	etcd, err := etcdTool.binary()
	if err != nil {
		return nil, err
	}
	tools := append([]tool{kubeAPIServerTool, kubectlTool}, nodeTools...)
	bins, err := buildTools(tools...)
	if err != nil {
		return nil, err
	}
	metricsServer, err := metricsServerTool.binary()
	if err != nil {
		return nil, err
	}
	m := map[string]string{"etcd": etcd, "metrics-server": metricsServer}
	for i, t := range tools {
		m[t.name] = bins[i]
	}
	return m, nil
}

// GatewayAPICRDs returns the Gateway API's standard HTTPRoute and Gateway
// CRDs, from the module the operator builds against (so the API server
// validates routes with the schema the operator's types come from).
func GatewayAPICRDs() ([]string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/gateway-api")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("locating the gateway-api module: %w", err)
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "config", "crd", "standard")
	var files []string
	for _, kind := range []string{"httproutes", "gateways"} {
		f := filepath.Join(dir, "gateway.networking.k8s.io_"+kind+".yaml")
		if _, err := os.Stat(f); err != nil {
			return nil, err
		}
		files = append(files, f)
	}
	return files, nil
}
