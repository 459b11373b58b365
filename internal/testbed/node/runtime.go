package node

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// containerdConfig keeps containerd wholly inside RunDir: its root, state,
// socket, network namespaces and CNI configuration. restrict_oom_score_adj
// is needed where the VM lacks CAP_SYS_RESOURCE (every sandbox fails
// otherwise); the sandbox image is the locally built pause image.
const containerdConfig = `version = 2
root = "{{run}}/containerd/root"
state = "{{run}}/containerd/state"
[grpc]
  address = "{{run}}/containerd.sock"
[ttrpc]
  address = ""
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{{run}}/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{{pause}}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{{cni}}"
    conf_dir = "{{run}}/cni"
`

// cniConfig attaches pods to the node's bridge. No masquerading and no
// portmap: pods talk only to the host and to each other, so the plugins add
// no iptables rules.
const cniConfig = `{
  "cniVersion": "1.0.0",
  "name": "velvetrope",
  "plugins": [{
    "type": "bridge", "bridge": "{{bridge}}", "isGateway": true, "ipMasq": false, "hairpinMode": true,
    "ipam": {"type": "host-local", "dataDir": "{{run}}/cni-ipam",
             "ranges": [[{"subnet": "{{pods}}", "gateway": "{{host}}"}]],
             "routes": [{"dst": "0.0.0.0/0"}]}
  }]
}
`

// kubeletConfig: cgroupfs and cgroup v1 allowed (the host is v1/hybrid),
// swap tolerated, webhook authentication and authorisation against the API
// server, and eviction thresholds low enough that a full-ish test disk does
// not taint the node. Image GC is off: images are imported, not pulled.
const kubeletConfig = `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
failSwapOn: false
failCgroupV1: false
containerRuntimeEndpoint: unix://{{run}}/containerd.sock
address: {{host}}
port: {{port}}
healthzBindAddress: 127.0.0.1
healthzPort: {{healthz}}
readOnlyPort: 0
tlsCertFile: {{cert}}
tlsPrivateKeyFile: {{key}}
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: {{ca}}}
authorization: {mode: Webhook}
podLogsDir: {{run}}/pod-logs
volumePluginDir: {{run}}/volume-plugins
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
`

func render(tmpl string, vars map[string]string) string {
	for k, v := range vars {
		tmpl = strings.ReplaceAll(tmpl, "{{"+k+"}}", v)
	}
	return tmpl
}

func (n *Node) runtime(ctx context.Context) error {
	vars := map[string]string{"run": RunDir, "cni": cniBinDir, "pause": pauseImage.Ref, "bridge": Bridge,
		"pods": PodCIDR, "host": HostIP, "ca": n.ca.caFile()}
	for _, d := range []string{"containerd", "cni", "kubelet"} {
		if err := os.MkdirAll(filepath.Join(RunDir, d), 0o755); err != nil {
			return err
		}
	}
	files := map[string]string{
		"containerd/config.toml":     containerdConfig,
		"cni/10-velvetrope.conflist": cniConfig,
	}
	for name, tmpl := range files {
		if err := os.WriteFile(filepath.Join(RunDir, name), []byte(render(tmpl, vars)), 0o644); err != nil {
			return err
		}
	}
	n.log("containerd…")
	if err := n.start("containerd", "--config", filepath.Join(RunDir, "containerd", "config.toml")); err != nil {
		return err
	}
	if err := poll(ctx, 30*time.Second, "containerd socket", func() (bool, error) {
		return exec.Command("ctr", "--address", n.socket(), "version").Run() == nil, nil
	}); err != nil {
		return fmt.Errorf("%w\n%s", err, Logs("containerd", 3000))
	}
	pause := filepath.Join(RunDir, "pause.tar")
	if err := pauseImage.Build(pause); err != nil {
		return err
	}
	if err := n.ImportImage(pause); err != nil {
		return err
	}

	n.log("kubelet and kube-proxy…")
	cert, key, err := n.ca.issue("kubelet-serving", "system:node:"+Name, []string{"system:nodes"}, []string{HostIP, Name})
	if err != nil {
		return err
	}
	hostPorts, err := freePorts(HostIP, 1)
	if err != nil {
		return err
	}
	// The kubelet's healthz, kube-proxy's healthz and metrics.
	ports, err := freePorts("127.0.0.1", 3)
	if err != nil {
		return err
	}
	vars["port"], vars["healthz"], vars["cert"], vars["key"] = hostPorts[0], ports[0], cert, key
	config := filepath.Join(RunDir, "kubelet", "config.yaml")
	if err := os.WriteFile(config, []byte(render(kubeletConfig, vars)), 0o644); err != nil {
		return err
	}
	if err := n.start("kubelet", "--config", config, "--kubeconfig", n.kubeconfigs["kubelet"],
		"--root-dir", filepath.Join(RunDir, "kubelet"), "--cert-dir", filepath.Join(RunDir, "kubelet", "pki"),
		"--hostname-override", Name, "--node-ip", HostIP); err != nil {
		return err
	}
	if err := n.start("kube-proxy", "--kubeconfig", n.kubeconfigs["kube-proxy"], "--hostname-override", Name,
		"--proxy-mode", "iptables", "--cluster-cidr", PodCIDR, "--nodeport-addresses", HostIP+"/32",
		"--healthz-bind-address", "127.0.0.1:"+ports[1], "--metrics-bind-address", "127.0.0.1:"+ports[2],
		// Leave the host's conntrack settings as they are.
		"--conntrack-max-per-core", "0", "--conntrack-tcp-timeout-established", "0", "--conntrack-tcp-timeout-close-wait", "0"); err != nil {
		return err
	}
	return n.metricsServer(ctx)
}

