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
//	    server's namespaces (veth pairs on both sides, no addresses).
//	tftpbench ideal-serve -addr IP:PORT
//	tftpbench ideal-fetch -addr IP:PORT -size BYTES -blksize N -windowsize N
//	    the delay line's ceiling: the same exchange as a TFTP transfer
//	    (windows of blksize-byte datagrams, one ACK per window) between two
//	    endpoints that do nothing else, so no TFTP server is in the path.
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
	"syscall"
	"time"

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
	_ = fs.Parse(args)
	lvl := slog.LevelWarn
	if *verbose {
		lvl = slog.LevelDebug
	}
	s := &tftp.Server{Root: *root, MaxWindowSize: *maxWin, Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))}
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
	_ = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUF, 8<<20)
	_ = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_SNDBUF, 8<<20)
	return fd, nil
}

// pipe forwards frames received on from to to, each delayed by d. Frames
// keep their order (the delay is constant).
func pipe(from, to int, d time.Duration) error {
	q := make(chan frame, 1<<16)
	go func() {
		for f := range q {
			// nanosleep(2) blocks this thread on a high-resolution timer;
			// time.Sleep was observed to overshoot 400 µs to ~1.4 ms here.
			if w := time.Until(f.at.Add(d)); w > 0 {
				ts := syscall.NsecToTimespec(int64(w))
				_ = syscall.Nanosleep(&ts, nil)
			}
			if _, err := syscall.Write(to, f.data); err != nil && !errors.Is(err, syscall.ENOBUFS) {
				fmt.Fprintln(os.Stderr, "tftpbench delay: write:", err)
			}
		}
	}()
	buf := make([]byte, 65536)
	for {
		n, sa, err := syscall.Recvfrom(from, buf, 0)
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			return fmt.Errorf("reading frames: %w", err)
		}
		if ll, ok := sa.(*syscall.SockaddrLinklayer); ok && ll.Pkttype == syscall.PACKET_OUTGOING {
			continue // our own writes on this interface
		}
		data := append([]byte(nil), buf[:n]...)
		clearUDPChecksum(data)
		select {
		case q <- frame{at: time.Now(), data: data}:
		default: // queue full: drop, as a real link would
		}
	}
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
