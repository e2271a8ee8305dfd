//go:build linux

// Command tftpbench is the helper binary of hack/bench/tftp.sh (not part of
// dodai's CLI):
//
//	tftpbench serve -root DIR -addr IP:PORT
//	    runs dodai's TFTP server (internal/tftp) until SIGINT/SIGTERM.
//	tftpbench delay -a IF -b IF -delay 400us
//	    a delay line: copies every Ethernet frame arriving on interface a to
//	    interface b and back, each after the given one-way delay. This
//	    kernel has no sch_netem, so the benchmark adds RTT in user space:
//	    run it in a namespace that sits between the client's and the
//	    server's namespaces (veth pairs on both sides, no addresses). A
//	    frame holding a UDP-segmented send is cut into its datagrams first,
//	    as a NIC with UDP segmentation offload puts them on the wire.
//	tftpbench ideal-serve -addr IP:PORT
//	tftpbench ideal-fetch -addr IP:PORT -size BYTES -blksize N -windowsize N [-segment=false]
//	    the delay line's ceiling: the same exchange as a TFTP transfer
//	    (windows of blksize-byte datagrams, one ACK per window) between two
//	    endpoints that do nothing else, so no TFTP server is in the path;
//	    by default each window is one UDP-segmented send, as dodai's.
//	    ideal-fetch prints the transfer's microseconds.
//	tftpbench fetch -addr IP:PORT -file NAME -blksize N -windowsize N -sha256 HEX
//	    a windowed TFTP read client with no process start-up and no file
//	    I/O per transfer (fetch.go): the servers, not atftp, are then the
//	    slow part; prints the transfer's microseconds.
package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/dodai-dev/dodai/internal/tftp"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: tftpbench serve|delay|ideal-serve|ideal-fetch|fetch [flags]")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(ctx, os.Args[2:])
	case "delay":
		err = delay(ctx, os.Args[2:])
	case "ideal-serve":
		err = idealServe(ctx, os.Args[2:])
	case "ideal-fetch":
		err = idealFetch(os.Args[2:])
	case "fetch":
		err = fetch(os.Args[2:])
	default:
		err = fmt.Errorf("unknown subcommand %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "tftpbench:", err)
		os.Exit(1)
	}
}

func serve(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	root := fs.String("root", "", "directory to serve")
	addr := fs.String("addr", "127.0.0.1:69", "listen address")
	maxWin := fs.Int("max-windowsize", 64, "windowsize cap")
	verbose := fs.Bool("v", false, "log every transfer")
	noGSO := fs.Bool("no-gso", false, "one send call per DATA block (no UDP segmentation offload)")
	_ = fs.Parse(args)
	lvl := slog.LevelWarn
	if *verbose {
		lvl = slog.LevelDebug
	}
	s := &tftp.Server{Root: *root, MaxWindowSize: *maxWin, NoSegmentation: *noGSO, Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))}
	return s.ListenAndServe(ctx, *addr)
}

type frame struct {
	at   time.Time
	data []byte
}

func delay(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("delay", flag.ExitOnError)
	a := fs.String("a", "", "first interface")
	b := fs.String("b", "", "second interface")
	d := fs.Duration("delay", 400*time.Microsecond, "one-way delay")
	_ = fs.Parse(args)
	fa, err := packetSocket(*a)
	if err != nil {
		return err
	}
	fb, err := packetSocket(*b)
	if err != nil {
		return err
	}
	errc := make(chan error, 2)
	go func() { errc <- pipe(fa, fb, *d) }()
	go func() { errc <- pipe(fb, fa, *d) }()
	select {
	case <-ctx.Done():
		return nil
	case err := <-errc:
		return err
	}
}

