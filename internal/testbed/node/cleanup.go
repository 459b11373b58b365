package node

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cleanup removes everything a node made, running or killed: its processes
// (found by RunDir in their command lines, and pods' by their cgroups), its
// mounts, the iptables rules of kube-proxy, the bridge and its route, the
// kubelet's log links, and RunDir itself. It is safe when nothing is left.
func cleanup(log func(string, ...any)) error {
	if _, err := os.Stat(RunDir); err == nil || bridgeExists() {
		log("Removing what the node made (%s)…", RunDir)
	}
	var errs []string
	for round := 0; round < 50; round++ {
		if killByCommandLine(RunDir)+killCgroups("kubepods") == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	removeCgroups("kubepods")
	if err := unmountUnder(RunDir); err != nil {
		errs = append(errs, err.Error())
	}
	for _, cmd := range []string{"iptables", "ip6tables"} {
		if err := removeChains(cmd, "KUBE-"); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if bridgeExists() {
		if out, err := exec.Command("ip", "link", "del", Bridge).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Sprintf("ip link del %s: %v: %s", Bridge, err, out))
		}
	}
	if links, _ := filepath.Glob("/var/log/containers/*.log"); len(links) > 0 {
		for _, l := range links {
			if target, err := os.Readlink(l); err == nil && strings.HasPrefix(target, RunDir) {
				os.Remove(l)
			}
		}
	}
	if err := os.RemoveAll(RunDir); err != nil {
		errs = append(errs, err.Error())
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

func bridgeExists() bool {
	_, err := os.Stat(filepath.Join("/sys/class/net", Bridge))
	return err == nil
}

// removeChains deletes, in every table, the chains whose names start with
// prefix and the rules that jump to them: the kubelet's (KUBE-FIREWALL, the
// canaries) and kube-proxy's. Nothing else on this machine uses them.
func removeChains(cmd, prefix string) error {
	if _, err := exec.LookPath(cmd + "-save"); err != nil {
		return nil
	}
	out, err := exec.Command(cmd + "-save").Output()
	if err != nil {
		return fmt.Errorf("%s-save: %v", cmd, err)
	}
	var table string
	var jumps [][]string
	chains := map[string][]string{} // table -> chains
	for _, line := range strings.Split(string(out), "\n") {
		switch {
		case strings.HasPrefix(line, "*"):
			table = line[1:]
		case strings.HasPrefix(line, ":"+prefix):
			chains[table] = append(chains[table], strings.Fields(line[1:])[0])
		case strings.HasPrefix(line, "-A ") && !strings.HasPrefix(line, "-A "+prefix) && strings.Contains(line, " -j "+prefix):
			// iptables-save quotes comments; the rule is re-read by a shell-free split.
			jumps = append(jumps, append([]string{"-t", table, "-D"}, splitRule(line[3:])...))
		}
	}
	for _, args := range jumps {
		exec.Command(cmd, args...).Run()
	}
	for table, cs := range chains {
		for _, c := range cs {
			exec.Command(cmd, "-t", table, "-F", c).Run()
		}
		for _, c := range cs {
			if b, err := exec.Command(cmd, "-t", table, "-X", c).CombinedOutput(); err != nil {
				return fmt.Errorf("%s -t %s -X %s: %v: %s", cmd, table, c, err, b)
			}
		}
	}
	return nil
}

// splitRule splits an iptables-save rule into arguments, honouring its
// double quotes.
func splitRule(s string) []string {
	var args []string
	var cur strings.Builder
	quoted, any := false, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			quoted, any = !quoted, true
		case c == '\\' && quoted && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
		case c == ' ' && !quoted:
			if any {
				args = append(args, cur.String())
				cur.Reset()
				any = false
			}
		default:
			cur.WriteByte(c)
			any = true
		}
	}
	if any {
		args = append(args, cur.String())
	}
	return args
}

// killByCommandLine SIGKILLs every other process whose command line names
// dir (the node's components and containerd's shims), and returns how many.
func killByCommandLine(dir string) int {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	self := os.Getpid()
	killed := 0
	for _, p := range procs {
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if pid == self {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(b, []byte(dir)) {
			continue
		}
		if syscall.Kill(pid, syscall.SIGKILL) == nil {
			killed++
		}
	}
	return killed
}

// cgroupDirs lists, deepest first, the cgroups named name at the top of
// every hierarchy and all below them (the kubelet's pods, cgroupfs driver).
func cgroupDirs(name string) []string {
	var dirs []string
	tops, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", name))
	if top := filepath.Join("/sys/fs/cgroup", name); isDir(top) {
		tops = append(tops, top)
	}
	for _, top := range tops {
		filepath.WalkDir(top, func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
	}
	sort.Slice(dirs, func(i, j int) bool { return strings.Count(dirs[i], "/") > strings.Count(dirs[j], "/") })
	return dirs
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// killCgroups SIGKILLs every process in the cgroups named name.
func killCgroups(name string) int {
	killed := 0
	for _, d := range cgroupDirs(name) {
		b, _ := os.ReadFile(filepath.Join(d, "cgroup.procs"))
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil && syscall.Kill(pid, syscall.SIGKILL) == nil {
				killed++
			}
		}
	}
	return killed
}

func removeCgroups(name string) {
	for _, d := range cgroupDirs(name) {
		os.Remove(d)
	}
}

// unmountUnder detaches every mount at or below dir, deepest first, until
// none is left (mounts stack).
func unmountUnder(dir string) error {
	for round := 0; round < 10; round++ {
		f, err := os.Open("/proc/self/mountinfo")
		if err != nil {
			return err
		}
		var points []string
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 5 {
				continue
			}
			mp := unescapeMount(fields[4])
			if mp == dir || strings.HasPrefix(mp, dir+"/") {
				points = append(points, mp)
			}
		}
		f.Close()
		if len(points) == 0 {
			return nil
		}
		sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
		for _, mp := range points {
			syscall.Unmount(mp, syscall.MNT_DETACH)
		}
	}
	return fmt.Errorf("mounts remain under %s", dir)
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
