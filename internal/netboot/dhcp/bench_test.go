package dhcp

import (
	"encoding/binary"
	"net"
	"net/netip"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// BenchmarkHandshake is the server side of one dhcp-mode handshake for a
// new client: decode DISCOVER, decide, encode OFFER, decode REQUEST, decide
// (bind, journal), encode ACK. Sockets are not included. The client packets
// are built beforehand against a twin allocator (both allocate the same
// addresses in the same order). hack/bench/dhcp-instructions.sh counts the
// instructions of serveHandshakes under callgrind, which does not depend on
// the machine's load.
func BenchmarkHandshake(b *testing.B) {
	for _, tc := range []struct {
		name string
		dur  Durability
		file bool
	}{{"memory", DurableWrite, false}, {"journal-write", DurableWrite, true}, {"journal-sync", DurableSync, true}} {
		b.Run(tc.name, func(b *testing.B) {
			newCfg := func() *Config {
				opts := LeaseOptions{Start: netip.MustParseAddr("10.96.0.1"), End: netip.MustParseAddr("10.127.255.254"), Durability: tc.dur}
				if tc.file {
					opts.Path = filepath.Join(b.TempDir(), "leases.json")
				}
				l, err := NewLeases(opts)
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { l.Close() })
				return &Config{Mode: ModeDHCP, ServerIP: netip.MustParseAddr("10.96.0.1"), HTTPURL: "http://10.96.0.1:8080", Leases: l,
					Subnet: netip.MustParsePrefix("10.96.0.0/11"), LeaseTime: time.Hour, Router: netip.MustParseAddr("10.96.0.1")}
			}
			discs, reqs := clientPackets(b, newCfg(), b.N)
			cfg := newCfg()
			b.ReportAllocs()
			b.ResetTimer()
			if err := serveHandshakes(cfg, discs, reqs); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// clientPackets builds n DISCOVERs and the REQUESTs for the offers twin
// makes.
func clientPackets(b *testing.B, twin *Config, n int) (discs, reqs [][]byte) {
	for i := range n {
		mac := net.HardwareAddr{2, 1, 0, 0, 0, 0}
		binary.BigEndian.PutUint32(mac[2:], uint32(i))
		d, _ := dhcpv4.NewDiscovery(mac, dhcpv4.WithBroadcast(true))
		off, ev := twin.Handle(d, PortDHCP)
		if off == nil {
			b.Fatalf("no offer: %s", ev.Ignored)
		}
		r, _ := dhcpv4.NewRequestFromOffer(off, dhcpv4.WithBroadcast(true))
		if ack, ev := twin.Handle(r, PortDHCP); ack == nil || ev.Durable.Wait() != nil {
			b.Fatalf("no ACK: %s", ev.Ignored)
		}
		discs, reqs = append(discs, d.ToBytes()), append(reqs, r.ToBytes())
	}
	return discs, reqs
}

// serveHandshakes is the measured part (callgrind collects only inside it).
// It keeps its thread: callgrind follows call stacks per thread, so a
// goroutine moved to another thread after a syscall would go uncounted.
//
//go:noinline
func serveHandshakes(cfg *Config, discs, reqs [][]byte) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	for i := range discs {
		m, err := dhcpv4.FromBytes(discs[i])
		if err != nil {
			return err
		}
		off, _ := cfg.Handle(m, PortDHCP)
		_ = off.ToBytes()
		m2, err := dhcpv4.FromBytes(reqs[i])
		if err != nil {
			return err
		}
		ack, ev := cfg.Handle(m2, PortDHCP)
		if ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck {
			return errNoAck(ev.Ignored)
		}
		if err := ev.Durable.Wait(); err != nil {
			return err
		}
		_ = ack.ToBytes()
	}
	return nil
}

type errNoAck string

func (e errNoAck) Error() string { return "no ACK: " + string(e) }
