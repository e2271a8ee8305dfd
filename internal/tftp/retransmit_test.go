package tftp

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Packet-level tests of retransmission (bounded exponential backoff) and of
// repeated requests, with a hand-driven client on 127.0.0.1.

// stampConn is a client socket that reports the kernel's receive time of
// each datagram (SO_TIMESTAMPNS), so that a test goroutine scheduled late
// on a loaded machine does not skew the measured intervals.
type stampConn struct {
	*net.UDPConn
	buf, oob []byte
}

func newStampConn(t *testing.T) *stampConn {
	t.Helper()
	c := rawConn(t)
	enableStamps(t, c)
	return &stampConn{UDPConn: c, buf: make([]byte, 70000), oob: make([]byte, 512)}
}

// enableStamps turns on SO_TIMESTAMPNS on c.
func enableStamps(t *testing.T, c *net.UDPConn) {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
	}); err != nil || serr != nil {
		t.Fatalf("SO_TIMESTAMPNS: %v %v", err, serr)
	}
}

// readStamped reads one datagram from a socket with SO_TIMESTAMPNS and
// returns the kernel's receive time (the zero time when it is missing).
func readStamped(c *net.UDPConn, buf, oob []byte) (int, netip.AddrPort, time.Time, error) {
	n, oobn, _, from, err := c.ReadMsgUDPAddrPort(buf, oob)
	if err != nil {
		return 0, from, time.Time{}, err
	}
	msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_TIMESTAMPNS && len(m.Data) >= 16 {
			sec := int64(binary.NativeEndian.Uint64(m.Data))
			nsec := int64(binary.NativeEndian.Uint64(m.Data[8:]))
			return n, from, time.Unix(sec, nsec), nil
		}
	}
	return n, from, time.Time{}, nil
}

// recv reads one packet within d and returns it with its kernel receive time.
func (c *stampConn) recv(t *testing.T, d time.Duration) (Packet, netip.AddrPort, time.Time) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(d))
	n, from, at, err := readStamped(c.UDPConn, c.buf, c.oob)
	if err != nil {
		t.Fatalf("no packet within %v: %v", d, err)
	}
	if at.IsZero() {
		t.Fatal("no receive timestamp")
	}
	p, err := ParsePacket(c.buf[:n])
	if err != nil {
		t.Fatal(err)
	}
	return p, from, at
}

// quiet asserts that nothing arrives within d.
func (c *stampConn) quiet(t *testing.T, d time.Duration, why string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(d))
	if n, _, _, from, err := c.ReadMsgUDPAddrPort(c.buf, c.oob); err == nil {
		p, _ := ParsePacket(c.buf[:n])
		t.Fatalf("%s: got %#v from %v", why, p, from)
	}
}

// checkIntervals compares the gaps between times with the wanted waits. A
// copy sent before the schedule allows fails the test at once: a timer does
// not fire early. A gap longer by more than slack is returned as an error: on a
// loaded machine the sender can wake late, so the caller tries again
// (retryLate); a wrong schedule fails every try.
func checkIntervals(t *testing.T, times []time.Time, want []time.Duration, slack time.Duration) error {
	t.Helper()
	var got []time.Duration
	for i := 1; i < len(times); i++ {
		got = append(got, times[i].Sub(times[i-1]))
	}
	t.Logf("intervals %v, want %v", got, want)
	if len(got) != len(want) {
		t.Fatalf("%d intervals, want %d", len(got), len(want))
	}
	// Early is checked on the time since the first copy: the sender takes
	// each deadline before it writes the packet, so a write delayed by the
	// scheduler makes that interval longer and the next one shorter by as
	// much, but no copy goes out before the schedule's sum says.
	var sum time.Duration
	for i := range want {
		sum += want[i]
		if since := times[i+1].Sub(times[0]); since < sum-2*time.Millisecond {
			t.Fatalf("copy %d came %v after the first, want %v at least: intervals %v", i+2, since, sum, got)
		}
	}
	for i := range want {
		if got[i] > want[i]+slack {
			return fmt.Errorf("interval %d is %v, want %v (+%v at most): %v", i+1, got[i], want[i], slack, got)
		}
	}
	return nil
}

// retryLate runs try up to 5 times while it reports a retransmission that
// came too late (see checkIntervals).
func retryLate(t *testing.T, try func() error) {
	t.Helper()
	var err error
	for i := range 5 {
		if err = try(); err == nil {
			return
		}
		t.Logf("try %d: %v (a loaded machine?)", i+1, err)
	}
	t.Fatal(err)
}

