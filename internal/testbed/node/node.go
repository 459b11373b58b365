// Package node starts a real single-node Kubernetes cluster on this machine
// for the e2e suite and make dev: etcd, kube-apiserver (certificates,
// Node,RBAC authorisation, service-account tokens), kube-controller-manager,
// kube-scheduler, containerd with runc, kubelet, a CNI bridge and
// kube-proxy. The Kubernetes binaries are built from the module proxy and
// cached in bin/; containerd, runc, the CNI plugins and iptables are Debian's.
//
// Everything it starts lives under one directory (RunDir) and is stopped by
// PID; Stop, and the next Start after a killed run, remove every process,
// mount, network namespace, bridge, route, iptables rule and cgroup it made.
// One node runs per machine at a time (a lock file says so).
package node

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/velvetrope/velvetrope/internal/testbed"
)

// The node's network: a bridge with the host at HostIP, pods on PodCIDR,
// Services on ServiceCIDR (routed to the bridge, so a ClusterIP never leaves
// the machine even before kube-proxy programs it).
const (
	Name        = "velvetrope-node"
	Bridge      = "vrnode0"
	HostIP      = "10.213.0.1"
	PodCIDR     = "10.213.0.0/16"
	ServiceCIDR = "10.214.0.0/24"
)

// RunDir holds everything a running node has; a next Start removes it.
var RunDir = filepath.Join(os.TempDir(), "velvetrope-node")

// Options configure Start.
type Options struct {
	// Log, when set, hears progress lines.
	Log func(format string, args ...any)
}

// Node is a running cluster.
type Node struct {
	Kubeconfig string // an admin (system:masters) kubeconfig
	Config     *rest.Config
	Client     kubernetes.Interface
	Kubectl    string

	procs       []proc
	lock        *os.File
	bins        map[string]string
	kubeconfigs map[string]string // by component
	ca          *pki
	log         func(string, ...any)
}

// Start starts the node and returns once it is Ready. Where this machine
// cannot run a node, the error says exactly what is missing.
func Start(ctx context.Context, opts Options) (n *Node, err error) {
	if err := Check(); err != nil {
		return nil, err
	}
	n = &Node{log: opts.Log, bins: map[string]string{}}
	if n.log == nil {
		n.log = func(string, ...any) {}
	}
	if n.lock, err = lock(ctx, n.log); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			n.Stop()
		}
	}()
	if err := cleanup(n.log); err != nil {
		return nil, fmt.Errorf("node: cleaning what a previous run left: %w", err)
	}
	n.log("Kubernetes node binaries (built from the Go module proxy on first use, cached in bin/)…")
	bins, err := testbed.NodeBinaries()
	if err != nil {
		return nil, err
	}
	n.bins = bins
	n.Kubectl = bins["kubectl"]
	data := filepath.Join(RunDir, "data")
	for _, d := range []string{RunDir, data, filepath.Join(RunDir, "logs")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	if err := network(); err != nil {
		return nil, err
	}
	if err := n.controlPlane(ctx, data); err != nil {
		return nil, err
	}
	if err := n.runtime(ctx); err != nil {
		return nil, err
	}
	return n, n.waitReady(ctx)
}

// Check says what this machine lacks to run a node, or nil.
func Check() error {
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (containerd, kubelet and the pod network need it)")
	}
	for _, bin := range []string{"containerd", "runc", "iptables", "ip"} {
		if _, err := exec.LookPath(bin); err != nil {
			missing = append(missing, bin+" (Debian: apt-get install containerd runc iptables iproute2)")
		}
	}
	for _, p := range []string{"bridge", "host-local", "loopback"} {
		if _, err := os.Stat(filepath.Join(cniBinDir, p)); err != nil {
			missing = append(missing, "the CNI plugin "+p+" in "+cniBinDir+" (Debian: apt-get install containernetworking-plugins)")
		}
	}
	if _, err := os.Stat("/sys/fs/cgroup/memory"); err != nil {
		if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err != nil {
			missing = append(missing, "cgroups mounted at /sys/fs/cgroup")
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("node: this machine cannot run a Kubernetes node; missing: %s", strings.Join(missing, "; "))
	}
	return nil
}

const cniBinDir = "/usr/lib/cni"

