package tftp

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// This file holds the test harness: a server on loopback and a small
// RFC 7440 client with hooks to lose packets.

type testServer struct {
	srv    *Server
	addr   netip.AddrPort
	events chan TransferEvent
	done   chan error
	cancel context.CancelFunc
}

// startServer serves root on 127.0.0.1 with a dynamic port until the test ends.
func startServer(t *testing.T, srv *Server) *testServer {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	return serveOn(t, srv, conn)
}

func serveOn(t *testing.T, srv *Server, conn *net.UDPConn) *testServer {
	t.Helper()
	ts := &testServer{srv: srv, events: make(chan TransferEvent, 1024), done: make(chan error, 1)}
	ts.addr = conn.LocalAddr().(*net.UDPAddr).AddrPort()
	if srv.OnTransfer == nil {
		srv.OnTransfer = func(ev TransferEvent) { ts.events <- ev }
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	ts.cancel = cancel
	go func() { ts.done <- srv.Serve(ctx, conn) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-ts.done:
			if err != nil {
				t.Errorf("Serve returned %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Serve did not return after cancel")
		}
		conn.Close()
	})
	return ts
}

// event waits for the next OnTransfer event.
func (ts *testServer) event(t *testing.T) TransferEvent {
	t.Helper()
	select {
	case ev := <-ts.events:
		return ev
	case <-time.After(20 * time.Second):
		t.Fatal("no transfer event within 20s")
		return TransferEvent{}
	}
}

// eventFrom is the next transfer event of the client at from; events of
// other clients (there should be none: a retransmitted RRQ of a running
// transfer starts no second one) are logged and skipped.
func (ts *testServer) eventFrom(t *testing.T, from netip.AddrPort) TransferEvent {
	t.Helper()
	for {
		ev := ts.event(t)
		if ev.Client == from {
			return ev
		}
		t.Logf("skipping the event of another client: %+v", ev)
	}
}

// writeRandom creates a file of n random bytes under dir and returns its content.
func writeRandom(t *testing.T, dir, name string, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	_, _ = rand.Read(b)
	if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return b
}

// client is a minimal RFC 1350/2347/7440 read client.
type client struct {
	server  netip.AddrPort
	mode    string
	opts    []Option
	timeout time.Duration // retransmit (ACK/RRQ) timeout, default 200ms

	// dropData is asked about every DATA packet received (abs block
	// number, how often this block was seen before); true discards it.
	dropData func(block uint64, seen int) bool
	// dropAck is asked before sending each ACK (n counts ACKs); true skips it.
	dropAck func(n int, block uint16) bool
	// dupAcks sends every ACK twice (to provoke the sorcerer's apprentice).
	dupAcks bool
	// onOACK may answer the OACK instead of ACK 0 (return true when it did).
	onOACK func(c *net.UDPConn, from netip.AddrPort, o *OACK) bool

	// Results.
	oack     *OACK
	tid      netip.AddrPort
	local    netip.AddrPort // the client's own address (its TID)
	dataSeen int            // DATA packets received (incl. duplicates and dropped)
}

type result struct {
	data []byte
	err  error
}

