package tftp

import (
	"encoding/binary"
	"errors"
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// UDP generic segmentation offload (UDP_SEGMENT, Linux 4.18+): the blocks of
// a window go to the kernel in one send with a segment size, and the kernel
// (or a NIC with UDP segmentation offload) cuts the buffer into one datagram
// per block. On the wire nothing changes — every block is its own UDP
// datagram with its own header, as RFC 7440 wants, and the last segment may
// be shorter (a file's last block) — but the socket, UDP, IP, routing and
// netfilter layers run once per send instead of once per block: the server
// needs about half the CPU per MiB (docs/benchmarks.md).
//
// The segment size travels with each send as a control message, so the
// OACK and ERROR packets on the same socket are never cut.
const (
	// gsoMaxBytes is the most payload one send may carry: a UDP datagram's
	// 16-bit length less the UDP and IPv6 headers.
	gsoMaxBytes = 65535 - 8 - 40
	// gsoMaxSegments is the kernel's UDP_MAX_SEGMENTS before Linux 6.7
	// (newer kernels allow 128).
	gsoMaxSegments = 64
)

// gsoBlocks is how many packets of pktSize bytes (header included) one
// segmented send carries, at most window; 1 means segmentation is of no use.
func gsoBlocks(pktSize, window int) int {
	return max(1, min(window, gsoMaxSegments, gsoMaxBytes/pktSize))
}

// gsoSupported reports whether the kernel knows UDP_SEGMENT on c's socket.
// A kernel without it ignores the control message of another level and
// would send the whole buffer as one (fragmented) datagram, so the send
// path must not rely on an error there.
func gsoSupported(c *net.UDPConn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	var gerr error
	if err := rc.Control(func(fd uintptr) {
		_, gerr = unix.GetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_SEGMENT)
	}); err != nil {
		return false
	}
	return gerr == nil
}

// gsoControl is the control message that asks the kernel to cut a send
// into datagrams of size bytes.
func gsoControl(size int) []byte {
	b := make([]byte, unix.CmsgSpace(2))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level = unix.SOL_UDP
	h.Type = unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	binary.NativeEndian.PutUint16(b[unix.CmsgLen(0):], uint16(size))
	return b
}

// gsoRefused reports whether a segmented send failed because this socket,
// route or device cannot segment it (nothing was sent then): EMSGSIZE or
// EINVAL when a segment plus headers exceeds the path MTU (a blksize the
// link cannot carry unfragmented) or the socket sends without checksums,
// EIO when the route cannot checksum (IPsec), EOPNOTSUPP on sockets without
// segmentation. The caller then sends one datagram per block.
func gsoRefused(err error) bool {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return false
	}
	switch errno {
	case unix.EINVAL, unix.EIO, unix.EOPNOTSUPP, unix.ENOPROTOOPT, unix.EMSGSIZE:
		return true
	}
	return false
}
