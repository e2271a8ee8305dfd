package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/siderolabs/image-factory/pkg/schematic"

	"github.com/dodai-dev/dodai/internal/cluster"
)

// TestImageFetch runs `dodai image fetch` against a local Image Factory
// (the real factory can't be reached from tests): the schematic is
// registered first, kernel and initramfs land where netboot reads them, and
// a dropped initramfs download resumes on the next run.
func TestImageFetch(t *testing.T) {
	kernel := bytes.Repeat([]byte("K"), 300<<10)
	initramfs := bytes.Repeat([]byte("I"), 2<<20)
	var registered []string
	cut := true
	var ranges []string
	mux := http.NewServeMux()
	mux.HandleFunc("POST /schematics", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s, err := schematic.Unmarshal(b)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		id, _ := s.ID()
		registered = append(registered, id)
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(map[string]string{"id": id})
	})
	mux.HandleFunc("/image/{id}/{ver}/{file}", func(w http.ResponseWriter, r *http.Request) {
		if len(registered) == 0 || r.PathValue("id") != registered[0] || r.PathValue("ver") != "v"+strings.TrimPrefix(cluster.DefaultTalosVersion, "v") {
			http.NotFound(w, r)
			return
		}
		var data []byte
		switch r.PathValue("file") {
		case "kernel-amd64":
			data = kernel
		case "initramfs-amd64.xz":
			data = initramfs
			if r.Method == http.MethodGet {
				ranges = append(ranges, r.Header.Get("Range"))
				if cut {
					cut = false
					w.Header().Set("Content-Length", "2097152")
					w.Write(data[:700<<10])
					w.(http.Flusher).Flush()
					panic(http.ErrAbortHandler)
				}
			}
		default:
			http.NotFound(w, r)
			return
		}
		http.ServeContent(w, r, "f", time.Time{}, bytes.NewReader(data))
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "cluster.yaml"), []byte(`apiVersion: dodai.dev/v1alpha1
kind: Cluster
metadata: {name: f}
spec:
  endpoint: https://10.0.0.11:6443
  image: {factory: `+srv.URL+`, extensions: [siderolabs/drbd]}
  nodes:
    - {name: cp1, role: controlplane, macs: ["52:54:00:00:00:01"], address: 10.0.0.11/24, installDisk: {path: /dev/sda}}
`), 0o644)
	run := func() (string, string, int) {
		var out, errb bytes.Buffer
		code := Run(context.Background(), []string{"-C", dir, "image", "fetch"}, nil, &out, &errb)
		return out.String(), errb.String(), code
	}
	_, errOut, code := run()
	if code == 0 || !strings.Contains(errOut, "run again to resume") {
		t.Fatalf("first run should fail mid-initramfs (%d):\n%s", code, errOut)
	}
	out, errOut, code := run()
	if code != 0 {
		t.Fatalf("second run (%d):\n%s", code, errOut)
	}
	if len(ranges) != 2 || ranges[1] != "bytes=716800-" || !strings.Contains(errOut, "resumed at 0.7 MiB") {
		t.Fatalf("no resume: ranges %q\n%s", ranges, errOut)
	}
	for name, want := range map[string][]byte{"vmlinuz": kernel, "initramfs.xz": initramfs} {
		got, _ := os.ReadFile(filepath.Join(dir, "assets", "amd64", name))
		if !bytes.Equal(got, want) {
			t.Errorf("%s: %d bytes, want %d", name, len(got), len(want))
		}
	}
	if !strings.Contains(out, filepath.Join(dir, "assets", "amd64", "vmlinuz")) || !strings.Contains(errOut, "schematic "+registered[0]) {
		t.Fatalf("output:\n%s\n%s", out, errOut)
	}
}
