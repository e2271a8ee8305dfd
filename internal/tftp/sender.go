package tftp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// sender runs one read transfer over its own socket.
//
// Windowing (RFC 7440): blocks base..base+window-1 are sent back to back,
// then the sender waits for an ACK.
//   - ACK of the last block sent: the window is complete; the next starts.
//   - ACK of an earlier block k of the window: the client lost k+1 (it
//     acknowledges the last block it got in order); resend from k+1.
//   - ACK of base-1 (the block before the window, already acknowledged): a
//     duplicate. It is ignored — answering duplicates is the sorcerer's
//     apprentice bug (RFC 1350 errata, RFC 1123 §4.2.3.1); the retransmit
//     timer covers real loss.
//   - nothing within the timeout: resend the window from base, with the
//     bounded exponential backoff of backoff.go (the wait doubles with each
//     timeout in a row; progress starts it over), then give up.
//
// Block numbers are 16 bits on the wire and wrap from 65535 to 0 (what
// tftp-hpa, atftp, curl, iPXE and EDK2 expect for files over 65535 blocks);
// internally blocks are counted in 64 bits, and an ACK is matched to the
// window by its distance from base-1 modulo 65536. With windowsize ≤ 65535
// that distance is unambiguous.
type sender struct {
	*transfer
	ctx     context.Context
	conn    *net.UDPConn
	peer    netip.AddrPort
	log     *slog.Logger
	backoff *backoff

	sbuf []byte   // the DATA packet of a one-block send
	iovs [][]byte // fill's data areas, reused
	rbuf []byte
	// batch is the blocks per send; gso, when set, is the control message
	// that makes the kernel cut a send of several blocks into one datagram
	// per block (gso.go).
	batch int
	gso   []byte
	// file is the source's raw descriptor for fill's preadv, looked up
	// once per transfer (nil until then, or when the source is no file).
	file       syscall.RawConn
	fileLooked bool

	packets int  // DATA packets sent, including retransmissions
	sends   int  // send calls that carried them
	noGSO   bool // send one datagram per block (Server.NoSegmentation)
}

