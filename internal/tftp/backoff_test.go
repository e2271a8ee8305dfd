package tftp

import (
	"slices"
	"testing"
	"time"
)

// schedule replays a client that never answers against b: the times (from
// the first send) at which the packet is retransmitted, and when the
// transfer gives up.
func schedule(b *backoff) (resends []time.Duration, giveUp time.Duration) {
	t0 := time.Unix(1000, 0)
	deadline := b.start(t0)
	for {
		var ok bool
		now := deadline
		if deadline, ok = b.next(now); !ok {
			return resends, now.Sub(t0)
		}
		resends = append(resends, now.Sub(t0))
	}
}

func ms(v ...int) []time.Duration {
	var d []time.Duration
	for _, x := range v {
		d = append(d, time.Duration(x)*time.Millisecond)
	}
	return d
}

func TestBackoffSchedule(t *testing.T) {
	sec := time.Second
	cases := []struct {
		name       string
		srv        Server
		negotiated time.Duration // client's RFC 2349 timeout, 0: none
		resends    []time.Duration
		giveUp     time.Duration
	}{
		{"defaults: 0.5 s doubling to 8 s, 30 s without progress", Server{}, 0,
			ms(500, 1500, 3500, 7500, 15500, 23500), 30 * sec},
		{"server timeout 1 s", Server{Timeout: sec}, 0,
			ms(1000, 3000, 7000, 15000, 23000), 30 * sec},
		{"short cap and bound", Server{Timeout: 50 * time.Millisecond, MaxTimeout: 200 * time.Millisecond, GiveUpAfter: sec}, 0,
			ms(50, 150, 350, 550, 750, 950), sec},
		{"retries cap the count", Server{Timeout: 100 * time.Millisecond, Retries: 3}, 0,
			ms(100, 300, 700), 1500 * time.Millisecond},
		{"client asks timeout 1: starts at 1 s", Server{Timeout: 30 * sec}, sec,
			ms(1000, 3000, 7000, 15000, 23000), 30 * sec},
		{"client asks timeout 10: cap and bound raised, 3 resends at 10 s", Server{}, 10 * sec,
			ms(10000, 20000, 30000), 40 * sec},
		{"initial above the cap: the cap follows", Server{Timeout: 9 * sec}, 0,
			ms(9000, 18000, 27000), 30 * sec},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tr := &transfer{timeout: tc.srv.Timeout, negotiatedTimeout: tc.negotiated > 0}
			if tc.negotiated > 0 {
				tr.timeout = tc.negotiated
			}
			if tr.timeout == 0 {
				tr.timeout = DefaultTimeout
			}
			resends, giveUp := schedule(tc.srv.newBackoff(tr))
			if !slices.Equal(resends, tc.resends) || giveUp != tc.giveUp {
				t.Fatalf("resent at %v, gave up at %v; want %v, %v", resends, giveUp, tc.resends, tc.giveUp)
			}
		})
	}
}

// TestBackoffProgressStartsOver: an ACK that moves the window resets the
// wait to the initial timeout and the give-up clock.
func TestBackoffProgressStartsOver(t *testing.T) {
	b := (&Server{Timeout: 100 * time.Millisecond, MaxTimeout: time.Second, GiveUpAfter: 2 * time.Second}).
		newBackoff(&transfer{timeout: 100 * time.Millisecond})
	t0 := time.Unix(1000, 0)
	d := b.start(t0)
	for range 4 { // resent at 0.1, 0.3, 0.7, 1.5 s
		d, _ = b.next(d)
	}
	if want := t0.Add(2 * time.Second); !d.Equal(want) {
		t.Fatalf("deadline %v after the 4th resend, want %v (capped by the 2 s bound)", d.Sub(t0), want.Sub(t0))
	}
	progress := t0.Add(1600 * time.Millisecond)
	if got := b.start(progress); !got.Equal(progress.Add(100 * time.Millisecond)) {
		t.Fatalf("after progress the wait is %v, want 100ms", got.Sub(progress))
	}
	if b.n != 0 || b.stalled(progress) != 0 {
		t.Fatalf("after progress: %d retransmissions, stalled %v", b.n, b.stalled(progress))
	}
	// The next timeout doubles again from 100 ms.
	at := progress.Add(100 * time.Millisecond)
	if d, ok := b.next(at); !ok || !d.Equal(at.Add(200*time.Millisecond)) {
		t.Fatalf("first timeout after progress: deadline %v (ok %v), want 200ms later", d.Sub(at), ok)
	}
}
