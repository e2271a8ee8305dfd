// Package tftp is dodai's read-only TFTP server for the netboot stage: it
// serves the iPXE binaries that PXE firmware loads before iPXE switches to
// HTTP.
//
// It implements RFC 1350 (octet and netascii), option negotiation (RFC 2347),
// blksize (RFC 2348), tsize and timeout (RFC 2349) and windowsize (RFC 7440).
// It is hand-written because no maintained Go TFTP library negotiates
// windowsize: github.com/pin/tftp (v2/v3, the one pixiecore forks, booter and
// smee use) drops the option and offers only a non-standard "anticipate"
// mode. Windowsize is what makes TFTP fast at real RTTs (about 15× at 1 ms
// with 32 blocks per window), so it is implemented here and tested against
// real clients (tftp-hpa, atftp, curl) and with fuzzing.
//
// Every request is served from a fresh UDP socket (its own transfer ID)
// bound to the local address the request arrived on. Files are opened
// through os.Root, so no name, ".." or symlink can reach outside Root; or,
// with Files, only the listed names are served at all.
package tftp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Defaults for the zero values of Server's fields.
const (
	// DefaultTimeout is the first retransmission timeout; it doubles with
	// every timeout in a row, up to DefaultMaxTimeout, and a transfer
	// without progress for DefaultGiveUpAfter is abandoned (see backoff).
	DefaultTimeout       = 500 * time.Millisecond
	DefaultMaxTimeout    = 8 * time.Second
	DefaultGiveUpAfter   = 30 * time.Second
	DefaultMaxBlockSize  = 1468 // 1500 MTU − 20 (IPv4) − 8 (UDP) − 4 (TFTP)
	DefaultMaxWindowSize = 64
	// maxConcurrent bounds simultaneous transfers (each holds a socket and
	// a file); requests beyond it get ERROR 0 "server busy".
	maxConcurrent = 4096
	// maxNetasciiSize bounds files served in netascii mode, which are
	// converted in memory (netascii is for small text files).
	maxNetasciiSize = 16 << 20
)

// Server serves files below Root, read-only. The zero value of every field
// except Root is usable.
type Server struct {
	Root string // directory served read-only (the iPXE binaries)
	// Files, when set, replaces Root: exactly these names (relative,
	// slash-separated, as a request names them after the leading "/" and
	// "." components are dropped) are served, each from its file; every
	// other name is "file not found". The caller chose those files, so
	// symlinks in their paths are followed.
	Files map[string]string
	Log   *slog.Logger // may be nil
	// Retransmission: a lost OACK or DATA window is resent after Timeout
	// (default 500 ms, or the client's RFC 2349 "timeout"), then after
	// twice the previous wait, up to MaxTimeout (default 8 s); a transfer
	// that has made no progress for GiveUpAfter (default 30 s) ends with
	// ERROR 0. Retries, when > 0, also caps the retransmissions in a row.
	Timeout       time.Duration
	MaxTimeout    time.Duration
	GiveUpAfter   time.Duration
	Retries       int
	MaxBlockSize  int // cap for blksize (default 1468 — fits a 1500 MTU; never above 65464)
	MaxWindowSize int // cap for windowsize (default 64)
	// NoSegmentation sends every DATA block with its own send call. By
	// default a window's blocks go to the kernel in one call, cut into one
	// datagram per block by UDP segmentation offload where the kernel and
	// route support it (gso.go); the packets on the wire are the same.
	NoSegmentation bool

	// onTransferSocket, when set (tests), is called with each transfer's
	// socket before the transfer starts.
	onTransferSocket func(*net.UDPConn)
	// OnTransfer is called after each transfer (for the live view and
	// metrics): client addr, file name, bytes sent, duration, error (nil when
	// complete). It is also called for refused requests (Bytes 0). It may be
	// called from many goroutines at once.
	OnTransfer func(ev TransferEvent)
}