func (c *client) get(ctx context.Context, name string) ([]byte, error) {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	c.local = conn.LocalAddr().(*net.UDPAddr).AddrPort()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	mode := c.mode
	if mode == "" {
		mode = "octet"
	}
	rrq := (&Request{Op: OpRRQ, Filename: name, Mode: mode, Options: c.opts}).Marshal()
	if _, err := conn.WriteToUDPAddrPort(rrq, c.server); err != nil {
		return nil, err
	}
	blksize, window := 512, 1
	tmo := c.timeout
	if tmo == 0 {
		tmo = 200 * time.Millisecond
	}
	var (
		out      bytes.Buffer
		next     = uint64(1) // next expected block
		inWindow int
		acks     int
		seen     = map[uint64]int{}
		started  bool
	)
	sendAck := func(b uint16) {
		acks++
		if c.dropAck != nil && c.dropAck(acks, b) {
			return
		}
		_, _ = conn.WriteToUDPAddrPort((&Ack{Block: b}).Marshal(), c.tid)
		if c.dupAcks {
			_, _ = conn.WriteToUDPAddrPort((&Ack{Block: b}).Marshal(), c.tid)
		}
	}
	buf := make([]byte, 70000)
	for tries := 0; ; {
		if ctx.Err() != nil {
			return out.Bytes(), ctx.Err()
		}
		_ = conn.SetReadDeadline(time.Now().Add(tmo))
		n, from, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if ctx.Err() != nil {
				return out.Bytes(), ctx.Err()
			}
			tries++
			if tries > 20 {
				return out.Bytes(), errors.New("client: server stopped answering")
			}
			if !started {
				_, _ = conn.WriteToUDPAddrPort(rrq, c.server)
			} else {
				inWindow = 0
				sendAck(uint16(next - 1))
			}
			continue
		}
		if c.tid.IsValid() && from != c.tid {
			continue
		}
		p, err := ParsePacket(buf[:n])
		if err != nil {
			return out.Bytes(), fmt.Errorf("client: %w", err)
		}
		switch p := p.(type) {
		case *Error:
			return out.Bytes(), p
		case *OACK:
			if started {
				if from == c.tid && next == 1 {
					sendAck(0) // our ACK of the OACK was lost
				}
				continue
			}
			started, c.tid, c.oack = true, from, p
			for _, o := range p.Options {
				v, _ := strconv.Atoi(o.Value)
				switch o.Name {
				case "blksize":
					blksize = v
				case "windowsize":
					window = v
				}
			}
			if c.onOACK != nil && c.onOACK(conn, from, p) {
				return nil, nil
			}
			sendAck(0)
		case *Data:
			if !started {
				started, c.tid = true, from
			}
			c.dataSeen++
			// Map the 16-bit block to the absolute number near next.
			d := p.Block - uint16(next-1)
			var abs uint64
			if d < 0x8000 {
				abs = next - 1 + uint64(d)
			} else if back := uint64(-d); back < next {
				abs = next - 1 - back
			}
			seen[abs]++
			if c.dropData != nil && c.dropData(abs, seen[abs]-1) {
				continue
			}
			switch {
			case abs == next:
				tries = 0
				out.Write(p.Payload)
				next++
				inWindow++
				last := len(p.Payload) < blksize
				if last {
					sendAck(p.Block)
					// Dally briefly to re-ACK a retransmitted last block.
					_ = conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
					for {
						n, _, err := conn.ReadFromUDPAddrPort(buf)
						if err != nil {
							break
						}
						if q, err := ParsePacket(buf[:n]); err == nil {
							if d, ok := q.(*Data); ok && d.Block == p.Block {
								sendAck(p.Block)
							}
						}
					}
					return out.Bytes(), nil
				}
				if inWindow >= window {
					inWindow = 0
					sendAck(p.Block)
				}
			case abs > next:
				// Gap: acknowledge the last block received in order.
				inWindow = 0
				sendAck(uint16(next - 1))
			default:
				// Old duplicate (our ACK was lost): acknowledge again what
				// we have, as RFC 1350 receivers do. The server must not
				// answer these duplicate ACKs with more data.
				sendAck(uint16(next - 1))
			}
		}
	}
}

// options builds an option list from name/value pairs.
func options(kv ...string) []Option {
	var o []Option
	for i := 0; i+1 < len(kv); i += 2 {
		o = append(o, Option{Name: kv[i], Value: kv[i+1]})
	}
	return o
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// parallelGets runs n clients at once.
func parallelGets(ctx context.Context, n int, mk func(i int) (*client, string)) []result {
	res := make([]result, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, name := mk(i)
			res[i].data, res[i].err = c.get(ctx, name)
		}()
	}
	wg.Wait()
	return res
}
