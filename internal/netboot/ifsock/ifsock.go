// Package ifsock opens the UDP sockets of dodai netboot (DHCP on 67, the PXE
// boot server on 4011, TFTP on 69) bound to one network interface, so the
// server answers only on the boot network the operator chose.
package ifsock

import (
	"context"
	"net"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// RecvBuffer is the receive buffer ListenUDP asks for: 4 MiB holds a burst
// of ~2,000 DHCP packets.
const RecvBuffer = 4 << 20

// ListenUDP opens a UDP socket on port (all IPv4 addresses), bound to the
// interface ifname with SO_BINDTODEVICE and broadcast-capable when asked
// (DHCP). Unlike insomniacslk/dhcp's server4.NewIPv4UDPConn it sets neither
// SO_REUSEADDR nor SO_REUSEPORT, so a second server on the same port
// (another dodai, a dnsmasq) is an error instead of silently splitting the
// requests between them.
//
// Its receive buffer is RecvBuffer bytes where the process may raise it
// (CAP_NET_ADMIN, or a net.core.rmem_max that high): the kernel's default
// (~208 KiB, about 100 DHCP packets) overflows when a rack powers on at
// once, and every dropped DISCOVER costs that machine its firmware's retry
// timeout (4 s and more).
func ListenUDP(ctx context.Context, ifname string, port int, broadcast bool) (*net.UDPConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if broadcast {
				if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_BROADCAST, 1); serr != nil {
					return
				}
			}
			if serr = unix.BindToDevice(int(fd), ifname); serr != nil {
				return
			}
			// Best effort: without the privilege the default stays.
			if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, RecvBuffer) != nil {
				_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, RecvBuffer)
			}
		})
		if err != nil {
			return err
		}
		return serr
	}}
	c, err := lc.ListenPacket(ctx, "udp4", ":"+strconv.Itoa(port))
	if err != nil {
		return nil, err
	}
	return c.(*net.UDPConn), nil
}
