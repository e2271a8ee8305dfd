package tftp

import (
	"context"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Real clients against loss: a UDP relay on 127.0.0.1 between a real
// client and the server that drops the first packets of the server and
// records what passes, so the tests can see retransmissions and repeated
// requests from outside both programs.

type relayed struct {
	from    netip.AddrPort // the server's transfer ID
	at      time.Time
	p       Packet
	dropped bool
}

type relay struct {
	front     *net.UDPConn // the "server port" the client talks to
	server    netip.AddrPort
	dropFirst int // server packets to drop

	mu       sync.Mutex
	seen     []relayed // every packet of the server, in order
	requests int       // RRQs from the client
	// per server TID, the socket the client sees it as (its own TID)
	down map[netip.AddrPort]*net.UDPConn
	up   *net.UDPConn // towards the server: one source port, like the client
	peer netip.AddrPort
}

func startRelay(t *testing.T, server netip.AddrPort, dropFirst int) *relay {
	t.Helper()
	r := &relay{front: rawConn(t), server: server, dropFirst: dropFirst, down: map[netip.AddrPort]*net.UDPConn{}, up: rawConn(t)}
	enableStamps(t, r.up) // the kernel's receive times, not the relay goroutine's
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		_ = r.front.SetReadDeadline(time.Unix(1, 0))
		_ = r.up.SetReadDeadline(time.Unix(1, 0))
		r.mu.Lock()
		for _, d := range r.down {
			_ = d.SetReadDeadline(time.Unix(1, 0))
		}
		r.mu.Unlock()
		wg.Wait()
		for _, d := range r.down {
			d.Close()
		}
	})
	// client → front (requests) → up → server port
	wg.Go(func() {
		buf := make([]byte, 70000)
		for ctx.Err() == nil {
			n, from, err := r.front.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			r.mu.Lock()
			r.peer = from
			if rawOpcode(buf[:n]) == OpRRQ {
				r.requests++
			}
			r.mu.Unlock()
			_, _ = r.up.WriteToUDPAddrPort(buf[:n], r.server)
		}
	})
	// server TIDs → up → (maybe dropped) → that TID's own socket → client
	wg.Go(func() {
		buf, oob := make([]byte, 70000), make([]byte, 512)
		for ctx.Err() == nil {
			n, from, at, err := readStamped(r.up, buf, oob)
			if err != nil {
				return
			}
			if at.IsZero() {
				t.Error("relay: no receive timestamp")
				at = time.Now()
			}
			p, _ := ParsePacket(buf[:n])
			r.mu.Lock()
			drop := len(r.seen) < r.dropFirst
			r.seen = append(r.seen, relayed{from: from, at: at, p: p, dropped: drop})
			d, ok := r.down[from]
			if !ok {
				d, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
				if err != nil {
					r.mu.Unlock()
					t.Error(err)
					return
				}
				r.down[from] = d
				// client → that socket → the server TID
				wg.Go(func() {
					b := make([]byte, 70000)
					for ctx.Err() == nil {
						n, _, err := d.ReadFromUDPAddrPort(b)
						if err != nil {
							return
						}
						_, _ = r.up.WriteToUDPAddrPort(b[:n], from)
					}
				})
			}
			peer := r.peer
			r.mu.Unlock()
			if !drop {
				_, _ = d.WriteToUDPAddrPort(buf[:n], peer)
			}
		}
	})
	return r
}

func (r *relay) port() uint16 { return r.front.LocalAddr().(*net.UDPAddr).AddrPort().Port() }

// snapshot returns what the relay saw so far.
func (r *relay) snapshot() (seen []relayed, requests, transfers int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]relayed(nil), r.seen...), r.requests, len(r.down)
}

