package tftp

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	mathrand "math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestTransfers(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	files := map[string][]byte{
		"empty":         {},
		"small":         writeRandom(t, dir, "small", 100),
		"exact512":      writeRandom(t, dir, "exact512", 512*3),
		"exact1468":     writeRandom(t, dir, "exact1468", 1468*40),
		"x86/ipxe.efi":  writeRandom(t, dir, "x86/ipxe.efi", 850528),
		"rollover8.bin": writeRandom(t, dir, "rollover8.bin", 65536*8+77), // > 65535 blocks of 8 bytes
	}
	writeRandom(t, dir, "empty", 0)
	ts := startServer(t, &Server{Root: dir, Timeout: 200 * time.Millisecond, MaxWindowSize: 64})
	cases := []struct {
		name, file string
		opts       []string
		wantBlk    int
		wantWin    int
	}{
		{"plain rfc1350", "small", nil, 512, 1},
		{"plain empty", "empty", nil, 512, 1},
		{"plain exact multiple", "exact512", nil, 512, 1},
		{"leading slash", "/x86/ipxe.efi", nil, 512, 1},
		{"blksize 1468", "x86/ipxe.efi", []string{"blksize", "1468"}, 1468, 1},
		{"blksize exact multiple", "exact1468", []string{"blksize", "1468", "windowsize", "8"}, 1468, 8},
		{"windowsize 4 edk2", "x86/ipxe.efi", []string{"tsize", "0", "blksize", "1468", "windowsize", "4"}, 1468, 4},
		{"windowsize 32", "x86/ipxe.efi", []string{"blksize", "1468", "windowsize", "32"}, 1468, 32},
		{"windowsize larger than file", "small", []string{"windowsize", "64"}, 512, 64},
		{"empty windowed", "empty", []string{"windowsize", "16", "tsize", "0"}, 512, 16},
		{"rollover blksize 8", "rollover8.bin", []string{"blksize", "8", "windowsize", "32"}, 8, 32},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := &client{server: ts.addr, opts: options(tc.opts...)}
			got, err := c.get(testCtx(t, 60*time.Second), tc.file)
			if err != nil {
				t.Fatal(err)
			}
			want := files[strings.TrimPrefix(tc.file, "/")]
			if !bytes.Equal(got, want) {
				t.Fatalf("got %d bytes, want %d (content differs)", len(got), len(want))
			}
			if c.tid.Port() == ts.addr.Port() {
				t.Fatalf("transfer came from the server port %d, want a new TID", c.tid.Port())
			}
			if c.tid.Addr() != ts.addr.Addr() {
				t.Fatalf("transfer came from %v, want the request's address %v", c.tid.Addr(), ts.addr.Addr())
			}
			if len(tc.opts) == 0 && c.oack != nil {
				t.Fatalf("OACK %v without options", c.oack)
			}
			if v, ok := (&Request{Options: options(tc.opts...)}).Option("tsize"); ok && v == "0" {
				got, _ := (&Request{Options: c.oack.Options}).Option("tsize")
				if got != strconv.Itoa(len(want)) {
					t.Fatalf("tsize %q, want %d", got, len(want))
				}
			}
			ev := ts.eventFrom(t, c.local)
			if ev.Err != nil || ev.Bytes != int64(len(want)) || ev.BlockSize != tc.wantBlk || ev.WindowSize != tc.wantWin || ev.File != tc.file {
				t.Fatalf("event %+v", ev)
			}
			if ev.Client.Port() == 0 || !ev.Client.Addr().IsLoopback() {
				t.Fatalf("event client %v", ev.Client)
			}
		})
	}
}

// rawConn is a UDP socket on 127.0.0.1 for hand-driven exchanges.
func rawConn(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// recv reads one packet within d.
func recv(t *testing.T, c *net.UDPConn, d time.Duration) (Packet, netip.AddrPort) {
	t.Helper()
	buf := make([]byte, 70000)
	_ = c.SetReadDeadline(time.Now().Add(d))
	n, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("no packet within %v: %v", d, err)
	}
	p, err := ParsePacket(buf[:n])
	if err != nil {
		t.Fatal(err)
	}
	return p, from
}