// TestRetransmitBackoff drops the first copies of the OACK, of DATA 1 and of
// DATA 3 and checks the times at which the server sent them again: the
// wait doubles with each timeout in a row up to MaxTimeout, and starts
// over at Timeout after progress.
func TestRetransmitBackoff(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	want := writeRandom(t, dir, "f", 512*3+10) // blocks 1..4
	const slack = 300 * time.Millisecond
	retryLate(t, func() error {
		ts := startServer(t, &Server{Root: dir, Timeout: 100 * time.Millisecond, MaxTimeout: 400 * time.Millisecond, GiveUpAfter: 20 * time.Second})
		c := newStampConn(t)
		send(t, c.UDPConn, &Request{Op: OpRRQ, Filename: "f", Mode: "octet", Options: options("tsize", "0")}, ts.addr)

		// The OACK, unanswered 5 times: resent after 100, 200, 400, 400, 400 ms.
		var times []time.Time
		var tid netip.AddrPort
		for range 6 {
			p, from, at := c.recv(t, 3*time.Second)
			if _, ok := p.(*OACK); !ok {
				t.Fatalf("got %#v, want the OACK again", p)
			}
			tid = from
			times = append(times, at)
		}
		late := checkIntervals(t, times, ms(100, 200, 400, 400, 400), slack)
		send(t, c.UDPConn, &Ack{Block: 0}, tid)

		// dataCopies receives n copies of block b (the first n-1 "lost")
		// and acknowledges the last one.
		var got []byte
		datas := 0
		dataCopies := func(b uint16, n int) []time.Time {
			t.Helper()
			var times []time.Time
			for range n {
				p, from, at := c.recv(t, 3*time.Second)
				d, ok := p.(*Data)
				if !ok || d.Block != b || from != tid {
					t.Fatalf("got %#v from %v, want DATA %d from %v", p, from, b, tid)
				}
				datas++
				times = append(times, at)
				if len(times) == n {
					got = append(got, d.Payload...)
				}
			}
			send(t, c.UDPConn, &Ack{Block: b}, tid)
			return times
		}
		// DATA 1 dropped 3 times: 100, 200, 400 ms (the ACK of the OACK was
		// progress: the wait starts over).
		late = cmp.Or(late, checkIntervals(t, dataCopies(1, 4), ms(100, 200, 400), slack))
		dataCopies(2, 1)
		// DATA 3 dropped once: 100 ms again after the progress of DATA 1 and 2.
		late = cmp.Or(late, checkIntervals(t, dataCopies(3, 2), ms(100), slack))
		dataCopies(4, 1)
		c.quiet(t, 300*time.Millisecond, "after the last ACK")
		if !bytes.Equal(got, want) {
			t.Fatalf("got %d bytes, want %d (content differs)", len(got), len(want))
		}
		if datas != 4+1+2+1 {
			t.Fatalf("%d DATA packets, want 8", datas)
		}
		if ev := ts.event(t); ev.Err != nil || ev.Bytes != int64(len(want)) {
			t.Fatalf("event %+v", ev)
		}
		return late
	})
}

// TestRetransmitGivesUp: a client that never answers sees DATA 1 at
// growing intervals and an ERROR once GiveUpAfter has passed without
// progress, not earlier and not much later.
func TestRetransmitGivesUp(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeRandom(t, dir, "f", 5000)
	retryLate(t, func() error {
		ts := startServer(t, &Server{Root: dir, Timeout: 50 * time.Millisecond, MaxTimeout: 200 * time.Millisecond, GiveUpAfter: time.Second})
		c := newStampConn(t)
		send(t, c.UDPConn, &Request{Op: OpRRQ, Filename: "f", Mode: "octet"}, ts.addr)
		var times []time.Time
		for {
			p, _, at := c.recv(t, 3*time.Second)
			if d, ok := p.(*Data); ok && d.Block == 1 {
				times = append(times, at)
				continue
			}
			e, ok := p.(*Error)
			if !ok || !strings.Contains(e.Message, "did not answer") {
				t.Fatalf("got %#v, want DATA 1 or ERROR \"client did not answer\"", p)
			}
			if ev := ts.event(t); !errors.Is(ev.Err, errTimeout) {
				t.Fatalf("event error %v", ev.Err)
			}
			// DATA 1 at 0, 0.05, 0.15, 0.35, 0.55, 0.75 and 0.95 s, ERROR at
			// 1 s. A sender woken late sends fewer copies (the bound is
			// time) but never gives up early.
			d := at.Sub(times[0])
			t.Logf("%s after %d copies of DATA 1, %v after the first", e.Message, len(times), d)
			// The server counts from just after its first send; the
			// client's stamp of DATA 1 is when its socket got it, which on
			// a loaded machine (softirq deferred) was seen up to 0.2 ms
			// later. Giving up early would be a whole retransmission step
			// early (≥ 50 ms), so 5 ms of slack keeps the test's meaning.
			if d < time.Second-5*time.Millisecond {
				t.Fatalf("gave up %v after the first DATA, want 1 s", d)
			}
			if len(times) > 7 {
				t.Fatalf("DATA 1 sent %d times, want at most 1 + 6 retransmissions", len(times))
			}
			if d > 1300*time.Millisecond {
				return fmt.Errorf("%d copies of DATA 1 and the ERROR after %v; want 7 and 1 s", len(times), d)
			}
			want := ms(50, 100, 200, 200, 200, 200)
			if len(times) < 7 {
				// Each copy is timed from the one before: on a loaded
				// machine the late wake-ups add up, and the copy after
				// the last one would have gone out at the give-up time
				// or later. Fewer copies are right then, not earlier.
				if len(times) < 5 || times[len(times)-1].Sub(times[0])+200*time.Millisecond < time.Second-20*time.Millisecond {
					return fmt.Errorf("%d copies of DATA 1 and the ERROR after %v; want 7 and 1 s", len(times), d)
				}
				want = want[:len(times)-1]
			}
			return checkIntervals(t, times, want, 100*time.Millisecond)
		}
	})
}