// packetVnetHdr is PACKET_VNET_HDR (linux/if_packet.h).
const packetVnetHdr = 15

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func packetSocket(name string) (int, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return -1, err
	}
	fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_RAW, int(htons(syscall.ETH_P_ALL)))
	if err != nil {
		return -1, fmt.Errorf("AF_PACKET socket: %w", err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrLinklayer{Protocol: htons(syscall.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
		return -1, fmt.Errorf("binding to %s: %w", name, err)
	}
	// PACKET_VNET_HDR: frames come with their offload metadata, so a
	// UDP-segmented send can be cut into its datagrams (pipe).
	if err := syscall.SetsockoptInt(fd, syscall.SOL_PACKET, packetVnetHdr, 1); err != nil {
		return -1, fmt.Errorf("PACKET_VNET_HDR on %s: %w", name, err)
	}
	if err := syscall.SetsockoptInt(fd, syscall.SOL_PACKET, packetIgnoreOutgoing, 1); err != nil {
		return -1, fmt.Errorf("PACKET_IGNORE_OUTGOING on %s: %w", name, err)
	}
	_ = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUF, 8<<20)
	_ = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_SNDBUF, 8<<20)
	return fd, nil
}

// vnetHdrLen is the size of struct virtio_net_hdr, which a PACKET_VNET_HDR
// socket puts before every frame it reads or writes.
const vnetHdrLen = 10

// virtio_net_hdr's gso_type for UDP segmentation offload (Linux 6.2+ reports
// it to packet sockets; older kernels drop such frames for them).
const vnetGSOUDPL4 = 5

// pipe forwards frames received on from to to, each delayed by d. Frames
// keep their order (the delay is constant). A frame the sender's kernel
// left unsegmented (UDP segmentation offload: one buffer holding many
// datagrams) is cut here into the datagrams a NIC would put on the wire,
// so the far side and the delay line see one frame per datagram, whatever
// the server. Frames are read and written in batches (recvmmsg and
// sendmmsg, up to mmsgBatch per call): a system call per frame made this
// delay line, not the servers, the limit of the benchmark.
func pipe(from, to int, d time.Duration) error {
	q := make(chan frame, 1<<16)
	go func() {
		// This goroutine owns its thread, whose timer slack is 1 ns: with
		// the default 50 µs every nanosleep below overshot by up to that,
		// twice per round trip.
		runtime.LockOSThread()
		_ = unix.Prctl(unix.PR_SET_TIMERSLACK, 1, 0, 0, 0)
		var next *frame
		batch := make([][]byte, 0, mmsgBatch)
		w := newMmsg(mmsgBatch)
		for {
			if next == nil {
				f := <-q
				next = &f
			}
			// nanosleep(2) blocks this thread on a high-resolution timer;
			// time.Sleep was observed to overshoot 400 µs to ~1.4 ms here.
			if w := time.Until(next.at.Add(d)); w > 0 {
				ts := syscall.NsecToTimespec(int64(w))
				_ = syscall.Nanosleep(&ts, nil)
			}
			batch = append(batch[:0], next.data)
			next = nil
			now := time.Now()
		more:
			for len(batch) < mmsgBatch {
				select {
				case g := <-q:
					if g.at.Add(d).After(now) {
						next = &g
						break more
					}
					batch = append(batch, g.data)
				default:
					break more
				}
			}
			if err := w.send(to, batch); err != nil {
				fmt.Fprintln(os.Stderr, "tftpbench delay: write:", err)
			}
		}
	}()
	r := newMmsg(mmsgBatch)
	bufs := make([][]byte, mmsgBatch)
	for i := range bufs {
		bufs[i] = make([]byte, vnetHdrLen+65536)
	}
	for {
		n, err := r.recv(from, bufs)
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			return fmt.Errorf("reading frames: %w", err)
		}
		now := time.Now()
		for i := range n {
			f := bufs[i][:r.msgs[i].n]
			if len(f) < vnetHdrLen {
				continue
			}
			for _, data := range segment(f[:vnetHdrLen], f[vnetHdrLen:]) {
				clearUDPChecksum(data[vnetHdrLen:])
				select {
				case q <- frame{at: now, data: data}:
				default: // queue full: drop, as a real link would
				}
			}
		}
	}
}

// mmsgBatch is the most frames one recvmmsg or sendmmsg moves.
const mmsgBatch = 64

// mmsghdr is struct mmsghdr (linux/socket.h); golang.org/x/sys/unix has no
// recvmmsg or sendmmsg wrapper.
type mmsghdr struct {
	hdr syscall.Msghdr
	n   uint32
	_   [4]byte
}

// mmsg holds the message headers and I/O vectors of batched calls.
type mmsg struct {
	msgs []mmsghdr
	iovs []syscall.Iovec
}