func send(t *testing.T, c *net.UDPConn, p Packet, to netip.AddrPort) {
	t.Helper()
	if _, err := c.WriteToUDPAddrPort(p.Marshal(), to); err != nil {
		t.Fatal(err)
	}
}

func TestLostDataInWindow(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	want := writeRandom(t, dir, "f", 512*40+3)
	ts := startServer(t, &Server{Root: dir, Timeout: 2 * time.Second, Log: testLogger(t)})
	// Windows are 1-8, then (after losing 5) 5-12, 13-20, 21-28, ...
	// Lose blocks 5 and 22..23 the first time: the client ACKs the last
	// in-order block (4, 21) and the server must resend from there at once,
	// well before its 2 s timeout.
	c := &client{server: ts.addr, opts: options("windowsize", "8"), timeout: 5 * time.Second,
		dropData: func(b uint64, seen int) bool { return seen == 0 && (b == 5 || b == 22 || b == 23) }}
	start := time.Now()
	got, err := c.get(testCtx(t, 30*time.Second), "f")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("content differs")
	}
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Fatalf("took %v: the server waited for its timeout instead of resending on the early ACK", d)
	}
	if ev := ts.event(t); ev.Err != nil {
		t.Fatal(ev.Err)
	}
	// 41 blocks + at most two resent windows of 8.
	if c.dataSeen > 41+16 {
		t.Fatalf("client saw %d DATA packets, want ≤ %d", c.dataSeen, 41+16)
	}
}

// TestLostWindowHead: when the first block of a window is lost, the
// client's ACK of the previous window's last block looks exactly like a
// duplicate, which the server must ignore (sorcerer's apprentice); the
// retransmit timer recovers.
func TestLostWindowHead(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	want := writeRandom(t, dir, "f", 512*40+3)
	ts := startServer(t, &Server{Root: dir, Timeout: 150 * time.Millisecond})
	c := &client{server: ts.addr, opts: options("windowsize", "8"), timeout: 5 * time.Second,
		dropData: func(b uint64, seen int) bool { return seen == 0 && (b == 9 || b == 17 || b == 18) }}
	got, err := c.get(testCtx(t, 30*time.Second), "f")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("content differs")
	}
	if ev := ts.event(t); ev.Err != nil {
		t.Fatal(ev.Err)
	}
}

func TestLostAckRetransmits(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	want := writeRandom(t, dir, "f", 1468*64)
	for _, win := range []string{"1", "16"} {
		t.Run("windowsize "+win, func(t *testing.T) {
			ts := startServer(t, &Server{Root: dir, Timeout: 100 * time.Millisecond})
			// Lose the OACK's ACK and the ACK of the first window: the
			// server must time out and resend (OACK, then the window).
			c := &client{server: ts.addr, opts: options("blksize", "1468", "windowsize", win), timeout: time.Second,
				dropAck: func(n int, _ uint16) bool { return n == 1 || n == 3 }}
			got, err := c.get(testCtx(t, 30*time.Second), "f")
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatal("content differs")
			}
			if ev := ts.event(t); ev.Err != nil || ev.Bytes != int64(len(want)) {
				t.Fatalf("event %+v", ev)
			}
		})
	}
}

func TestDuplicateAcksDoNotMultiplyData(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	want := writeRandom(t, dir, "f", 512*100+1) // 101 blocks
	ts := startServer(t, &Server{Root: dir, Timeout: 5 * time.Second})
	for _, win := range []string{"1", "8"} {
		c := &client{server: ts.addr, opts: options("windowsize", win), dupAcks: true, timeout: 5 * time.Second}
		got, err := c.get(testCtx(t, 30*time.Second), "f")
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("windowsize %s: %v", win, err)
		}
		if c.dataSeen != 101 {
			t.Fatalf("windowsize %s: client saw %d DATA packets for 101 blocks: duplicate ACKs caused resends (sorcerer's apprentice)", win, c.dataSeen)
		}
		ts.event(t)
	}
}