func (x *sender) run() (acked int64, err error) {
	stop := context.AfterFunc(x.ctx, func() { _ = x.conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	x.rbuf = make([]byte, 2048)
	x.batch = 1
	if n := gsoBlocks(4+x.blksize, x.window); n > 1 && !x.noGSO && gsoSupported(x.conn) {
		x.batch, x.gso = n, gsoControl(4+x.blksize)
	}
	x.sbuf = make([]byte, 4+x.blksize)

	defer func() {
		if err == nil || errors.Is(err, ErrClientAbort) {
			return
		}
		msg := err.Error()
		if x.ctx.Err() != nil {
			msg = "server shutting down"
		}
		// Tell the client why, so it doesn't wait out its own timeouts.
		_, _ = x.conn.WriteToUDPAddrPort((&Error{Code: ErrCodeNotDefined, Message: msg}).Marshal(), x.peer)
	}()

	if x.oack != nil {
		if err := x.sendOACK(); err != nil {
			return 0, err
		}
	}

	total := uint64(x.size)/uint64(x.blksize) + 1 // the last block is short (maybe empty)
	base := uint64(1)                             // first unacknowledged block
	var sent uint64                               // highest block sent
	if err := x.sendWindow(base, total, &sent); err != nil {
		return 0, err
	}
	deadline := x.backoff.start(time.Now())
	for {
		ack, err := x.await(deadline)
		if errors.Is(err, errTimeout) {
			now := time.Now()
			var ok bool
			if deadline, ok = x.backoff.next(now); !ok {
				return x.ackedBytes(base), fmt.Errorf("%w: block %d not acknowledged after %d retransmissions in %v",
					errTimeout, base, x.backoff.n, x.backoff.stalled(now).Round(time.Millisecond))
			}
			x.log.Debug("TFTP timeout, resending window", "from", base, "try", x.backoff.n)
			if err := x.sendWindow(base, total, &sent); err != nil {
				return x.ackedBytes(base), err
			}
			continue
		}
		if err != nil {
			return x.ackedBytes(base), err
		}
		dist := uint64(ack - uint16(base-1)) // mod 65536
		k := base - 1 + dist
		if dist == 0 || k > sent {
			continue // duplicate ACK, or ACK of a block never sent
		}
		if k == total {
			return x.size, nil
		}
		base = k + 1
		if err := x.sendWindow(base, total, &sent); err != nil {
			return x.ackedBytes(base), err
		}
		deadline = x.backoff.start(time.Now())
	}
}

// ackedBytes is how much the client has acknowledged when base is the first
// unacknowledged block.
func (x *sender) ackedBytes(base uint64) int64 {
	return min(int64(base-1)*int64(x.blksize), x.size)
}

func (x *sender) sendOACK() error {
	pkt := x.oack.Marshal()
	if _, err := x.conn.WriteToUDPAddrPort(pkt, x.peer); err != nil {
		return fmt.Errorf("sending OACK: %w", err)
	}
	deadline := x.backoff.start(time.Now())
	for {
		ack, err := x.await(deadline)
		if errors.Is(err, errTimeout) {
			now := time.Now()
			var ok bool
			if deadline, ok = x.backoff.next(now); !ok {
				return fmt.Errorf("%w: no ACK of the OACK after %d retransmissions in %v",
					errTimeout, x.backoff.n, x.backoff.stalled(now).Round(time.Millisecond))
			}
			x.log.Debug("TFTP timeout, resending OACK", "try", x.backoff.n)
			if _, err := x.conn.WriteToUDPAddrPort(pkt, x.peer); err != nil {
				return fmt.Errorf("sending OACK: %w", err)
			}
			continue
		}
		if err != nil {
			return err
		}
		if ack == 0 {
			return nil
		}
	}
}

// batchBufs holds the buffers of segmented sends (at most gsoMaxBytes
// each). A transfer holds one only while it fills and sends, not while it
// waits for an ACK, so a rack booting at once needs about as many as
// there are transfers sending at that instant, not one per transfer.
var batchBufs = sync.Pool{New: func() any { b := make([]byte, gsoMaxBytes); return &b }}

// sendWindow sends blocks from..from+window-1 (not past total), up to
// x.batch blocks per send.
func (x *sender) sendWindow(from, total uint64, sent *uint64) error {
	buf := x.sbuf
	if x.batch > 1 {
		bp := batchBufs.Get().(*[]byte)
		defer batchBufs.Put(bp)
		buf = *bp
	}
	end := min(from+uint64(x.window)-1, total)
	for k := from; k <= end; {
		last := min(k+uint64(x.batch)-1, end)
		b, err := x.fill(buf, k, last)
		if err != nil {
			return err
		}
		if err := x.send(b, k, last); err != nil {
			return err
		}
		k = last + 1
	}
	*sent = max(*sent, end)
	return nil
}

// fill writes DATA packets first..last into buf, back to back (every one
// 4+blksize bytes but the file's last block), and returns them. The blocks
// of a file come in with one preadv(2) into the packets' data areas (one
// system call per send instead of one per block); anything else, or a
// short read, goes block by block through ReadAt.
func (x *sender) fill(buf []byte, first, last uint64) ([]byte, error) {
	b := buf[:0]
	iovs := x.iovs[:0]
	want := 0
	for k := first; k <= last; k++ {
		off := int64(k-1) * int64(x.blksize)
		n := int(min(int64(x.blksize), x.size-off))
		p := b[len(b) : len(b)+4+n]
		binary.BigEndian.PutUint16(p, OpDATA)
		binary.BigEndian.PutUint16(p[2:], uint16(k))
		if n > 0 {
			iovs = append(iovs, p[4:])
			want += n
		}
		b = b[:len(b)+4+n]
	}
	x.iovs = iovs
	if want == 0 || x.preadv(iovs, int64(first-1)*int64(x.blksize)) == want {
		return b, nil
	}
	for k := first; k <= last; k++ {
		i := int(k - first)
		p := b[i*(4+x.blksize):]
		off := int64(k-1) * int64(x.blksize)
		n := int(min(int64(x.blksize), x.size-off))
		if n == 0 {
			continue
		}
		got, err := x.r.ReadAt(p[4:4+n], off)
		if got < n {
			if err == nil || errors.Is(err, io.EOF) {
				err = errors.New("file shrank during the transfer")
			}
			return nil, fmt.Errorf("reading block %d: %w", k, err)
		}
	}
	return b, nil
}

// preadv reads into iovs from off with one preadv(2) when the source is a
// file, and returns the bytes read (-1 when it cannot).
func (x *sender) preadv(iovs [][]byte, off int64) int {
	if !x.fileLooked {
		x.fileLooked = true
		if f, ok := x.r.(*os.File); ok {
			if rc, err := f.SyscallConn(); err == nil {
				x.file = rc
			}
		}
	}
	if x.file == nil || len(iovs) < 2 {
		return -1
	}
	got := -1
	if err := x.file.Control(func(fd uintptr) {
		if n, err := unix.Preadv(int(fd), iovs, off); err == nil {
			got = n
		}
	}); err != nil {
		return -1
	}
	return got
}

// send sends the packets of blocks first..last, which fill b: in one
// segmented send when the kernel segments (gso.go), else one datagram each.
func (x *sender) send(b []byte, first, last uint64) error {
	x.packets += int(last - first + 1)
	if x.gso != nil && last > first {
		_, _, err := x.conn.WriteMsgUDPAddrPort(b, x.gso, x.peer)
		if err == nil {
			x.sends++
			return nil
		}
		if !gsoRefused(err) {
			return fmt.Errorf("sending blocks %d-%d: %w", first, last, err)
		}
		// The route or device cannot segment (e.g. blksize beyond the MTU, so
		// every block is IP-fragmented): one datagram per block from now on.
		x.log.Debug("TFTP segmentation offload refused, sending one datagram per block", "err", err)
		x.gso = nil
	}
	pkt := 4 + x.blksize
	for k := first; k <= last; k++ {
		p := b[:min(pkt, len(b))]
		x.sends++
		if _, err := x.conn.WriteToUDPAddrPort(p, x.peer); err != nil {
			return fmt.Errorf("sending block %d: %w", k, err)
		}
		b = b[len(p):]
	}
	return nil
}

// await reads until an ACK from the client arrives (its block number), the
// client sends an ERROR (wrapped in ErrClientAbort), the deadline passes
// (errTimeout) or ctx is done. Packets from any other address or port get
// ERROR 5 and are otherwise ignored; malformed and unexpected packets from
// the client are ignored.
func (x *sender) await(deadline time.Time) (uint16, error) {
	for {
		if err := x.conn.SetReadDeadline(deadline); err != nil {
			return 0, err
		}
		if err := x.ctx.Err(); err != nil {
			return 0, err
		}
		n, from, err := x.conn.ReadFromUDPAddrPort(x.rbuf)
		if err != nil {
			if x.ctx.Err() != nil {
				return 0, x.ctx.Err()
			}
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				return 0, fmt.Errorf("reading from client: %w", err)
			}
			// Go reports a passed deadline without reading the socket. When
			// this goroutine got no CPU until after the deadline (a rack
			// booting at once), the ACK may be queued already: look once
			// before calling it a timeout and retransmitting.
			var ok bool
			if n, from, ok = x.recvQueued(); !ok {
				return 0, errTimeout
			}
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		if from != x.peer {
			x.log.Debug("TFTP packet from unknown transfer ID", "from", from.String())
			if !isErrorPacket(x.rbuf[:n]) {
				_, _ = x.conn.WriteToUDPAddrPort((&Error{Code: ErrCodeUnknownTID, Message: "unknown transfer ID"}).Marshal(), from)
			}
			continue
		}
		p, err := ParsePacket(x.rbuf[:n])
		if err != nil {
			x.log.Debug("TFTP ignoring malformed packet from client", "err", err)
			continue
		}
		switch p := p.(type) {
		case *Ack:
			return p.Block, nil
		case *Error:
			return 0, fmt.Errorf("%w: %w", ErrClientAbort, p)
		}
	}
}

// recvQueued reads a datagram already queued on the socket, without
// waiting and regardless of the read deadline; ok is false when none is.
func (x *sender) recvQueued() (n int, from netip.AddrPort, ok bool) {
	rc, err := x.conn.SyscallConn()
	if err != nil {
		return 0, from, false
	}
	var sa unix.Sockaddr
	var rerr error
	if err := rc.Control(func(fd uintptr) {
		n, sa, rerr = unix.Recvfrom(int(fd), x.rbuf, unix.MSG_DONTWAIT)
	}); err != nil || rerr != nil {
		return 0, from, false
	}
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return n, netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port)), true
	case *unix.SockaddrInet6:
		ip := netip.AddrFrom16(a.Addr)
		if a.ZoneId != 0 {
			if ifi, err := net.InterfaceByIndex(int(a.ZoneId)); err == nil {
				ip = ip.WithZone(ifi.Name)
			}
		}
		return n, netip.AddrPortFrom(ip, uint16(a.Port)), true
	}
	return 0, from, false
}
