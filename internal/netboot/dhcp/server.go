package dhcp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/dodai-dev/dodai/internal/netboot/ifsock"
)

// Server runs the decision function on real sockets: UDP 67 (DHCP and
// proxyDHCP) and UDP 4011 (PXE boot server), both bound to one interface.
type Server struct {
	Config *Config
	// Interface to bind to (SO_BINDTODEVICE); required.
	Interface string
	Log       *slog.Logger
	// OnEvent, when set, is called for every decision.
	OnEvent func(Event)
	// DHCPPort and PXEPort override 67 and 4011 (tests, benchmarks); 0
	// means the standard port. PXEPort -1 disables the 4011 responder.
	DHCPPort, PXEPort int
}

// Listen opens the sockets. Errors name the interface and port.
func (s *Server) Listen() (dhcpConn, pxeConn *net.UDPConn, err error) {
	dp, pp := s.DHCPPort, s.PXEPort
	if dp == 0 {
		dp = int(PortDHCP)
	}
	if pp == 0 {
		pp = int(PortPXE)
	}
	c, err := ifsock.ListenUDP(context.Background(), s.Interface, dp, true)
	if err != nil {
		return nil, nil, fmt.Errorf("opening DHCP socket on %s port %d: %w", s.Interface, dp, err)
	}
	if pp < 0 {
		return c, nil, nil
	}
	p, err := ifsock.ListenUDP(context.Background(), s.Interface, pp, true)
	if err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("opening PXE boot server socket on %s port %d: %w", s.Interface, pp, err)
	}
	return c, p, nil
}

// Serve answers on the given sockets until ctx ends. pxeConn may be nil.
//
// Each socket has one reader that decides and answers inline: no goroutine
// or thread hand-off per packet, which is what a request's latency is made
// of on a busy machine. Only an ACK whose lease is not durable yet (lease
// durability "sync") is handed to a goroutine that sends it once the
// journal's group commit covered it; the reader goes on meanwhile.
func (s *Server) Serve(ctx context.Context, dhcpConn, pxeConn *net.UDPConn) error {
	log := s.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var wg sync.WaitGroup
	errc := make(chan error, 2)
	loop := func(conn *net.UDPConn, port Port) {
		defer wg.Done()
		buf := make([]byte, 1500)
		for {
			n, peer, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
					errc <- nil
				} else {
					errc <- fmt.Errorf("reading DHCP port %d: %w", port, err)
				}
				return
			}
			req, err := dhcpv4.FromBytes(buf[:n])
			if err != nil {
				log.Debug("malformed DHCP packet", "from", peer, "err", err)
				continue
			}
			s.handle(log, conn, peer, req, port, &wg)
		}
	}
	conns := []*net.UDPConn{dhcpConn}
	wg.Add(1)
	go loop(dhcpConn, PortDHCP)
	if pxeConn != nil {
		conns = append(conns, pxeConn)
		wg.Add(1)
		go loop(pxeConn, PortPXE)
	}
	var first error
	select {
	case <-ctx.Done():
	case first = <-errc:
	}
	for _, c := range conns {
		c.Close()
	}
	wg.Wait()
	return first
}

func (s *Server) handle(log *slog.Logger, conn *net.UDPConn, peer netip.AddrPort, req *dhcpv4.DHCPv4, port Port, wg *sync.WaitGroup) {
	reply, ev := s.Config.Handle(req, port)
	if reply == nil {
		if s.OnEvent != nil {
			s.OnEvent(ev)
		}
		if log.Enabled(context.Background(), slog.LevelDebug) {
			log.Debug("dhcp: no reply", "mac", ev.Client.MAC, "type", ev.Type, "port", int(port), "why", ev.Ignored)
		}
		return
	}
	send := func() {
		if err := ev.Durable.Wait(); err != nil {
			reply, ev = s.Config.Unrecorded(req, ev, err)
			if reply == nil {
				log.Error("dhcp: lease not recorded, no ACK sent", "mac", ev.Client.MAC, "ip", ev.IP, "err", err)
				if s.OnEvent != nil {
					s.OnEvent(ev)
				}
				return
			}
			if log.Enabled(context.Background(), slog.LevelDebug) {
				log.Debug("dhcp: address taken meanwhile, NAK instead of ACK", "mac", ev.Client.MAC, "ip", ev.IP, "err", err)
			}
		}
		if s.OnEvent != nil {
			s.OnEvent(ev)
		}
		dst := Destination(req, reply, peer, port)
		if _, err := conn.WriteToUDPAddrPort(reply.ToBytes(), dst); err != nil {
			log.Warn("dhcp: sending reply", "mac", ev.Client.MAC, "to", dst, "err", err)
			return
		}
		if log.Enabled(context.Background(), slog.LevelDebug) {
			log.Debug("dhcp: replied", "mac", ev.Client.MAC, "type", ev.Type, "reply", ev.Reply, "ip", ev.IP, "file", ev.Boot.File, "to", dst)
		}
	}
	if ev.Durable.Ready() {
		send()
		return
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		send()
	}()
}

var (
	broadcast4 = netip.AddrPortFrom(netip.AddrFrom4([4]byte{255, 255, 255, 255}), dhcpv4.ClientPort)
)

// Destination is where a reply goes (RFC 2131 §4.1): a relay's giaddr, the
// client's ciaddr when it has one, else broadcast; port 4011 replies go
// back to the sender.
func Destination(req, reply *dhcpv4.DHCPv4, peer netip.AddrPort, port Port) netip.AddrPort {
	if port == PortPXE && peer.IsValid() && !peer.Addr().IsUnspecified() {
		return peer
	}
	if gi, ok := netip.AddrFromSlice(req.GatewayIPAddr.To4()); ok && !gi.IsUnspecified() {
		return netip.AddrPortFrom(gi, dhcpv4.ServerPort)
	}
	if ci, ok := netip.AddrFromSlice(req.ClientIPAddr.To4()); ok && !ci.IsUnspecified() && reply.MessageType() != dhcpv4.MessageTypeNak {
		return netip.AddrPortFrom(ci, dhcpv4.ClientPort)
	}
	// Broadcast: every client accepts it and no ARP entry is needed for an
	// address the client does not have yet.
	return broadcast4
}