func TestGivesUpAfterRetries(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeRandom(t, dir, "f", 5000)
	ts := startServer(t, &Server{Root: dir, Timeout: 50 * time.Millisecond, Retries: 3})
	c := rawConn(t)
	send(t, c, &Request{Op: OpRRQ, Filename: "f", Mode: "octet"}, ts.addr)
	datas := 0
	for {
		p, _ := recv(t, c, 2*time.Second)
		if d, ok := p.(*Data); ok {
			if d.Block != 1 {
				t.Fatalf("got block %d", d.Block)
			}
			datas++
			continue
		}
		e, ok := p.(*Error)
		if !ok {
			t.Fatalf("got %#v", p)
		}
		if !strings.Contains(e.Message, "did not answer") {
			t.Fatalf("error %q", e.Message)
		}
		break
	}
	if datas != 4 {
		t.Fatalf("block 1 sent %d times, want 1 + 3 retries", datas)
	}
	if ev := ts.event(t); !errors.Is(ev.Err, errTimeout) {
		t.Fatalf("event error %v", ev.Err)
	}
}

func TestTimeoutNegotiation(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeRandom(t, dir, "f", 5000)
	ts := startServer(t, &Server{Root: dir, Timeout: 30 * time.Second})
	c := rawConn(t)
	send(t, c, &Request{Op: OpRRQ, Filename: "f", Mode: "octet", Options: options("timeout", "1")}, ts.addr)
	p, tid := recv(t, c, 2*time.Second)
	if o, ok := p.(*OACK); !ok || !equalOptions(o.Options, options("timeout", "1")) {
		t.Fatalf("got %#v", p)
	}
	start := time.Now()
	p, _ = recv(t, c, 5*time.Second) // not acknowledged: the OACK comes again after 1 s, not 30 s
	if _, ok := p.(*OACK); !ok {
		t.Fatalf("got %#v", p)
	}
	if d := time.Since(start); d < 800*time.Millisecond || d > 2500*time.Millisecond {
		t.Fatalf("OACK resent after %v, want ~1s", d)
	}
	send(t, c, &Error{Code: ErrCodeOptionNegotiation, Message: "done"}, tid)
	if ev := ts.event(t); !errors.Is(ev.Err, ErrClientAbort) {
		t.Fatalf("event error %v", ev.Err)
	}
}

func TestSizeProbeAbort(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeRandom(t, dir, "ipxe.efi", 850528)
	ts := startServer(t, &Server{Root: dir})
	// EDK2 asks for tsize, then aborts with ERROR 8 and asks again.
	c := &client{server: ts.addr, opts: options("tsize", "0", "blksize", "1468"),
		onOACK: func(conn *net.UDPConn, from netip.AddrPort, o *OACK) bool {
			_, _ = conn.WriteToUDPAddrPort((&Error{Code: 8, Message: "User aborted the transfer"}).Marshal(), from)
			return true
		}}
	if _, err := c.get(testCtx(t, 10*time.Second), "ipxe.efi"); err != nil {
		t.Fatal(err)
	}
	if v, _ := (&Request{Options: c.oack.Options}).Option("tsize"); v != "850528" {
		t.Fatalf("tsize %q", v)
	}
	ev := ts.event(t)
	if !errors.Is(ev.Err, ErrClientAbort) || !strings.Contains(ev.Err.Error(), "User aborted") || ev.Bytes != 0 {
		t.Fatalf("event %+v", ev)
	}
}

func TestWrongTID(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	want := writeRandom(t, dir, "f", 1200)
	ts := startServer(t, &Server{Root: dir, Timeout: 5 * time.Second})
	a, intruder := rawConn(t), rawConn(t)
	send(t, a, &Request{Op: OpRRQ, Filename: "f", Mode: "octet"}, ts.addr)
	var got []byte
	p, tid := recv(t, a, 2*time.Second)
	for {
		d, ok := p.(*Data)
		if !ok {
			t.Fatalf("got %#v", p)
		}
		got = append(got, d.Payload...)
		if d.Block == 1 {
			// Another port acknowledges: it gets ERROR 5 and changes nothing.
			send(t, intruder, &Ack{Block: 1}, tid)
			e, from := recv(t, intruder, 2*time.Second)
			if e, ok := e.(*Error); !ok || e.Code != ErrCodeUnknownTID || from != tid {
				t.Fatalf("intruder got %#v from %v", e, from)
			}
		}
		send(t, a, &Ack{Block: d.Block}, tid)
		if len(d.Payload) < 512 {
			break
		}
		var from netip.AddrPort
		p, from = recv(t, a, 2*time.Second)
		if from != tid {
			t.Fatalf("packet from %v, want %v", from, tid)
		}
	}
	if !bytes.Equal(got, want) {
		t.Fatal("content differs")
	}
	if ev := ts.event(t); ev.Err != nil {
		t.Fatal(ev.Err)
	}
}