// TestRealClientBackoff: atftp's OACK is lost three times; the server
// sends it again after 200, 400 and 800 ms, and the transfer completes as
// one transfer.
func TestRealClientBackoff(t *testing.T) {
	skipShort(t)
	t.Parallel()
	dir, out := t.TempDir(), t.TempDir()
	want := writeRandom(t, dir, "snponly.efi", 173792)
	retryLate(t, func() error {
		ts := startServer(t, &Server{Root: dir, Timeout: 200 * time.Millisecond, MaxTimeout: 800 * time.Millisecond})
		r := startRelay(t, ts.addr, 3)
		local := filepath.Join(out, "f")
		ctx := testCtx(t, 60*time.Second)
		if o, err := runClient(ctx, clientCmd(t, "atftp", r.port(), "snponly.efi", local, 1468, 4)); err != nil {
			t.Fatalf("%v: %s", err, o)
		}
		sameFile(t, local, want)
		ev := ts.event(t)
		if ev.Err != nil || ev.Bytes != int64(len(want)) {
			t.Fatalf("event %+v", ev)
		}
		seen, requests, transfers := r.snapshot()
		var times []time.Time
		for _, s := range seen[:4] {
			if _, ok := s.p.(*OACK); !ok {
				t.Fatalf("server packets %v, want the OACK 4 times first", seen[:4])
			}
			times = append(times, s.at)
		}
		if transfers != 1 || requests != 1 {
			t.Fatalf("%d transfers for %d requests, want 1 and 1", transfers, requests)
		}
		ts.noEvent(t, 300*time.Millisecond)
		return checkIntervals(t, times, ms(200, 400, 800), 300*time.Millisecond)
	})
}

// TestRealClientRepeatsRequest: tftp-hpa (lock-step, no options) resends
// its RRQ every second while DATA 1 is lost. The server ignores the
// repeats — the running transfer resends DATA 1 on its own timer — so the
// client gets one transfer, one event, and block 1 twice, nothing else
// twice.
func TestRealClientRepeatsRequest(t *testing.T) {
	skipShort(t)
	t.Parallel()
	dir, out := t.TempDir(), t.TempDir()
	want := writeRandom(t, dir, "undionly.kpxe", 512*40+100)
	// 2.5 s, half-way between the client's 1 s resends: with 3 s the
	// server's second DATA 1 went out in phase with a repeated RRQ, and
	// once, under load, the client took only the third copy (block 1 x3).
	ts := startServer(t, &Server{Root: dir, Timeout: 2500 * time.Millisecond})
	r := startRelay(t, ts.addr, 1)
	local := filepath.Join(out, "f")
	ctx := testCtx(t, 60*time.Second)
	cmd := exec.CommandContext(ctx, needTool(t, "tftp"), "127.0.0.1", strconv.Itoa(int(r.port())))
	cmd.Stdin = strings.NewReader("mode binary\nrexmt 1\nget undionly.kpxe " + local + "\nquit\n")
	cmd.WaitDelay = 2 * time.Second
	if o, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, o)
	}
	sameFile(t, local, want)
	ev := ts.event(t)
	if ev.Err != nil || ev.Bytes != int64(len(want)) {
		t.Fatalf("event %+v", ev)
	}
	seen, requests, transfers := r.snapshot()
	if requests < 2 {
		t.Fatalf("tftp-hpa sent %d requests; the test needs it to repeat its RRQ", requests)
	}
	blocks := map[uint16]int{}
	for _, s := range seen {
		if d, ok := s.p.(*Data); ok {
			blocks[d.Block]++
		}
	}
	if transfers != 1 || len(blocks) != 41 || blocks[1] != 2 || len(seen) != 42 {
		t.Fatalf("%d requests gave %d transfers and %d server packets (block 1 ×%d, %d blocks); want 1 transfer, 42 packets",
			requests, transfers, len(seen), blocks[1], len(blocks))
	}
	t.Logf("%d requests, one transfer; DATA 1 resent %v after the first", requests, seen[1].at.Sub(seen[0].at).Round(time.Millisecond))
	ts.noEvent(t, 300*time.Millisecond)
}
