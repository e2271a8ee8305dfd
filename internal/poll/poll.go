// Package poll is dodai's one way to wait for something to become true: a
// bounded loop, k8s.io/apimachinery's wait.PollUntilContextCancel, that
// checks a condition at once and then every interval until it holds, fails
// for good (Stop), or the context or Options.Timeout ends, and reports
// progress while it waits. Bootstrap waits for nodes, etcd and the
// Kubernetes API with it. A new wait uses it rather than a sleep loop of
// its own (docs/architecture.md lists the loops not yet moved onto it).
//
//	err := poll.Until(ctx, poll.Options{Interval: time.Second, Every: 10 * time.Second,
//		OnProgress: func(p poll.Progress) { log.Info("waiting for etcd", "elapsed", p.Elapsed, "last", p.Last) },
//	}, func(ctx context.Context) (bool, error) {
//		ok, err := etcdHealthy(ctx)
//		if errors.Is(err, errFatal) {
//			return false, poll.Stop(err) // no point in waiting
//		}
//		return ok, err // err: not yet, and why
//	})
//	var perr *poll.Error
//	if errors.As(err, &perr) { … perr.Last says why it never held … }
package poll

import (
	"context"
	"errors"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// Defaults of Options.
const (
	DefaultInterval = time.Second
	DefaultEvery    = 10 * time.Second
)

// Condition is checked once per interval. It returns done when what is
// awaited holds. A non-nil error means "not yet, and this is why": it is
// kept (Progress.Last, Error.Last) and the wait goes on, unless it was
// made with Stop, which ends the wait with it.
type Condition func(ctx context.Context) (done bool, err error)

// Options of Until.
type Options struct {
	// Interval between checks (default DefaultInterval). A check that takes
	// longer is followed by the next one at once.
	Interval time.Duration
	// Timeout bounds the wait in addition to the context (0: the context
	// alone bounds it).
	Timeout time.Duration
	// Every is how often OnProgress is called while the condition does not
	// hold (default DefaultEvery); the first call comes after Every.
	Every time.Duration
	// OnProgress, if set, reports a wait that goes on.
	OnProgress func(Progress)
}

// Progress describes a wait still going on, or one that gave up.
type Progress struct {
	// Elapsed since Until was called.
	Elapsed time.Duration
	// Attempts is how often the condition was checked.
	Attempts int
	// Last is the condition's latest error (nil when it said "not yet"
	// without one).
	Last error
}

// Error is returned by Until when the context or the timeout ended the wait
// before the condition held. It unwraps to the context's error
// (context.DeadlineExceeded or context.Canceled) and to Last.
type Error struct {
	Progress
	// Cause is context.DeadlineExceeded (timeout) or context.Canceled
	// (interrupted).
	Cause error
}

func (e *Error) Error() string {
	what := "timed out"
	if e.Interrupted() {
		what = "interrupted"
	}
	msg := fmt.Sprintf("%s after %s (%d attempts)", what, e.Elapsed.Round(time.Millisecond), e.Attempts)
	if e.Last != nil {
		msg += ": last error: " + e.Last.Error()
	}
	return msg
}

// Unwrap returns the cause and the condition's last error.
func (e *Error) Unwrap() []error {
	if e.Last == nil {
		return []error{e.Cause}
	}
	return []error{e.Cause, e.Last}
}

// Interrupted reports whether the wait was cancelled (e.g. Ctrl-C) rather
// than timed out.
func (e *Error) Interrupted() bool { return errors.Is(e.Cause, context.Canceled) }

type stopError struct{ err error }

func (s *stopError) Error() string { return s.err.Error() }
func (s *stopError) Unwrap() error { return s.err }

// Stop marks a condition's error as final: Until returns err at once
// instead of checking again. Stop(nil) is nil.
func Stop(err error) error {
	if err == nil {
		return nil
	}
	return &stopError{err}
}

// Until checks cond at once and then every Interval until it returns done
// (Until returns nil), returns an error made with Stop (Until returns that
// error, unwrapped), or the context or Timeout ends (Until returns an
// *Error).
func Until(ctx context.Context, o Options, cond Condition) error {
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.Every <= 0 {
		o.Every = DefaultEvery
	}
	if o.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.Timeout)
		defer cancel()
	}
	start := time.Now()
	reported := start
	var p Progress
	err := wait.PollUntilContextCancel(ctx, o.Interval, true, func(ctx context.Context) (bool, error) {
		done, err := cond(ctx)
		p.Attempts++
		p.Elapsed = time.Since(start)
		var stop *stopError
		if errors.As(err, &stop) {
			return false, stop
		}
		if done {
			return true, nil
		}
		p.Last = err
		if o.OnProgress != nil && time.Since(reported) >= o.Every {
			reported = time.Now()
			o.OnProgress(p)
		}
		return false, nil
	})
	var stop *stopError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &stop):
		return stop.err
	case ctx.Err() != nil:
		p.Elapsed = time.Since(start)
		return &Error{Progress: p, Cause: ctx.Err()}
	default:
		return err
	}
}
