//go:build linux

package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"
)

// udpSegment is UDP_SEGMENT (linux/udp.h): the socket's sends are cut into
// datagrams of this many bytes.
const udpSegment = 103

// The ideal exchange: the client sends a request of four big-endian
// uint32s (size, blksize, windowsize, segment); the server answers with
// DATA-like datagrams (a uint32 block number, then blksize bytes; the last
// block is shorter), windowsize of them at a time, and waits for the
// client's ACK (the uint32 number of the last block of the window, in
// order) before the next window. Timeouts resend the window, as TFTP does.
// With segment 1 the server hands each window to the kernel in one send
// with UDP_SEGMENT (as dodai's server does), else one send per datagram.

func idealServe(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("ideal-serve", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:6969", "listen address")
	_ = fs.Parse(args)
	la, err := net.ResolveUDPAddr("udp4", *addr)
	if err != nil {
		return err
	}
	conn, err := net.ListenUDP("udp4", la)
	if err != nil {
		return err
	}
	go func() { <-ctx.Done(); conn.Close() }()
	buf := make([]byte, 65536)
	for {
		n, peer, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if n != 16 {
			continue
		}
		size := int(binary.BigEndian.Uint32(buf[0:]))
		blk := int(binary.BigEndian.Uint32(buf[4:]))
		win := int(binary.BigEndian.Uint32(buf[8:]))
		seg := binary.BigEndian.Uint32(buf[12:]) == 1
		if blk < 8 || blk > 65464 || win < 1 || win > 1024 {
			continue
		}
		if err := idealSend(peer.String(), size, blk, win, seg); err != nil {
			fmt.Fprintln(os.Stderr, "tftpbench ideal-serve:", err)
		}
	}
}

// idealSend runs one transfer on its own socket (as a TFTP server does).
func idealSend(peer string, size, blk, win int, seg bool) error {
	ra, err := net.ResolveUDPAddr("udp4", peer)
	if err != nil {
		return err
	}
	c, err := net.DialUDP("udp4", nil, ra)
	if err != nil {
		return err
	}
	defer c.Close()
	perSend := 1 // datagrams per send
	if seg {
		perSend = min(win, 64, (65535-8-20)/(4+blk))
		rc, err := c.SyscallConn()
		if err != nil {
			return err
		}
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_UDP, udpSegment, 4+blk)
		}); err != nil || serr != nil {
			return fmt.Errorf("UDP_SEGMENT: %v %v", err, serr)
		}
	}
	blocks := size/blk + 1
	pkt := make([]byte, perSend*(4+blk))
	ack := make([]byte, 16)
	for first := 1; first <= blocks; {
		last := min(first+win-1, blocks)
		for b := first; b <= last; {
			p := pkt[:0]
			for ; b <= last && len(p) < perSend*(4+blk); b++ {
				n := blk
				if b == blocks {
					n = size - (blocks-1)*blk
				}
				q := p[len(p) : len(p)+4+n]
				binary.BigEndian.PutUint32(q, uint32(b))
				p = p[:len(p)+4+n]
			}
			if _, err := c.Write(p); err != nil {
				return err
			}
		}
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		n, err := c.Read(ack)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue // resend the window
			}
			return err
		}
		if n == 4 {
			if a := int(binary.BigEndian.Uint32(ack)); a >= first {
				first = a + 1
			}
		}
	}
	return nil
}

func idealFetch(args []string) error {
	fs := flag.NewFlagSet("ideal-fetch", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:6969", "ideal-serve address")
	size := fs.Int("size", 1<<20, "bytes to transfer")
	blk := fs.Int("blksize", 1468, "block size")
	win := fs.Int("windowsize", 32, "blocks per ACK")
	seg := fs.Bool("segment", true, "the server sends each window in one UDP_SEGMENT send")
	_ = fs.Parse(args)
	ra, err := net.ResolveUDPAddr("udp4", *addr)
	if err != nil {
		return err
	}
	c, err := net.ListenUDP("udp4", nil)
	if err != nil {
		return err
	}
	defer c.Close()
	start := time.Now()
	req := make([]byte, 16)
	binary.BigEndian.PutUint32(req[0:], uint32(*size))
	binary.BigEndian.PutUint32(req[4:], uint32(*blk))
	binary.BigEndian.PutUint32(req[8:], uint32(*win))
	if *seg {
		binary.BigEndian.PutUint32(req[12:], 1)
	}
	if _, err := c.WriteToUDP(req, ra); err != nil {
		return err
	}
	blocks := *size / *blk + 1
	buf := make([]byte, 65536)
	ack := make([]byte, 4)
	next, got := 1, 0
	deadline := time.Now().Add(30 * time.Second)
	for next <= blocks {
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		n, from, err := c.ReadFromUDP(buf)
		if time.Now().After(deadline) {
			return errors.New("ideal-fetch: no progress for 30 s")
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue // the server resends the window
			}
			return err
		}
		if n < 4 {
			continue
		}
		b := int(binary.BigEndian.Uint32(buf))
		if b != next {
			continue // lost a block: the window is resent after the timeout
		}
		got += n - 4
		if b == blocks || (b-1)%*win == *win-1 {
			binary.BigEndian.PutUint32(ack, uint32(b))
			if _, err := c.WriteToUDP(ack, from); err != nil {
				return err
			}
		}
		next++
	}
	if got != *size {
		return fmt.Errorf("ideal-fetch: got %d bytes, want %d", got, *size)
	}
	fmt.Println(time.Since(start).Microseconds())
	return nil
}