// finish runs a lock-step transfer to the end once first (the OACK or DATA
// 1) has arrived from tid: it returns the payload and the DATA count.
func finish(t *testing.T, c *net.UDPConn, tid netip.AddrPort, first Packet, blksize int) ([]byte, int) {
	t.Helper()
	var out []byte
	datas := 0
	p := first
	for {
		switch p := p.(type) {
		case *OACK:
			send(t, c, &Ack{Block: 0}, tid)
		case *Data:
			datas++
			out = append(out, p.Payload...)
			send(t, c, &Ack{Block: p.Block}, tid)
			if len(p.Payload) < blksize {
				return out, datas
			}
		default:
			t.Fatalf("got %#v", p)
		}
		var from netip.AddrPort
		p, from = recv(t, c, 3*time.Second)
		if from != tid {
			t.Fatalf("packet from %v, want %v (one transfer)", from, tid)
		}
	}
}

// noEvent asserts that no further transfer event comes within d.
func (ts *testServer) noEvent(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case ev := <-ts.events:
		t.Fatalf("unexpected transfer event %+v", ev)
	case <-time.After(d):
	}
}

// TestRepeatedRequest: an RRQ sent again from the same address and port
// while its transfer runs (firmware whose OACK is slow) starts no second
// transfer; the same request from another port, with other options, or
// after the transfer ended, does.
func TestRepeatedRequest(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	want := writeRandom(t, dir, "f", 1024*5+10) // 6 blocks of 1024
	// A long timeout: nothing is retransmitted during the test, so every
	// packet seen comes from a transfer's first send.
	ts := startServer(t, &Server{Root: dir, Timeout: 5 * time.Second})
	rrq := &Request{Op: OpRRQ, Filename: "f", Mode: "octet", Options: options("tsize", "0", "blksize", "1024")}

	t.Run("repeated while the OACK is unanswered", func(t *testing.T) {
		c := rawConn(t)
		send(t, c, rrq, ts.addr)
		oack, tid := recv(t, c, 3*time.Second)
		send(t, c, rrq, ts.addr)
		send(t, c, rrq, ts.addr)
		_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if n, from, err := c.ReadFromUDPAddrPort(make([]byte, 2048)); err == nil {
			t.Fatalf("a repeated RRQ was answered (%d bytes from %v, the transfer is %v)", n, from, tid)
		}
		got, datas := finish(t, c, tid, oack, 1024)
		if !bytes.Equal(got, want) || datas != 6 {
			t.Fatalf("%d bytes in %d DATA packets, want %d in 6", len(got), datas, len(want))
		}
		if ev := ts.event(t); ev.Err != nil || ev.Bytes != int64(len(want)) {
			t.Fatalf("event %+v", ev)
		}
		ts.noEvent(t, 300*time.Millisecond)

		// After the end, the same request from the same port is new.
		send(t, c, rrq, ts.addr)
		oack, tid2 := recv(t, c, 3*time.Second)
		if tid2 == tid {
			t.Fatalf("second transfer from the first one's TID %v", tid)
		}
		if got, _ := finish(t, c, tid2, oack, 1024); !bytes.Equal(got, want) {
			t.Fatal("content differs")
		}
		if ev := ts.event(t); ev.Err != nil {
			t.Fatalf("event %+v", ev)
		}
	})

	t.Run("repeated during lock-step without options", func(t *testing.T) {
		c := rawConn(t)
		plain := &Request{Op: OpRRQ, Filename: "f", Mode: "octet"}
		send(t, c, plain, ts.addr)
		first, tid := recv(t, c, 3*time.Second)
		send(t, c, &Ack{Block: 1}, tid)
		second, _ := recv(t, c, 3*time.Second)
		send(t, c, plain, ts.addr) // mid-transfer
		_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if n, from, err := c.ReadFromUDPAddrPort(make([]byte, 2048)); err == nil {
			t.Fatalf("a repeated RRQ was answered (%d bytes from %v)", n, from)
		}
		rest, datas := finish(t, c, tid, second, 512)
		got := append(append([]byte{}, first.(*Data).Payload...), rest...)
		if !bytes.Equal(got, want) || datas+1 != len(want)/512+1 {
			t.Fatalf("%d bytes in %d DATA packets", len(got), datas+1)
		}
		if ev := ts.event(t); ev.Err != nil || ev.Bytes != int64(len(want)) {
			t.Fatalf("event %+v", ev)
		}
		ts.noEvent(t, 300*time.Millisecond)
	})

	t.Run("same request from another port is another transfer", func(t *testing.T) {
		a, b := rawConn(t), rawConn(t)
		send(t, a, rrq, ts.addr)
		oackA, tidA := recv(t, a, 3*time.Second)
		send(t, b, rrq, ts.addr)
		oackB, tidB := recv(t, b, 3*time.Second)
		if tidA == tidB {
			t.Fatalf("both clients served by one transfer %v", tidA)
		}
		for _, x := range []struct {
			c    *net.UDPConn
			tid  netip.AddrPort
			oack Packet
		}{{a, tidA, oackA}, {b, tidB, oackB}} {
			if got, _ := finish(t, x.c, x.tid, x.oack, 1024); !bytes.Equal(got, want) {
				t.Fatal("content differs")
			}
		}
		for range 2 {
			if ev := ts.event(t); ev.Err != nil {
				t.Fatalf("event %+v", ev)
			}
		}
	})

	t.Run("other options from the same port is another transfer", func(t *testing.T) {
		// EDK2's size probe: tsize, abort with ERROR 8, then ask again
		// without tsize — possibly before the server has read the ERROR.
		c := rawConn(t)
		send(t, c, rrq, ts.addr)
		_, probe := recv(t, c, 3*time.Second)
		again := &Request{Op: OpRRQ, Filename: "f", Mode: "octet", Options: options("blksize", "1024")}
		send(t, c, again, ts.addr)
		oack, tid := recv(t, c, 3*time.Second)
		if tid == probe {
			t.Fatal("the second request was not served by a transfer of its own")
		}
		send(t, c, &Error{Code: ErrCodeOptionNegotiation, Message: "User aborted the transfer"}, probe)
		if got, _ := finish(t, c, tid, oack, 1024); !bytes.Equal(got, want) {
			t.Fatal("content differs")
		}
		var aborted, complete int
		for range 2 {
			switch ev := ts.event(t); {
			case errors.Is(ev.Err, ErrClientAbort):
				aborted++
			case ev.Err == nil:
				complete++
			default:
				t.Fatalf("event %+v", ev)
			}
		}
		if aborted != 1 || complete != 1 {
			t.Fatalf("%d aborted, %d complete; want 1 and 1", aborted, complete)
		}
	})
}

