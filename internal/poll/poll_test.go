package poll

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

var errNotYet = errors.New("not yet")

func TestUntil(t *testing.T) {
	fatal := errors.New("disk on fire")
	cases := []struct {
		name     string
		timeout  time.Duration
		cond     func(n int) (bool, error) // n: 1-based attempt
		wantErr  error                     // errors.Is target; nil: success
		attempts int                       // exact, or minimum when wantErr is a timeout
	}{
		{"done at once", time.Second, func(int) (bool, error) { return true, nil }, nil, 1},
		{"done on the third check", time.Second, func(n int) (bool, error) { return n == 3, errNotYet }, nil, 3},
		{"done wins over an error", time.Second, func(int) (bool, error) { return true, errNotYet }, nil, 1},
		{"stop ends at once", time.Second, func(n int) (bool, error) { return false, Stop(fatal) }, fatal, 1},
		{"stop after retries", time.Second, func(n int) (bool, error) {
			if n == 4 {
				return false, Stop(fatal)
			}
			return false, errNotYet
		}, fatal, 4},
		{"timeout keeps the last error", 100 * time.Millisecond, func(int) (bool, error) { return false, errNotYet }, context.DeadlineExceeded, 3},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var n int
			start := time.Now()
			err := Until(context.Background(), Options{Interval: 10 * time.Millisecond, Timeout: c.timeout}, func(context.Context) (bool, error) {
				n++
				return c.cond(n)
			})
			if time.Since(start) > c.timeout+time.Second {
				t.Fatalf("took %s, bound %s", time.Since(start), c.timeout)
			}
			if c.wantErr == nil {
				if err != nil || n != c.attempts {
					t.Fatalf("err %v after %d attempts, want nil after %d", err, n, c.attempts)
				}
				return
			}
			if !errors.Is(err, c.wantErr) {
				t.Fatalf("err %v, want %v", err, c.wantErr)
			}
			var perr *Error
			if errors.Is(c.wantErr, context.DeadlineExceeded) {
				if !errors.As(err, &perr) || perr.Attempts < c.attempts || perr.Attempts != n || !errors.Is(err, errNotYet) || perr.Interrupted() {
					t.Fatalf("timeout error %#v after %d attempts", err, n)
				}
				if !strings.Contains(err.Error(), "timed out after") || !strings.Contains(err.Error(), "last error: not yet") {
					t.Fatalf("message %q", err)
				}
				return
			}
			if errors.As(err, &perr) || n != c.attempts || err != fatal {
				t.Fatalf("stop: %#v after %d attempts", err, n)
			}
		})
	}
}

func TestUntilInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	err := Until(ctx, Options{Interval: 5 * time.Millisecond}, func(context.Context) (bool, error) { return false, nil })
	var perr *Error
	if !errors.As(err, &perr) || !perr.Interrupted() || !errors.Is(err, context.Canceled) || perr.Last != nil || !strings.HasPrefix(err.Error(), "interrupted after") {
		t.Fatalf("got %v", err)
	}
	// A context already done still gets one check.
	var n atomic.Int32
	_ = Until(ctx, Options{}, func(context.Context) (bool, error) { n.Add(1); return false, nil })
	if n.Load() != 1 {
		t.Fatalf("%d checks on a done context", n.Load())
	}
}

func TestUntilProgress(t *testing.T) {
	var reports []Progress
	err := Until(context.Background(), Options{Interval: 5 * time.Millisecond, Every: 30 * time.Millisecond, Timeout: 200 * time.Millisecond,
		OnProgress: func(p Progress) { reports = append(reports, p) }},
		func(context.Context) (bool, error) { return false, errNotYet })
	if err == nil {
		t.Fatal("no timeout")
	}
	if len(reports) < 2 || len(reports) > 8 {
		t.Fatalf("%d reports in 200ms every 30ms", len(reports))
	}
	for i, p := range reports {
		if p.Elapsed < 30*time.Millisecond || p.Last != errNotYet || (i > 0 && (p.Elapsed <= reports[i-1].Elapsed || p.Attempts <= reports[i-1].Attempts)) {
			t.Fatalf("report %d: %+v", i, p)
		}
	}
}