// TransferEvent describes one finished (or refused, or failed) transfer.
type TransferEvent struct {
	Client     netip.AddrPort
	File       string // as requested by the client
	Bytes      int64  // bytes acknowledged by the client
	Duration   time.Duration
	Err        error // nil when complete; errors.Is(Err, ErrClientAbort) when the client stopped it
	BlockSize  int
	WindowSize int
}

// ErrClientAbort is wrapped by TransferEvent.Err when the client ended the
// transfer with an ERROR packet. UEFI firmware does this on purpose after
// reading tsize from the OACK (a size probe), so it is not a server fault.
var ErrClientAbort = errors.New("client aborted the transfer")

// errTimeout is returned when the client stops answering.
var errTimeout = errors.New("client did not answer")

func (s *Server) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.New(slog.DiscardHandler)
}

func (s *Server) timeout() time.Duration {
	if s.Timeout > 0 {
		return s.Timeout
	}
	return DefaultTimeout
}

func (s *Server) maxTimeout() time.Duration {
	if s.MaxTimeout > 0 {
		return s.MaxTimeout
	}
	return DefaultMaxTimeout
}

func (s *Server) giveUpAfter() time.Duration {
	if s.GiveUpAfter > 0 {
		return s.GiveUpAfter
	}
	return DefaultGiveUpAfter
}

func (s *Server) maxBlockSize() int {
	switch {
	case s.MaxBlockSize <= 0:
		return DefaultMaxBlockSize
	case s.MaxBlockSize < MinBlockSize:
		return MinBlockSize
	case s.MaxBlockSize > MaxBlockSize:
		return MaxBlockSize
	}
	return s.MaxBlockSize
}

func (s *Server) maxWindowSize() int {
	switch {
	case s.MaxWindowSize <= 0:
		return DefaultMaxWindowSize
	case s.MaxWindowSize > MaxWindowSize:
		return MaxWindowSize
	}
	return s.MaxWindowSize
}

// ListenAndServe listens on addr (e.g. "10.0.0.1:69") and calls Serve.
// dodai binds to the boot interface's address, so every transfer socket
// uses that address too.
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return fmt.Errorf("resolving TFTP listen address %q: %w", addr, err)
	}
	network := "udp"
	if ua.IP.To4() != nil {
		network = "udp4"
	}
	conn, err := net.ListenUDP(network, ua)
	if err != nil {
		return fmt.Errorf("listening for TFTP on %s: %w", addr, err)
	}
	defer conn.Close()
	return s.Serve(ctx, conn)
}