// lock takes the machine-wide node lock, waiting (up to 20 minutes) while
// another node runs: go test runs packages in parallel, and two use a node.
// The kernel drops the lock when this process ends, however it ends.
func lock(ctx context.Context, log func(string, ...any)) (*os.File, error) {
	f, err := os.OpenFile(RunDir+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(20 * time.Minute)
	for i := 0; ; i++ {
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err == nil {
			return f, nil
		}
		if i == 0 {
			log("Another test-bed node runs on this machine (%s is locked); waiting for it to stop…", f.Name())
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			f.Close()
			return nil, fmt.Errorf("node: another test-bed node still runs on this machine (%s is locked): stop it first (make dev, or a make test run)", f.Name())
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// network makes the bridge pods attach to (the CNI bridge plugin then uses
// it) with the host's address on it, and routes the Service range to it.
func network() error {
	for _, args := range [][]string{
		{"link", "add", Bridge, "type", "bridge"},
		{"addr", "add", HostIP + "/16", "dev", Bridge},
		{"link", "set", Bridge, "up"},
		{"route", "add", ServiceCIDR, "dev", Bridge, "src", HostIP},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("node: ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}

// freePorts returns n distinct ports free on host now (all held open until
// chosen, so none is handed out twice).
func freePorts(host string, n int) ([]string, error) {
	var ports []string
	for range n {
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return nil, err
		}
		defer l.Close()
		_, port, _ := net.SplitHostPort(l.Addr().String())
		ports = append(ports, port)
	}
	return ports, nil
}

// start runs a component with its output in logs/<name>.log. It dies with
// this process (Pdeathsig), and a next Start finds it by RunDir anyway.
func (n *Node) start(name string, args ...string) error {
	bin := n.bins[name]
	if bin == "" {
		bin = name
	}
	logf, err := os.Create(filepath.Join(RunDir, "logs", name+".log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	p := proc{cmd: cmd, exited: make(chan struct{})}
	n.procs = append(n.procs, p)
	go func() { cmd.Wait(); close(p.exited) }()
	return nil
}

// proc is a component this node started.
type proc struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

// Logs returns the tail of a component's log, for failure messages.
func Logs(name string, max int) string {
	b, _ := os.ReadFile(filepath.Join(RunDir, "logs", name+".log"))
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}

func (n *Node) controlPlane(ctx context.Context, data string) error {
	p, err := newPKI(filepath.Join(data, "pki"))
	if err != nil {
		return err
	}
	hostPorts, err := freePorts(HostIP, 1)
	if err != nil {
		return err
	}
	apiPort := hostPorts[0]
	server := "https://" + net.JoinHostPort(HostIP, apiPort)
	serviceIP := strings.TrimSuffix(ServiceCIDR, "0/24") + "1"
	apiCert, apiKey, err := p.issue("apiserver", "kube-apiserver", nil,
		[]string{HostIP, "127.0.0.1", serviceIP, "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"})
	if err != nil {
		return err
	}
	kcCert, kcKey, err := p.issue("apiserver-kubelet-client", "kube-apiserver-kubelet-client", []string{"system:masters"}, nil)
	if err != nil {
		return err
	}
	// The aggregation layer (metrics-server's metrics.k8s.io): the API
	// server proxies to it as front-proxy-client.
	proxyCert, proxyKey, err := p.issue("front-proxy-client", "front-proxy-client", nil, nil)
	if err != nil {
		return err
	}
	saKey, saPub, err := p.serviceAccountKey()
	if err != nil {
		return err
	}
	// One kubeconfig per identity: each component is authorised by the
	// bootstrap RBAC roles of its user, as on kubeadm clusters.
	identities := map[string][2]any{
		"admin":                   {"velvetrope-admin", []string{"system:masters"}},
		"kube-controller-manager": {"system:kube-controller-manager", []string(nil)},
		"kube-scheduler":          {"system:kube-scheduler", []string(nil)},
		"kube-proxy":              {"system:kube-proxy", []string(nil)},
		"kubelet":                 {"system:node:" + Name, []string{"system:nodes"}},
		// Test infrastructure rather than the product: full rights keep its
		// setup to one certificate (it reads kubelets and serves an API).
		"metrics-server": {"metrics-server", []string{"system:masters"}},
	}
	kubeconfigs := map[string]string{}
	for name, id := range identities {
		cert, key, err := p.issue(name, id[0].(string), id[1].([]string), nil)
		if err != nil {
			return err
		}
		path := filepath.Join(data, name+".kubeconfig")
		if err := writeKubeconfig(path, server, p.caFile(), cert, key); err != nil {
			return err
		}
		kubeconfigs[name] = path
	}
	n.Kubeconfig = kubeconfigs["admin"]

	n.log("etcd and kube-apiserver (etcd data in %s)…", filepath.Join(data, "etcd"))
	// etcd's client and peer ports, the controller-manager's and the
	// scheduler's.
	ports, err := freePorts("127.0.0.1", 4)
	if err != nil {
		return err
	}
	etcdPort, peerPort := ports[0], ports[1]
	etcdURL := "http://127.0.0.1:" + etcdPort
	if err := n.start("etcd", "--data-dir", filepath.Join(data, "etcd"), "--listen-client-urls", etcdURL,
		"--advertise-client-urls", etcdURL, "--listen-peer-urls", "http://127.0.0.1:"+peerPort,
		"--initial-advertise-peer-urls", "http://127.0.0.1:"+peerPort,
		"--initial-cluster", "default=http://127.0.0.1:"+peerPort, "--unsafe-no-fsync", "--log-level", "warn"); err != nil {
		return err
	}
	if err := n.start("kube-apiserver",
		"--etcd-servers", etcdURL,
		"--bind-address", HostIP, "--advertise-address", HostIP, "--secure-port", apiPort,
		"--cert-dir", filepath.Join(RunDir, "apiserver"),
		"--tls-cert-file", apiCert, "--tls-private-key-file", apiKey,
		"--client-ca-file", p.caFile(),
		"--authorization-mode", "Node,RBAC",
		"--enable-admission-plugins", "NodeRestriction",
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file", saPub, "--service-account-signing-key-file", saKey,
		"--service-cluster-ip-range", ServiceCIDR,
		"--kubelet-client-certificate", kcCert, "--kubelet-client-key", kcKey,
		// The node's name resolves nowhere (no DNS here): reach the kubelet
		// at its InternalIP, as metrics-server does.
		"--kubelet-preferred-address-types", "InternalIP",
		"--allow-privileged=true",
		"--requestheader-client-ca-file", p.caFile(), "--requestheader-allowed-names", "front-proxy-client",
		"--requestheader-username-headers", "X-Remote-User", "--requestheader-group-headers", "X-Remote-Group",
		"--requestheader-extra-headers-prefix", "X-Remote-Extra-",
		"--proxy-client-cert-file", proxyCert, "--proxy-client-key-file", proxyKey, "--enable-aggregator-routing=true",
		"--profiling=false"); err != nil {
		return err
	}
	if n.Config, err = clientcmd.BuildConfigFromFlags("", n.Kubeconfig); err != nil {
		return err
	}
	if n.Client, err = kubernetes.NewForConfig(n.Config); err != nil {
		return err
	}
	if err := poll(ctx, 60*time.Second, "kube-apiserver ready", func() (bool, error) {
		b, err := n.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err == nil && string(b) == "ok", nil
	}); err != nil {
		return fmt.Errorf("%w\n%s", err, Logs("kube-apiserver", 3000))
	}

	n.log("kube-controller-manager and kube-scheduler…")
	for _, c := range []struct{ name, port string }{{"kube-controller-manager", ports[2]}, {"kube-scheduler", ports[3]}} {
		args := []string{"--kubeconfig", kubeconfigs[c.name],
			"--authentication-kubeconfig", kubeconfigs[c.name], "--authorization-kubeconfig", kubeconfigs[c.name],
			"--bind-address", "127.0.0.1", "--secure-port", c.port, "--leader-elect=false"}
		if c.name == "kube-controller-manager" {
			args = append(args, "--service-account-private-key-file", saKey, "--root-ca-file", p.caFile(),
				"--use-service-account-credentials", "--cluster-cidr", PodCIDR, "--service-cluster-ip-range", ServiceCIDR,
				"--cert-dir", filepath.Join(RunDir, c.name))
		} else {
			args = append(args, "--cert-dir", filepath.Join(RunDir, c.name))
		}
		if err := n.start(c.name, args...); err != nil {
			return err
		}
	}
	n.kubeconfigs = kubeconfigs
	n.ca = p
	return nil
}

func writeKubeconfig(path, server, ca, cert, key string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[Name] = &clientcmdapi.Cluster{Server: server, CertificateAuthority: ca}
	cfg.AuthInfos[Name] = &clientcmdapi.AuthInfo{ClientCertificate: cert, ClientKey: key}
	cfg.Contexts[Name] = &clientcmdapi.Context{Cluster: Name, AuthInfo: Name, Namespace: "default"}
	cfg.CurrentContext = Name
	return clientcmd.WriteToFile(*cfg, path)
}

// poll calls cond every 200ms until it is true, it fails, or timeout.
func poll(ctx context.Context, timeout time.Duration, what string, cond func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("node: %s: not within %v", what, timeout)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (n *Node) waitReady(ctx context.Context) error {
	n.log("Waiting for the node to be Ready…")
	err := poll(ctx, 90*time.Second, "node Ready", func() (bool, error) {
		node, err := n.Client.CoreV1().Nodes().Get(ctx, Name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("%w\n%s", err, Logs("kubelet", 3000))
	}
	// Pods need their namespace's default ServiceAccount, which the
	// controller-manager makes shortly after it starts.
	err = poll(ctx, 60*time.Second, "the default ServiceAccount", func() (bool, error) {
		_, err := n.Client.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
	if err != nil {
		return fmt.Errorf("%w\n%s", err, Logs("kube-controller-manager", 3000))
	}
	return nil
}

// Stop stops every component, then removes all it made.
func (n *Node) Stop() {
	for i := len(n.procs) - 1; i >= 0; i-- {
		n.procs[i].cmd.Process.Signal(syscall.SIGTERM)
	}
	timeout := time.After(10 * time.Second)
	for _, p := range n.procs {
		select {
		case <-p.exited:
		case <-timeout:
		}
	}
	if err := cleanup(n.log); err != nil {
		fmt.Fprintln(os.Stderr, "node: cleanup:", err)
	}
	if n.lock != nil {
		n.lock.Close()
	}
}
