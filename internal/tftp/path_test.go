package tftp

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestResolvePath(t *testing.T) {
	ok := map[string]string{
		"undionly.kpxe":       "undionly.kpxe",
		"/undionly.kpxe":      "undionly.kpxe",
		"//x86/ipxe.efi":      "x86/ipxe.efi",
		"a//./b":              "a/b",
		"./pxelinux.0":        "pxelinux.0",
		"dir/file.with..dots": "dir/file.with..dots",
		"..foo":               "..foo",
	}
	for in, want := range ok {
		got, err := resolvePath(in)
		if err != nil || got != want {
			t.Errorf("resolvePath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	bad := map[string]string{
		"":                 "empty file name",
		"/":                "names the root directory",
		".":                "names the root directory",
		"..":               `contains ".."`,
		"../etc/passwd":    `contains ".."`,
		"/../etc/passwd":   `contains ".."`,
		"a/../../b":        `contains ".."`,
		"a/../b":           `contains ".."`,
		`boot\pxeboot.n12`: "backslash",
		`..\..\etc\passwd`: "backslash",
		"a\x00b":           "control character",
		"a\nb":             "control character",
		"a\x7fb":           "control character",
	}
	for in, want := range bad {
		got, err := resolvePath(in)
		if err == nil {
			t.Errorf("resolvePath(%q) = %q, want error", in, got)
			continue
		}
		if !strings.Contains(err.Error(), want) || !strings.HasPrefix(err.Error(), "access violation") {
			t.Errorf("resolvePath(%q) error %q, want it to mention %q", in, err, want)
		}
	}
}

// escapeTree builds root/ with files and symlinks, some of which lead
// outside into a sibling directory holding a secret.
func escapeTree(t testing.TB) (rootDir string) {
	base := t.TempDir()
	rootDir = filepath.Join(base, "root")
	outside := filepath.Join(base, "outside")
	for _, d := range []string{rootDir, outside, filepath.Join(rootDir, "sub")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p, s string) {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(outside, "secret"), "OUTSIDE")
	write(filepath.Join(rootDir, "inside"), "IN")
	write(filepath.Join(rootDir, "sub", "file"), "IN")
	links := map[string]string{
		"rel-escape":   "../outside/secret",
		"abs-escape":   filepath.Join(outside, "secret"),
		"dir-escape":   "../outside",
		"sub/up":       "../../outside/secret",
		"sub/updir":    "../..",
		"ok-link":      "inside",
		"sub/ok-up":    "../inside",
		"abs-inside":   filepath.Join(rootDir, "inside"), // absolute, even if inside: refused by os.Root
		"loop":         "loop",
		"etc-passwd":   "/etc/passwd",
		"proc-environ": "/proc/self/environ",
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(rootDir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return rootDir
}

func TestSymlinkEscapes(t *testing.T) {
	rootDir := escapeTree(t)
	root, err := os.OpenRoot(rootDir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	s := &Server{Root: rootDir}
	for name, wantOK := range map[string]bool{
		"inside": true, "/sub/file": true, "ok-link": true, "sub/ok-up": true,
		"rel-escape": false, "abs-escape": false, "dir-escape/secret": false, "sub/up": false,
		"sub/updir/outside/secret": false, "abs-inside": false, "loop": false, "etc-passwd": false,
		"proc-environ": false, "sub": false,
	} {
		tr, perr := s.prepare(root, rrq(name, "octet"))
		if wantOK {
			if perr != nil {
				t.Errorf("%s: refused: %v", name, perr)
				continue
			}
			b, _ := io.ReadAll(io.NewSectionReader(tr.r, 0, tr.size))
			tr.close()
			if string(b) != "IN" {
				t.Errorf("%s: served %q", name, b)
			}
			continue
		}
		if perr == nil {
			b, _ := io.ReadAll(io.NewSectionReader(tr.r, 0, tr.size))
			tr.close()
			t.Errorf("%s: served %q, want refusal", name, b)
			continue
		}
		if perr.Code != ErrCodeAccessViolation && perr.Code != ErrCodeFileNotFound {
			t.Errorf("%s: error code %d (%s), want 1 or 2", name, perr.Code, perr.Message)
		}
		if strings.Contains(perr.Message, rootDir) {
			t.Errorf("%s: error %q leaks the server path", name, perr.Message)
		}
	}
}

func rrq(name, mode string, opts ...string) []byte {
	return (&Request{Op: OpRRQ, Filename: name, Mode: mode, Options: options(opts...)}).Marshal()
}

// FuzzResolvePath: whatever the name, the server either refuses it or
// serves a file from inside the root (never the secret outside it).
func FuzzResolvePath(f *testing.F) {
	for _, s := range []string{
		"inside", "/inside", "sub/file", "../outside/secret", "rel-escape", "abs-escape",
		"dir-escape/secret", "sub/up", "sub/updir/outside/secret", "/../outside/secret",
		"..\\outside\\secret", "sub/../../outside/secret", "ok-link", "loop", "etc-passwd", "./sub//file",
	} {
		f.Add(s)
	}
	rootDir := escapeTree(f)
	root, err := os.OpenRoot(rootDir)
	if err != nil {
		f.Fatal(err)
	}
	s := &Server{Root: rootDir}
	f.Fuzz(func(t *testing.T, name string) {
		rel, err := resolvePath(name)
		if err == nil {
			if !filepath.IsLocal(rel) || strings.Contains(rel, "\\") || strings.HasPrefix(rel, "/") {
				t.Fatalf("resolvePath(%q) = %q is not local", name, rel)
			}
			for _, p := range strings.Split(rel, "/") {
				if p == ".." || p == "" || p == "." {
					t.Fatalf("resolvePath(%q) = %q has component %q", name, rel, p)
				}
			}
		}
		if len(name) == 0 || strings.IndexByte(name, 0) >= 0 || len(name) > MaxFilenameLen {
			return // not encodable as a request
		}
		tr, perr := s.prepare(root, rrq(name, "octet"))
		if perr != nil {
			return
		}
		defer tr.close()
		if err != nil {
			t.Fatalf("prepare served %q although resolvePath refused it: %v", name, err)
		}
		b, _ := io.ReadAll(io.NewSectionReader(tr.r, 0, tr.size))
		if string(b) != "IN" {
			t.Fatalf("name %q served %q from outside the root", name, b)
		}
	})
}