// Serve answers requests arriving on conn until ctx is done, then stops the
// transfers in flight (they get ERROR 0 "server shutting down"), waits for
// them and returns nil. conn is not closed. It returns an error if Root
// cannot be opened or reading conn fails.
func (s *Server) Serve(ctx context.Context, conn net.PacketConn) error {
	var root *os.Root
	switch {
	case s.Files != nil:
	case s.Root == "":
		return errors.New("tftp: Server.Root is empty")
	default:
		r, err := os.OpenRoot(s.Root)
		if err != nil {
			return fmt.Errorf("opening TFTP root: %w", err)
		}
		defer r.Close()
		root = r
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()

	var wg sync.WaitGroup
	defer wg.Wait()
	sem := make(chan struct{}, maxConcurrent)
	var running transferSet

	rd := newRequestReader(conn)
	log := s.log()
	attrs := []any{"addr", conn.LocalAddr().String()}
	if dev := boundDevice(conn); dev != "" {
		attrs = append(attrs, "interface", dev)
	}
	if s.Files != nil {
		attrs = append(attrs, "files", len(s.Files))
	} else {
		attrs = append(attrs, "root", s.Root)
	}
	log.Info("TFTP server listening", attrs...)
	buf := make([]byte, 65536)
	for {
		n, peer, local, err := rd.read(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("reading TFTP requests on %s: %w", conn.LocalAddr(), err)
		}
		raw := bytes.Clone(buf[:n])
		key, isRRQ := requestKey(peer, raw)
		if isRRQ && !running.add(key) {
			// The client sent this request again while its transfer runs
			// (firmware retransmits an RRQ whose OACK is slow): the running
			// transfer retransmits on its own timer; a second one would
			// send every block twice and hold a second slot.
			log.Debug("TFTP ignoring a repeated request of a running transfer", "client", peer.String())
			continue
		}
		select {
		case sem <- struct{}{}:
		default:
			if isRRQ {
				running.remove(key)
			}
			log.Warn("TFTP server busy, refusing request", "client", peer.String())
			if !isErrorPacket(raw) {
				_, _ = conn.WriteTo((&Error{Code: ErrCodeNotDefined, Message: "server busy"}).Marshal(), net.UDPAddrFromAddrPort(peer))
			}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ev, ok := s.handle(ctx, root, raw, peer, local)
			if isRRQ {
				running.remove(key) // before the event: a request after it is a new transfer
			}
			if ok {
				s.report(ev)
			}
		}()
	}
}

// requestKey identifies a read request for duplicate detection: the
// client's address and port and the request's exact bytes (file name,
// mode, options). A retransmitted RRQ is byte-for-byte the same; a request
// with other options (EDK2 asks again without tsize after its size probe)
// or from another port is a transfer of its own.
func requestKey(peer netip.AddrPort, raw []byte) (string, bool) {
	if rawOpcode(raw) != OpRRQ {
		return "", false
	}
	b := peer.Addr().As16()
	return string(b[:]) + string([]byte{byte(peer.Port() >> 8), byte(peer.Port())}) + string(raw), true
}

// transferSet is the set of requests being served.
type transferSet struct {
	mu sync.Mutex
	m  map[string]struct{}
}

// add records key and reports whether it was new.
func (r *transferSet) add(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.m[key]; ok {
		return false
	}
	if r.m == nil {
		r.m = map[string]struct{}{}
	}
	r.m[key] = struct{}{}
	return true
}

func (r *transferSet) remove(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.m, key)
}

func isErrorPacket(b []byte) bool {
	return len(b) >= 2 && b[0] == 0 && b[1] == byte(OpERROR)
}

// handle serves one request from its own socket and returns its event
// (ok is false when nothing was answered).
func (s *Server) handle(ctx context.Context, root *os.Root, raw []byte, peer netip.AddrPort, local netip.Addr) (ev TransferEvent, ok bool) {
	start := time.Now()
	log := s.log().With("client", peer.String())
	t, perr := s.prepare(root, raw)
	if t == nil && perr == nil {
		return ev, false // an ERROR (or nothing) sent to the server port: never answer it
	}
	if t != nil {
		defer t.close()
	}
	c, err := listenTransfer(local, peer)
	if err != nil {
		log.Error("TFTP: opening transfer socket", "err", err)
		return ev, false
	}
	defer c.Close()
	if s.onTransferSocket != nil {
		s.onTransferSocket(c)
	}
	ev = TransferEvent{Client: peer}
	if perr != nil {
		if req, ok := tryRequest(raw); ok {
			ev.File = req.Filename
		}
		log.Warn("TFTP request refused", "file", ev.File, "err", perr)
		_, _ = c.WriteToUDPAddrPort(perr.Marshal(), peer)
		ev.Err = perr
		ev.Duration = time.Since(start)
		return ev, true
	}
	ev.File, ev.BlockSize, ev.WindowSize = t.name, t.blksize, t.window
	log = log.With("file", t.name, "blksize", t.blksize, "windowsize", t.window)
	log.Debug("TFTP transfer starting", "size", t.size, "mode", t.mode)
	x := &sender{transfer: t, ctx: ctx, conn: c, peer: peer, log: log, backoff: s.newBackoff(t), noGSO: s.NoSegmentation}
	ev.Bytes, ev.Err = x.run()
	ev.Duration = time.Since(start)
	// A finished transfer is a debug line: a rack booting at once makes
	// thousands (UEFI's size probe is one more per machine); failures warn.
	switch {
	case ev.Err == nil:
		log.Debug("TFTP transfer complete", "bytes", ev.Bytes, "duration", ev.Duration, "packets", x.packets, "sends", x.sends)
	case errors.Is(ev.Err, ErrClientAbort):
		log.Debug("TFTP transfer stopped by client", "bytes", ev.Bytes, "err", ev.Err)
	default:
		log.Warn("TFTP transfer failed", "bytes", ev.Bytes, "err", ev.Err)
	}
	return ev, true
}

