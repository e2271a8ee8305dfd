package tftp

import (
	"net"
	"net/netip"

	"golang.org/x/net/ipv4"
)

// requestReader reads requests from the server socket and reports the local
// address each arrived on, so the transfer socket can use the same one.
// When the socket is bound to a specific address that is it; when bound to
// 0.0.0.0 the destination comes from IP_PKTINFO (ipv4 control messages).
// On an IPv6 wildcard socket the address is unknown and the transfer socket
// binds to the wildcard too (the kernel then picks the source by route).
type requestReader struct {
	conn  net.PacketConn
	p4    *ipv4.PacketConn // non-nil when reading IP_PKTINFO
	local netip.Addr       // the bound address when specific
}

func newRequestReader(conn net.PacketConn) *requestReader {
	r := &requestReader{conn: conn}
	ua, ok := conn.LocalAddr().(*net.UDPAddr)
	if !ok {
		return r
	}
	if a, ok := netip.AddrFromSlice(ua.IP); ok {
		a = a.Unmap()
		if !a.IsUnspecified() {
			r.local = a
			return r
		}
	}
	if uc, ok := conn.(*net.UDPConn); ok && (ua.IP == nil || ua.IP.To4() != nil) {
		p := ipv4.NewPacketConn(uc)
		if err := p.SetControlMessage(ipv4.FlagDst, true); err == nil {
			r.p4 = p
		}
	}
	return r
}

func (r *requestReader) read(buf []byte) (n int, peer netip.AddrPort, local netip.Addr, err error) {
	var from net.Addr
	local = r.local
	if r.p4 != nil {
		var cm *ipv4.ControlMessage
		n, cm, from, err = r.p4.ReadFrom(buf)
		if err == nil && cm != nil && cm.Dst != nil {
			// A broadcast or multicast destination can't be a source:
			// leave local unset and let the kernel choose.
			if a, ok := netip.AddrFromSlice(cm.Dst); ok && !a.IsMulticast() && a != netip.IPv4Unspecified() && a.Unmap() != netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
				local = a.Unmap()
			}
		}
	} else {
		n, from, err = r.conn.ReadFrom(buf)
	}
	if err != nil {
		return 0, netip.AddrPort{}, netip.Addr{}, err
	}
	if ua, ok := from.(*net.UDPAddr); ok {
		ap := ua.AddrPort()
		peer = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return n, peer, local, nil
}
