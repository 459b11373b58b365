package node

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"time"

	"github.com/velvetrope/velvetrope/internal/testbed"
)

// Image is a container image made without Docker or a registry: static Go
// binaries in one layer, written as a docker-archive tar that containerd
// imports (`ctr images import`).
type Image struct {
	Ref        string   // e.g. "velvetrope.local/velvetrope:dev"
	Packages   []string // main packages of the velvetrope module, each to /<name>
	Entrypoint []string
	// Certs adds the host's CA bundle, as distroless/static has one.
	Certs bool
}

// ProjectImage is the Dockerfile's image (static redeemer and manager,
// non-root 65532, no shell, CA certificates), under ref.
func ProjectImage(ref string) Image {
	return Image{Ref: ref, Packages: []string{"./cmd/redeemer", "./cmd/manager"}, Entrypoint: []string{"/redeemer"}, Certs: true}
}

// pauseImage is the sandbox image every pod starts with.
var pauseImage = Image{Ref: "velvetrope.local/pause:1", Packages: []string{"./internal/testbed/node/pause"}, Entrypoint: []string{"/pause"}}

// Build compiles the image's binaries (CGO off, as in the Dockerfile) and
// writes the docker-archive tar to path.
func (img Image) Build(path string) error {
	root, err := testbed.ModuleRoot()
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "velvetrope-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	args := append([]string{"build", "-trimpath", "-ldflags=-s -w", "-o", tmp + "/"}, img.Packages...)
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building %s: %v\n%s", img.Ref, err, out)
	}

	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	epoch := time.Unix(0, 0)
	dir := func(name string, mode int64) {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, ModTime: epoch})
	}
	file := func(name string, mode int64, b []byte) {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(b)), ModTime: epoch})
		tw.Write(b)
	}
	dir("etc", 0o755)
	file("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"))
	file("etc/group", 0o644, []byte("root:x:0:\nnonroot:x:65532:\n"))
	dir("tmp", 0o1777)
	if img.Certs {
		b, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt")
		if err != nil {
			return fmt.Errorf("the image's CA bundle: %w", err)
		}
		dir("etc/ssl", 0o755)
		dir("etc/ssl/certs", 0o755)
		file("etc/ssl/certs/ca-certificates.crt", 0o644, b)
	}
	for _, pkg := range img.Packages {
		b, err := os.ReadFile(filepath.Join(tmp, filepath.Base(pkg)))
		if err != nil {
			return err
		}
		file(filepath.Base(pkg), 0o755, b)
	}
	if err := tw.Close(); err != nil {
		return err
	}
	diffID := sha256.Sum256(layer.Bytes())

	config, err := json.Marshal(map[string]any{
		"architecture": runtime.GOARCH,
		"os":           "linux",
		"created":      epoch.Format(time.RFC3339),
		"config": map[string]any{
			"User":         "65532:65532",
			"Entrypoint":   img.Entrypoint,
			"Env":          []string{"PATH=/"},
			"ExposedPorts": map[string]any{"8080/tcp": map[string]any{}},
		},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + hex.EncodeToString(diffID[:])}},
	})
	if err != nil {
		return err
	}
	configSum := sha256.Sum256(config)
	configName := hex.EncodeToString(configSum[:]) + ".json"
	manifest, err := json.Marshal([]map[string]any{{"Config": configName, "RepoTags": []string{img.Ref}, "Layers": []string{"layer.tar"}}})
	if err != nil {
		return err
	}

	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	out := tar.NewWriter(f)
	for _, e := range []struct {
		name string
		b    []byte
	}{{"layer.tar", layer.Bytes()}, {configName, config}, {"manifest.json", manifest}} {
		if err := out.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: e.name, Mode: 0o644, Size: int64(len(e.b)), ModTime: epoch}); err != nil {
			return err
		}
		if _, err := out.Write(e.b); err != nil {
			return err
		}
	}
	if err := out.Close(); err != nil {
		return err
	}
	return f.Close()
}