// metricsAPI registers metrics-server (a process on the host) behind the
// API server's aggregation layer, as its upstream manifests do for a pod: a
// Service without selector whose EndpointSlice names the host.
const metricsAPI = `apiVersion: v1
kind: Service
metadata: {name: metrics-server, namespace: kube-system}
spec:
  ports: [{name: https, port: 443, targetPort: {{port}}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: metrics-server
  namespace: kube-system
  labels: {kubernetes.io/service-name: metrics-server}
addressType: IPv4
endpoints: [{addresses: ["{{host}}"]}]
ports: [{name: https, port: {{port}}, protocol: TCP}]
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: v1beta1.metrics.k8s.io}
spec:
  group: metrics.k8s.io
  version: v1beta1
  service: {name: metrics-server, namespace: kube-system, port: 443}
  insecureSkipTLSVerify: true
  groupPriorityMinimum: 100
  versionPriority: 100
`

// metricsServer runs metrics-server, so HPAs scale on real CPU and
// kubectl top works. It reads the kubelet's /metrics/resource every 15 s.
func (n *Node) metricsServer(ctx context.Context) error {
	ports, err := freePorts(HostIP, 1)
	if err != nil {
		return err
	}
	port := ports[0]
	kc := n.kubeconfigs["metrics-server"]
	if err := n.start("metrics-server", "--kubeconfig", kc, "--authentication-kubeconfig", kc, "--authorization-kubeconfig", kc,
		"--secure-port", port, "--bind-address", HostIP, "--cert-dir", filepath.Join(RunDir, "metrics-server"),
		"--kubelet-insecure-tls", "--kubelet-use-node-status-port", "--kubelet-preferred-address-types", "InternalIP", "--metric-resolution", "15s"); err != nil {
		return err
	}
	cmd := n.KubectlCmd("apply", "-f", "-")
	cmd.Stdin = strings.NewReader(render(metricsAPI, map[string]string{"port": port, "host": HostIP}))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("node: registering metrics-server: %v\n%s", err, out)
	}
	return nil
}

func (n *Node) socket() string { return filepath.Join(RunDir, "containerd.sock") }

// ImportImage loads a docker-archive tar into the node's containerd, where
// pods with imagePullPolicy IfNotPresent or Never find it.
func (n *Node) ImportImage(tar string) error {
	out, err := exec.Command("ctr", "--address", n.socket(), "-n", "k8s.io", "images", "import", "--no-unpack=false", tar).CombinedOutput()
	if err != nil {
		return fmt.Errorf("node: importing %s: %v\n%s", filepath.Base(tar), err, out)
	}
	return nil
}

// RuntimeCmd runs ctr against the node's containerd, in the namespace the
// kubelet uses (for fault injection: killing a container as the runtime).
func (n *Node) RuntimeCmd(args ...string) *exec.Cmd {
	return exec.Command("ctr", append([]string{"--address", n.socket(), "-n", "k8s.io"}, args...)...)
}