func (s *Server) report(ev TransferEvent) {
	if s.OnTransfer != nil {
		s.OnTransfer(ev)
	}
}

func tryRequest(raw []byte) (*Request, bool) {
	p, err := ParsePacket(raw)
	if err != nil {
		return nil, false
	}
	r, ok := p.(*Request)
	return r, ok
}

// listenTransfer opens the per-transfer socket (a new TID) on local (when
// known) with an ephemeral port, in the address family of peer.
func listenTransfer(local netip.Addr, peer netip.AddrPort) (*net.UDPConn, error) {
	network := "udp6"
	if peer.Addr().Is4() {
		network = "udp4"
	}
	la := &net.UDPAddr{}
	if local.IsValid() && !local.IsUnspecified() && local.Is4() == peer.Addr().Is4() {
		c, err := net.ListenUDP(network, &net.UDPAddr{IP: local.AsSlice(), Zone: local.Zone()})
		if err == nil {
			return c, nil
		}
		// e.g. a subnet-directed broadcast destination: fall back to the
		// wildcard and let the kernel choose the source address.
	}
	return net.ListenUDP(network, la)
}

// transfer is a validated read request: what to send and how.
type transfer struct {
	name    string // as requested
	mode    string // "octet" or "netascii"
	r       io.ReaderAt
	closer  io.Closer
	size    int64
	blksize int
	window  int
	timeout time.Duration // first retransmission timeout
	// negotiatedTimeout: timeout is the client's RFC 2349 "timeout".
	negotiatedTimeout bool
	oack              *OACK // nil when no option was accepted
}

func (t *transfer) close() {
	if t.closer != nil {
		_ = t.closer.Close()
	}
}

// prepare validates a request and opens its file. It returns (nil, nil)
// for packets that must get no answer (ERROR packets, too short to carry an
// opcode), or an *Error to send back.
func (s *Server) prepare(root *os.Root, raw []byte) (*transfer, *Error) {
	if len(raw) < 2 || isErrorPacket(raw) {
		return nil, nil
	}
	p, err := ParsePacket(raw)
	if err != nil {
		return nil, &Error{Code: ErrCodeIllegalOperation, Message: err.Error()}
	}
	req, ok := p.(*Request)
	if !ok {
		return nil, &Error{Code: ErrCodeIllegalOperation, Message: fmt.Sprintf("expected a read request (RRQ), got opcode %d", rawOpcode(raw))}
	}
	if req.Op == OpWRQ {
		return nil, &Error{Code: ErrCodeAccessViolation, Message: "access violation: this server is read-only"}
	}
	mode := strings.ToLower(req.Mode)
	switch mode {
	case "octet", "netascii":
	case "mail":
		return nil, &Error{Code: ErrCodeIllegalOperation, Message: `transfer mode "mail" is not supported`}
	default:
		return nil, &Error{Code: ErrCodeIllegalOperation, Message: fmt.Sprintf("unknown transfer mode %q (want octet or netascii)", req.Mode)}
	}
	neg, perr := s.negotiate(req)
	if perr != nil {
		return nil, perr
	}
	rel, err := resolvePath(req.Filename)
	if err != nil {
		return nil, &Error{Code: ErrCodeAccessViolation, Message: err.Error()}
	}
	f, perr := s.open(root, rel, req.Filename)
	if perr != nil {
		return nil, perr
	}
	t := &transfer{name: req.Filename, mode: mode, r: f, closer: f, blksize: neg.blksize, window: neg.window, timeout: neg.timeout, negotiatedTimeout: neg.timeout > 0}
	if t.timeout == 0 {
		t.timeout = s.timeout()
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, &Error{Code: ErrCodeNotDefined, Message: fmt.Sprintf("reading %q: %v", req.Filename, err)}
	}
	t.size = info.Size()
	if mode == "netascii" {
		if t.size > maxNetasciiSize {
			f.Close()
			return nil, &Error{Code: ErrCodeNotDefined, Message: fmt.Sprintf("%q is too large for netascii mode (%d bytes, limit %d); use octet", req.Filename, t.size, maxNetasciiSize)}
		}
		data, err := io.ReadAll(io.NewSectionReader(f, 0, t.size))
		f.Close()
		if err != nil {
			return nil, &Error{Code: ErrCodeNotDefined, Message: fmt.Sprintf("reading %q: %v", req.Filename, err)}
		}
		conv := ToNetascii(data)
		t.r, t.closer, t.size = bytes.NewReader(conv), nil, int64(len(conv))
	}
	if len(neg.oack) > 0 {
		for i := range neg.oack {
			if neg.oack[i].Value == tsizePlaceholder {
				neg.oack[i].Value = fmt.Sprint(t.size)
			}
		}
		t.oack = &OACK{Options: neg.oack}
	}
	return t, nil
}

