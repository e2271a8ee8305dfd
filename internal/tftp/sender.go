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

	sbuf []byte
	rbuf []byte

	packets int // DATA packets sent, including retransmissions
}

func (x *sender) run() (acked int64, err error) {
	stop := context.AfterFunc(x.ctx, func() { _ = x.conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	x.rbuf = make([]byte, 2048)
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

// sendWindow sends blocks from..from+window-1 (not past total).
func (x *sender) sendWindow(from, total uint64, sent *uint64) error {
	binary.BigEndian.PutUint16(x.sbuf, OpDATA)
	end := min(from+uint64(x.window)-1, total)
	for k := from; k <= end; k++ {
		off := int64(k-1) * int64(x.blksize)
		n := int(min(int64(x.blksize), x.size-off))
		if n > 0 {
			got, err := x.r.ReadAt(x.sbuf[4:4+n], off)
			if got < n {
				if err == nil || errors.Is(err, io.EOF) {
					err = errors.New("file shrank during the transfer")
				}
				return fmt.Errorf("reading block %d: %w", k, err)
			}
		}
		binary.BigEndian.PutUint16(x.sbuf[2:], uint16(k))
		x.packets++
		if _, err := x.conn.WriteToUDPAddrPort(x.sbuf[:4+n], x.peer); err != nil {
			return fmt.Errorf("sending block %d: %w", k, err)
		}
	}
	*sent = max(*sent, end)
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