func newMmsg(n int) *mmsg {
	return &mmsg{msgs: make([]mmsghdr, n), iovs: make([]syscall.Iovec, n)}
}

func (m *mmsg) set(bufs [][]byte) {
	for i, b := range bufs {
		m.iovs[i] = syscall.Iovec{Base: &b[0]}
		m.iovs[i].SetLen(len(b))
		m.msgs[i] = mmsghdr{hdr: syscall.Msghdr{Iov: &m.iovs[i], Iovlen: 1}}
	}
}

// recv reads up to len(bufs) frames, waiting for the first; frame i is
// bufs[i][:m.msgs[i].n].
func (m *mmsg) recv(fd int, bufs [][]byte) (int, error) {
	m.set(bufs)
	n, _, e := syscall.Syscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&m.msgs[0])),
		uintptr(len(bufs)), unix.MSG_WAITFORONE, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// send writes every frame of bufs to fd's interface; a frame the device
// refuses for want of buffers is dropped, as a full link would.
func (m *mmsg) send(fd int, bufs [][]byte) error {
	for len(bufs) > 0 {
		m.set(bufs)
		n, _, e := syscall.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&m.msgs[0])), uintptr(len(bufs)), 0, 0, 0)
		switch {
		case e == syscall.EINTR:
			continue
		case e == syscall.ENOBUFS:
			n = 1 // drop the frame that did not fit
		case e != 0:
			return e
		}
		bufs = bufs[n:]
	}
	return nil
}

const (
	// packetIgnoreOutgoing is PACKET_IGNORE_OUTGOING (Linux 4.20+): the
	// socket does not read back the frames it writes.
	packetIgnoreOutgoing = 23
)

// segment returns the wire frames of frame f read with virtio_net_hdr h,
// each with a zeroed virtio_net_hdr in front (to write back): f itself, or,
// for a UDP-segmented IPv4 frame, one frame per gso_size bytes of payload
// with its own IPv4 and UDP header.
func segment(h, f []byte) [][]byte {
	gsoType, gsoSize := h[1]&^0x80, int(binary.LittleEndian.Uint16(h[4:]))
	if gsoType != vnetGSOUDPL4 || gsoSize == 0 || len(f) < 14+20 || binary.BigEndian.Uint16(f[12:]) != 0x0800 {
		return [][]byte{append(make([]byte, vnetHdrLen), f...)}
	}
	ihl := int(f[14]&0x0f) * 4
	hdr := 14 + ihl + 8
	if len(f) < hdr {
		return nil
	}
	payload := f[hdr:]
	id := binary.BigEndian.Uint16(f[14+4:])
	var out [][]byte
	for i := 0; len(payload) > 0; i++ {
		n := min(gsoSize, len(payload))
		g := make([]byte, vnetHdrLen+hdr+n)
		copy(g[vnetHdrLen:], f[:hdr])
		copy(g[vnetHdrLen+hdr:], payload[:n])
		ip := g[vnetHdrLen+14:]
		binary.BigEndian.PutUint16(ip[2:], uint16(ihl+8+n))
		binary.BigEndian.PutUint16(ip[4:], id+uint16(i))
		ip[10], ip[11] = 0, 0
		binary.BigEndian.PutUint16(ip[10:], ipChecksum(ip[:ihl]))
		binary.BigEndian.PutUint16(ip[ihl+4:], uint16(8+n))
		out = append(out, g)
		payload = payload[n:]
	}
	return out
}

func ipChecksum(h []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(h); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// clearUDPChecksum zeroes the UDP checksum of an IPv4 frame ("no checksum"
// in IPv4): frames read from a veth may carry a partial (offloaded)
// checksum that nobody would complete after re-injection.
func clearUDPChecksum(f []byte) {
	if len(f) < 14+20 || binary.BigEndian.Uint16(f[12:]) != 0x0800 {
		return
	}
	ip := f[14:]
	ihl := int(ip[0]&0x0f) * 4
	if ip[9] != 17 || len(ip) < ihl+8 || binary.BigEndian.Uint16(ip[6:])&0x1fff != 0 {
		return
	}
	ip[ihl+6], ip[ihl+7] = 0, 0
}