func rawOpcode(raw []byte) uint16 {
	if len(raw) < 2 {
		return 0
	}
	return uint16(raw[0])<<8 | uint16(raw[1])
}

// open opens rel from Files or below root.
func (s *Server) open(root *os.Root, rel, requested string) (*os.File, *Error) {
	if s.Files == nil {
		return openRegular(root.OpenFile, rel, requested)
	}
	path, ok := s.Files[rel]
	if !ok {
		return nil, &Error{Code: ErrCodeFileNotFound, Message: fmt.Sprintf("file not found: %q", requested)}
	}
	return openRegular(os.OpenFile, path, requested)
}

// openRegular opens rel below root, refusing anything but a regular file.
// O_NONBLOCK keeps a FIFO from blocking the open; it does not affect
// regular files.
func openRegular(openFile func(string, int, fs.FileMode) (*os.File, error), rel, requested string) (*os.File, *Error) {
	f, err := openFile(rel, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil, &Error{Code: ErrCodeFileNotFound, Message: fmt.Sprintf("file not found: %q", requested)}
		case errors.Is(err, fs.ErrPermission):
			return nil, &Error{Code: ErrCodeAccessViolation, Message: fmt.Sprintf("access violation: %q is not readable", requested)}
		default:
			// os.Root reports symlinks and names leading outside the
			// root as "path escapes from parent".
			return nil, &Error{Code: ErrCodeAccessViolation, Message: fmt.Sprintf("access violation: %q: %v", requested, unwrapPathError(err))}
		}
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, &Error{Code: ErrCodeNotDefined, Message: fmt.Sprintf("reading %q: %v", requested, err)}
	}
	if !info.Mode().IsRegular() {
		f.Close()
		what := "not a regular file"
		if info.IsDir() {
			what = "a directory"
		}
		return nil, &Error{Code: ErrCodeAccessViolation, Message: fmt.Sprintf("access violation: %q is %s", requested, what)}
	}
	return f, nil
}

// boundDevice returns the interface conn is bound to (SO_BINDTODEVICE), ""
// when none.
func boundDevice(conn net.PacketConn) string {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return ""
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return ""
	}
	var dev string
	_ = rc.Control(func(fd uintptr) {
		dev, _ = unix.GetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE)
	})
	return dev
}

// unwrapPathError drops the *PathError wrapper so messages sent to clients
// never carry the server's absolute paths.
func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
