// Package fetch downloads large files over HTTP(S) the way a boot server's
// assets need it: into a ".part" file that a later run resumes with a
// Range request, renamed into place only when complete, with progress
// reports. It is small because net/http does the protocol; what it adds is
// the resume bookkeeping.
package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// Progress is reported while a file downloads (about once a second) and
// once at the end.
type Progress struct {
	Name    string
	Done    int64 // bytes on disk, including a resumed part
	Total   int64 // -1 when the server didn't say
	Resumed int64 // bytes that were already there
	Rate    float64
	Final   bool
}

// Options of File.
type Options struct {
	Client   *http.Client
	Progress func(Progress)
	// Every is the progress interval; default 1s.
	Every time.Duration
}

// File downloads url to dest. A complete dest is kept when the server
// reports the same size (HEAD); a dest.part from an interrupted run is
// resumed with "Range: bytes=N-" when the server answers 206, restarted
// when it answers 200. The finished file is renamed into place.
func File(ctx context.Context, url, dest string, o Options) (resumedFrom int64, err error) {
	if o.Client == nil {
		o.Client = http.DefaultClient
	}
	if o.Every <= 0 {
		o.Every = time.Second
	}
	name := filepath.Base(dest)
	if fi, err := os.Stat(dest); err == nil {
		if size, err := remoteSize(ctx, o.Client, url); err == nil && size == fi.Size() {
			if o.Progress != nil {
				o.Progress(Progress{Name: name, Done: size, Total: size, Resumed: size, Final: true})
			}
			return size, nil
		}
	}
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return 0, err
	}
	part := dest + ".part"
	var have int64
	if fi, err := os.Stat(part); err == nil {
		have = fi.Size()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	if have > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", have))
	}
	resp, err := o.Client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("downloading %s: %w", url, err)
	}
	defer resp.Body.Close()
	flags := os.O_CREATE | os.O_WRONLY
	var total int64 // the whole file's size, or -1 when the server does not say
	switch {
	case resp.StatusCode == http.StatusPartialContent && have > 0:
		flags |= os.O_APPEND
		var start, end, size int64
		if _, err := fmt.Sscanf(resp.Header.Get("Content-Range"), "bytes %d-%d/%d", &start, &end, &size); err != nil || start != have {
			return 0, fmt.Errorf("downloading %s: the server resumed at %q, want byte %d", url, resp.Header.Get("Content-Range"), have)
		}
		total = size
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable && have > 0:
		// The part may already be whole: check its size against the server's.
		if size, err := remoteSize(ctx, o.Client, url); err == nil && size == have {
			return have, finish(part, dest, name, have, have, 0, o)
		}
		if err := os.Remove(part); err != nil {
			return 0, err
		}
		return File(ctx, url, dest, o) // start over, without the part
	case resp.StatusCode == http.StatusOK:
		have, flags = 0, flags|os.O_TRUNC
		total = resp.ContentLength
	default:
		return 0, fmt.Errorf("downloading %s: HTTP %s", url, resp.Status)
	}
	f, err := os.OpenFile(part, flags, 0o644)
	if err != nil {
		return 0, err
	}
	resumed := have
	done := have
	start := time.Now()
	last := start
	buf := make([]byte, 256<<10)
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if _, err := f.Write(buf[:n]); err != nil {
				f.Close()
				return resumed, err
			}
			done += int64(n)
			if o.Progress != nil && time.Since(last) >= o.Every {
				last = time.Now()
				o.Progress(Progress{Name: name, Done: done, Total: total, Resumed: resumed, Rate: float64(done-resumed) / time.Since(start).Seconds()})
			}
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			f.Close()
			return resumed, fmt.Errorf("downloading %s: interrupted at byte %d (run again to resume): %w", url, done, rerr)
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return resumed, err
	}
	if err := f.Close(); err != nil {
		return resumed, err
	}
	if total >= 0 && done != total {
		return resumed, fmt.Errorf("downloading %s: got %d of %d bytes (run again to resume)", url, done, total)
	}
	return resumed, finish(part, dest, name, done, resumed, time.Since(start), o)
}

// finish renames the complete part into place and reports the final
// progress (rate over took, the time this run downloaded).
func finish(part, dest, name string, done, resumed int64, took time.Duration, o Options) error {
	if err := os.Rename(part, dest); err != nil {
		return err
	}
	if o.Progress != nil {
		rate := 0.0
		if s := took.Seconds(); s > 0 {
			rate = float64(done-resumed) / s
		}
		o.Progress(Progress{Name: name, Done: done, Total: done, Resumed: resumed, Rate: rate, Final: true})
	}
	return nil
}

func remoteSize(ctx context.Context, c *http.Client, url string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("HEAD %s: %s", url, resp.Status)
	}
	if resp.ContentLength < 0 {
		return 0, errors.New("no Content-Length")
	}
	return resp.ContentLength, nil
}
