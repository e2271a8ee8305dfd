package tftp

import "time"

// backoff is the retransmission timer of one transfer: bounded exponential
// backoff. After a packet (or window) is sent the sender waits initial; each
// timeout in a row doubles the wait, up to max; the transfer is abandoned
// once total has passed without progress (or, when maxRetries > 0, after
// that many retransmissions in a row). Progress — an ACK that moves the
// window — starts over at initial.
//
// With the defaults (500 ms, 8 s, 30 s) a silent client sees the packet
// again 0.5, 1.5, 3.5, 7.5, 15.5 and 23.5 s after the first send and the
// transfer ends at 30 s: a short first wait, because on a LAN a lost packet
// is the common case and the client is waiting too; doubling, because a
// client that does not answer within a few RTOs is usually busy or starved
// (a rack booting at once), and repeating into that only adds load.
type backoff struct {
	initial, max, total time.Duration
	maxRetries          int // 0: bounded by total only

	cur   time.Duration // the current wait
	since time.Time     // last progress (or the first send)
	n     int           // retransmissions since the last progress
}

// start records progress at now and returns the deadline for the answer
// to what was just sent.
func (b *backoff) start(now time.Time) time.Time {
	b.cur, b.since, b.n = b.initial, now, 0
	return now.Add(b.initial)
}

// next is called when the deadline passed without progress. It returns
// the deadline for the retransmission about to be sent at now, or false
// when the transfer should give up.
func (b *backoff) next(now time.Time) (time.Time, bool) {
	elapsed := now.Sub(b.since)
	if elapsed >= b.total || (b.maxRetries > 0 && b.n >= b.maxRetries) {
		return time.Time{}, false
	}
	b.n++
	b.cur = min(2*b.cur, b.max)
	return now.Add(min(b.cur, b.total-elapsed)), true
}

// stalled is how long the transfer has gone without progress.
func (b *backoff) stalled(now time.Time) time.Duration { return now.Sub(b.since) }

// newBackoff is the timer policy of t: the server's (or, when the client
// negotiated RFC 2349 "timeout", the client's) initial timeout. A
// negotiated timeout T also raises the cap to at least T and the total
// bound to at least 4·T, so the client still gets three retransmissions at
// the interval it asked for.
func (s *Server) newBackoff(t *transfer) *backoff {
	b := &backoff{initial: t.timeout, max: s.maxTimeout(), total: s.giveUpAfter(), maxRetries: s.Retries}
	if t.negotiatedTimeout {
		b.max = max(b.max, t.timeout)
		b.total = max(b.total, 4*t.timeout)
	}
	b.max = max(b.max, b.initial)
	return b
}
