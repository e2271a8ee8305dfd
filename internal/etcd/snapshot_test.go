package etcd

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// withTrailer appends etcd's sha256 trailer to body.
func withTrailer(body []byte) []byte {
	sum := sha256.Sum256(body)
	return append(append([]byte(nil), body...), sum[:]...)
}

func TestCheckRejects(t *testing.T) {
	page := bytes.Repeat([]byte{0xab}, 4096)
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "size 0 has no sha256 trailer"},
		{"text", []byte("hello"), "has no sha256 trailer"},
		{"pages without trailer", page, "size 4096 has no sha256 trailer"},
		{"wrong trailer", append(append([]byte(nil), page...), make([]byte, 32)...), "does not match its trailer"},
		{"intact trailer, not a database", withTrailer(page), "not a valid etcd snapshot"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "s.db")
			if err := os.WriteFile(p, tc.data, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Check(p)
			if err == nil || !errors.Is(err, ErrBadSnapshot) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

// failingReader returns data then an error, like a stream that breaks.
type failingReader struct {
	data []byte
	err  error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestSaveLeavesNothingOnBadStream(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "snap.db")
	page := bytes.Repeat([]byte{1}, 4096)
	for _, r := range []io.Reader{
		bytes.NewReader(page), // truncated: no trailer
		&failingReader{data: page, err: errors.New("stream broke")},
		bytes.NewReader(withTrailer(page)), // intact trailer, garbage database
	} {
		if _, err := Save(r, path); err == nil {
			t.Fatal("bad stream saved")
		}
		entries, _ := os.ReadDir(filepath.Dir(path))
		if len(entries) != 0 {
			t.Fatalf("left behind: %v", entries)
		}
	}
	// An existing good file is not replaced by a bad stream.
	if err := os.WriteFile(path, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Save(bytes.NewReader(page), path); err == nil {
		t.Fatal("bad stream saved")
	}
	if b, _ := os.ReadFile(path); string(b) != "keep" {
		t.Fatalf("existing file changed: %q", b)
	}
}

func TestRotate(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var names []string
	for i := range 5 {
		n := SnapshotName(t0.Add(time.Duration(i) * time.Hour))
		names = append(names, n)
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "other.db"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if names[0] != "snapshot-20260102T030405.000Z.db" {
		t.Fatalf("name %s", names[0])
	}
	removed, err := Rotate(dir, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 2 || filepath.Base(removed[0]) != names[0] || filepath.Base(removed[1]) != names[1] {
		t.Fatalf("removed %v", removed)
	}
	left, _ := Snapshots(dir)
	if len(left) != 3 || filepath.Base(left[0]) != names[2] {
		t.Fatalf("left %v", left)
	}
	if _, err := os.Stat(filepath.Join(dir, "other.db")); err != nil {
		t.Fatal("unrelated file removed")
	}
	if removed, _ := Rotate(dir, 0); removed != nil {
		t.Fatal("keep 0 removed files")
	}
}

// FuzzCheck feeds arbitrary files to Check, with and without a valid
// sha256 trailer (so the database reader sees them too): it must never
// panic, and accept only what holds a revision.
func FuzzCheck(f *testing.F) {
	f.Add([]byte{}, false)
	f.Add(bytes.Repeat([]byte{0}, 4096), true)
	f.Add([]byte("not a snapshot"), true)
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte, trailer bool) {
		if trailer {
			// Pad to whole pages so the trailer is where etcd puts it.
			if pad := (512 - len(data)%512) % 512; pad > 0 {
				data = append(data, make([]byte, pad)...)
			}
			data = withTrailer(data)
		}
		p := filepath.Join(dir, "fuzz.db")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		info, err := Check(p)
		if err == nil && info.Revision <= 0 {
			t.Fatalf("accepted a snapshot without revision: %+v", info)
		}
	})
}