func TestNetascii(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	text := "#!ipxe\ndhcp\r\nchain http://10.0.0.1/boot.ipxe\rend\n"
	if err := writeFile(dir, "boot.txt", text); err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, &Server{Root: dir})
	for _, opts := range [][]string{nil, {"tsize", "0", "blksize", "8", "windowsize", "3"}} {
		c := &client{server: ts.addr, mode: "NetASCII", opts: options(opts...)}
		got, err := c.get(testCtx(t, 10*time.Second), "boot.txt")
		if err != nil {
			t.Fatal(err)
		}
		wantWire := "#!ipxe\r\ndhcp\r\x00\r\nchain http://10.0.0.1/boot.ipxe\r\x00end\r\n"
		if string(got) != wantWire {
			t.Fatalf("wire %q, want %q", got, wantWire)
		}
		if string(FromNetascii(got)) != text {
			t.Fatalf("decoded %q", FromNetascii(got))
		}
		if c.oack != nil {
			if v, _ := (&Request{Options: c.oack.Options}).Option("tsize"); v != strconv.Itoa(len(wantWire)) {
				t.Fatalf("tsize %q, want %d (the netascii size)", v, len(wantWire))
			}
		}
		ts.event(t)
	}
}

func TestShutdownStopsTransfers(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeRandom(t, dir, "f", 5000)
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	ts := serveOn(t, &Server{Root: dir, Timeout: 30 * time.Second}, conn)
	c := rawConn(t)
	send(t, c, &Request{Op: OpRRQ, Filename: "f", Mode: "octet"}, ts.addr)
	if p, _ := recv(t, c, 2*time.Second); p.(*Data).Block != 1 {
		t.Fatalf("got %#v", p)
	}
	start := time.Now()
	ts.cancel() // the transfer waits 30 s for an ACK; shutdown must not
	p, _ := recv(t, c, 5*time.Second)
	if e, ok := p.(*Error); !ok || e.Message != "server shutting down" {
		t.Fatalf("got %#v", p)
	}
	select {
	case err := <-ts.done:
		ts.done <- err // for the cleanup
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("shutdown took %v", d)
	}
	if ev := ts.event(t); !errors.Is(ev.Err, context.Canceled) {
		t.Fatalf("event %+v", ev)
	}
}

func TestConcurrentTransfers(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	want := writeRandom(t, dir, "f", 1<<20)
	ts := startServer(t, &Server{Root: dir, Timeout: 500 * time.Millisecond})
	const n = 50
	res := parallelGets(testCtx(t, 60*time.Second), n, func(i int) (*client, string) {
		opts := [][]string{nil, {"blksize", "1468"}, {"blksize", "1468", "windowsize", "8"}, {"blksize", "1468", "windowsize", "32"}}[i%4]
		return &client{server: ts.addr, opts: options(opts...), timeout: time.Second}, "f"
	})
	for i, r := range res {
		if r.err != nil || !bytes.Equal(r.data, want) {
			t.Errorf("client %d: %v (%d bytes)", i, r.err, len(r.data))
		}
	}
	for range n {
		if ev := ts.event(t); ev.Err != nil || ev.Bytes != int64(len(want)) {
			t.Errorf("event %+v", ev)
		}
	}
}

// TestWildcardUsesRequestAddress: on a 0.0.0.0 socket the transfer socket
// binds to the address the request was sent to (IP_PKTINFO), and errors
// come from a new TID too.
func TestWildcardUsesRequestAddress(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	want := writeRandom(t, dir, "f", 3000)
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4zero})
	if err != nil {
		t.Fatal(err)
	}
	ts := serveOn(t, &Server{Root: dir}, conn)
	for _, ip := range []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"} {
		to := netip.AddrPortFrom(netip.MustParseAddr(ip), ts.addr.Port())
		c := &client{server: to}
		got, err := c.get(testCtx(t, 10*time.Second), "f")
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s: %v", ip, err)
		}
		if c.tid.Addr() != to.Addr() || c.tid.Port() == to.Port() {
			t.Fatalf("request to %v answered from %v", to, c.tid)
		}
		ts.event(t)
		r := rawConn(t)
		send(t, r, &Request{Op: OpWRQ, Filename: "f", Mode: "octet"}, to)
		p, from := recv(t, r, 2*time.Second)
		if e, ok := p.(*Error); !ok || e.Code != ErrCodeAccessViolation || from.Addr() != to.Addr() || from.Port() == to.Port() {
			t.Fatalf("WRQ answered with %#v from %v", p, from)
		}
		if ev := ts.event(t); ev.File != "f" || ev.Err == nil {
			t.Fatalf("event %+v", ev)
		}
	}
}