// TestAwaitReadsQueuedAckAfterDeadline: a sender that got the CPU only after
// its deadline (a rack booting at once) must take the ACK already queued on
// its socket, not time out and retransmit.
func TestAwaitReadsQueuedAckAfterDeadline(t *testing.T) {
	t.Parallel()
	conn, peer := rawConn(t), rawConn(t)
	x := &sender{ctx: t.Context(), conn: conn, peer: peer.LocalAddr().(*net.UDPAddr).AddrPort(),
		log: testLogger(t), rbuf: make([]byte, 2048)}
	if _, err := x.await(time.Now().Add(-time.Second)); !errors.Is(err, errTimeout) {
		t.Fatalf("nothing queued: %v, want a timeout", err)
	}
	send(t, peer, &Ack{Block: 7}, conn.LocalAddr().(*net.UDPAddr).AddrPort())
	send(t, peer, &Ack{Block: 8}, conn.LocalAddr().(*net.UDPAddr).AddrPort())
	time.Sleep(100 * time.Millisecond) // on loopback the datagrams are queued long before
	for _, want := range []uint16{7, 8} {
		ack, err := x.await(time.Now().Add(-time.Second))
		if err != nil || ack != want {
			t.Fatalf("past deadline with ACK %d queued: got %d, %v", want, ack, err)
		}
	}
	if _, err := x.await(time.Now().Add(-time.Second)); !errors.Is(err, errTimeout) {
		t.Fatalf("queue drained: %v, want a timeout", err)
	}
}
