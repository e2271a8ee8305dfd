package fetch

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// server serves one file with Range support (http.ServeContent) and can cut
// the connection after a number of bytes, like a dropped download.
type server struct {
	mu     sync.Mutex
	data   []byte
	cutAt  int // bytes of the next full GET before the connection drops; 0: none
	ranges []string
	gets   int
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	cut := s.cutAt
	if r.Method == http.MethodGet {
		s.gets++
		s.ranges = append(s.ranges, r.Header.Get("Range"))
		s.cutAt = 0
	}
	s.mu.Unlock()
	if cut > 0 {
		w.Header().Set("Content-Length", strconv.Itoa(len(s.data)))
		w.WriteHeader(200)
		w.Write(s.data[:cut])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // drop the connection mid-body
	}
	http.ServeContent(w, r, "f", time.Time{}, bytes.NewReader(s.data))
}

func TestResume(t *testing.T) {
	data := make([]byte, 3<<20)
	for i := range data {
		data[i] = byte(i * 31)
	}
	s := &server{data: data, cutAt: 1 << 20}
	srv := httptest.NewServer(s)
	defer srv.Close()
	dest := filepath.Join(t.TempDir(), "amd64", "vmlinuz")
	var reports []Progress
	o := Options{Progress: func(p Progress) { reports = append(reports, p) }, Every: time.Millisecond}

	// First run: dropped after 1 MiB. The part stays, dest does not exist.
	if _, err := File(context.Background(), srv.URL+"/k", dest, o); err == nil || !strings.Contains(err.Error(), "run again to resume") {
		t.Fatalf("first run: %v", err)
	}
	if _, err := os.Stat(dest); err == nil {
		t.Fatal("an incomplete download was renamed into place")
	}
	fi, err := os.Stat(dest + ".part")
	if err != nil || fi.Size() != 1<<20 {
		t.Fatalf("part: %v %v", fi, err)
	}
	// Second run resumes with a Range request for the rest.
	resumed, err := File(context.Background(), srv.URL+"/k", dest, o)
	if err != nil || resumed != 1<<20 {
		t.Fatalf("resume: %d %v", resumed, err)
	}
	if s.ranges[1] != "bytes=1048576-" {
		t.Fatalf("range requests %q", s.ranges)
	}
	got, _ := os.ReadFile(dest)
	if !bytes.Equal(got, data) {
		t.Fatal("resumed file differs")
	}
	if last := reports[len(reports)-1]; !last.Final || last.Done != int64(len(data)) || last.Resumed != 1<<20 {
		t.Fatalf("final progress %+v", last)
	}
	// Third run: complete and the same size on the server: no GET at all.
	gets := s.gets
	if _, err := File(context.Background(), srv.URL+"/k", dest, o); err != nil || s.gets != gets {
		t.Fatalf("complete file downloaded again: %v, gets %d -> %d", err, gets, s.gets)
	}
	// A server without the file: a clear error.
	if _, err := File(context.Background(), srv.URL+"/missing", filepath.Join(t.TempDir(), "x"), Options{Client: &http.Client{Transport: http.NewFileTransport(http.Dir(t.TempDir()))}}); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("missing file: %v", err)
	}
}

func TestRestartWhenRangeIgnored(t *testing.T) {
	// A server that ignores Range (200 with the whole file): start over.
	data := []byte(strings.Repeat("abc", 1000))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(data) }))
	defer srv.Close()
	dest := filepath.Join(t.TempDir(), "f")
	os.WriteFile(dest+".part", []byte("garbage"), 0o644)
	if _, err := File(context.Background(), srv.URL, dest, Options{}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, data) {
		t.Fatalf("got %q…", got[:10])
	}
}