func writeFile(dir, name, s string) error {
	return os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644)
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// TestFileShrinks: a file truncated during the transfer ends it with an
// error instead of sending stale bytes.
func TestFileShrinks(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeRandom(t, dir, "f", 512*10)
	ts := startServer(t, &Server{Root: dir, Timeout: 5 * time.Second})
	c := rawConn(t)
	send(t, c, &Request{Op: OpRRQ, Filename: "f", Mode: "octet"}, ts.addr)
	p, tid := recv(t, c, 2*time.Second)
	if d, ok := p.(*Data); !ok || d.Block != 1 {
		t.Fatalf("got %#v", p)
	}
	if err := os.Truncate(filepath.Join(dir, "f"), 700); err != nil {
		t.Fatal(err)
	}
	send(t, c, &Ack{Block: 1}, tid)
	p, _ = recv(t, c, 2*time.Second)
	if e, ok := p.(*Error); !ok || !strings.Contains(e.Message, "file shrank") {
		t.Fatalf("got %#v, want an ERROR about the file shrinking", p)
	}
	if ev := ts.event(t); ev.Err == nil || ev.Bytes != 512 {
		t.Fatalf("event %+v", ev)
	}
}

// TestRandomLoss drops DATA and ACK packets at random (seeded; timing
// still varies the sequence) for several window sizes, including across the
// block-number rollover, and checks that every byte arrives intact.
func TestRandomLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("random loss across the rollover takes ~10 s: full tier only")
	}
	t.Parallel()
	dir := t.TempDir()
	lock := writeRandom(t, dir, "lock", 512*80+17)
	small := writeRandom(t, dir, "small", 512*300+17)
	big := writeRandom(t, dir, "big", 65536*8+999) // wraps with blksize 8
	ts := startServer(t, &Server{Root: dir, Timeout: 40 * time.Millisecond, Retries: 50, MaxWindowSize: 64})
	cases := []struct {
		name, file string
		want       []byte
		opts       []string
		perMille   int // loss rate of each direction
	}{
		{"lock-step 10%", "lock", lock, nil, 100},
		{"window 8 15%", "small", small, []string{"windowsize", "8"}, 150},
		{"window 32 10%", "small", small, []string{"windowsize", "32"}, 100},
		{"window 64 rollover 0.5%", "big", big, []string{"blksize", "8", "windowsize", "64"}, 5},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rng := mathrand.New(mathrand.NewPCG(uint64(i), 42))
			var mu sync.Mutex
			lose := func() bool {
				mu.Lock()
				defer mu.Unlock()
				return rng.IntN(1000) < tc.perMille
			}
			c := &client{server: ts.addr, opts: options(tc.opts...), timeout: 80 * time.Millisecond,
				dropData: func(uint64, int) bool { return lose() },
				dropAck:  func(int, uint16) bool { return lose() }}
			got, err := c.get(testCtx(t, 90*time.Second), tc.file)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.want) {
				t.Fatalf("got %d bytes, want %d (content differs)", len(got), len(tc.want))
			}
			// The final ACK may be lost too; then the server gives up
			// after its retries, having sent everything.
			ev := ts.event(t)
			if ev.Err != nil && !errors.Is(ev.Err, errTimeout) {
				t.Fatalf("event %+v", ev)
			}
			t.Logf("%d DATA packets seen for %d blocks", c.dataSeen, len(tc.want)/blksizeOf(tc.opts)+1)
		})
	}
}

func blksizeOf(opts []string) int {
	for i := 0; i+1 < len(opts); i += 2 {
		if opts[i] == "blksize" {
			n, _ := strconv.Atoi(opts[i+1])
			return n
		}
	}
	return 512
}
