package dhcp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
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

// maxInFlight bounds the goroutines handling packets at once.
const maxInFlight = 256

// Listen opens the sockets. Errors name the interface and port.
func (s *Server) Listen() (dhcpConn, pxeConn net.PacketConn, err error) {
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
func (s *Server) Serve(ctx context.Context, dhcpConn, pxeConn net.PacketConn) error {
	log := s.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, maxInFlight)
	errc := make(chan error, 2)
	loop := func(conn net.PacketConn, port Port) {
		defer wg.Done()
		buf := make([]byte, 1500)
		for {
			n, peer, err := conn.ReadFrom(buf)
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
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				s.handle(log, conn, peer, req, port)
			}()
		}
	}
	conns := []net.PacketConn{dhcpConn}
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

func (s *Server) handle(log *slog.Logger, conn net.PacketConn, peer net.Addr, req *dhcpv4.DHCPv4, port Port) {
	reply, ev := s.Config.Handle(req, port)
	if s.OnEvent != nil {
		s.OnEvent(ev)
	}
	if reply == nil {
		log.Debug("dhcp: no reply", "mac", ev.Client.MAC, "type", ev.Type, "port", int(port), "why", ev.Ignored)
		return
	}
	dst := Destination(req, reply, peer, port)
	if _, err := conn.WriteTo(reply.ToBytes(), dst); err != nil {
		log.Warn("dhcp: sending reply", "mac", ev.Client.MAC, "to", dst, "err", err)
		return
	}
	log.Debug("dhcp: replied", "mac", ev.Client.MAC, "type", ev.Type, "reply", ev.Reply, "ip", ev.IP, "file", ev.Boot.File, "to", dst)
}

// Destination is where a reply goes (RFC 2131 §4.1): a relay's giaddr, the
// client's ciaddr when it has one, else broadcast; port 4011 replies go
// back to the sender.
func Destination(req, reply *dhcpv4.DHCPv4, peer net.Addr, port Port) net.Addr {
	if port == PortPXE {
		if u, ok := peer.(*net.UDPAddr); ok && u.IP != nil && !u.IP.IsUnspecified() {
			return u
		}
	}
	if gi := req.GatewayIPAddr; gi != nil && !gi.IsUnspecified() {
		return &net.UDPAddr{IP: gi, Port: dhcpv4.ServerPort}
	}
	if ci := req.ClientIPAddr; ci != nil && !ci.IsUnspecified() && reply.MessageType() != dhcpv4.MessageTypeNak {
		return &net.UDPAddr{IP: ci, Port: dhcpv4.ClientPort}
	}
	// Broadcast: every client accepts it and no ARP entry is needed for an
	// address the client does not have yet.
	return &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort}
}
