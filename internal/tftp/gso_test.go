package tftp

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// logRecords is a slog handler that keeps every record's message and
// attributes.
type logRecords struct {
	mu   sync.Mutex
	recs []map[string]any
}

func (h *logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecords) WithAttrs(as []slog.Attr) slog.Handler {
	return &withAttrs{h: h, attrs: as}
}
func (h *logRecords) WithGroup(string) slog.Handler { return h }
func (h *logRecords) Handle(_ context.Context, r slog.Record) error {
	return h.add(r, nil)
}

func (h *logRecords) add(r slog.Record, pre []slog.Attr) error {
	m := map[string]any{"msg": r.Message}
	for _, a := range pre {
		m[a.Key] = a.Value.Any()
	}
	r.Attrs(func(a slog.Attr) bool { m[a.Key] = a.Value.Any(); return true })
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recs = append(h.recs, m)
	return nil
}

// find returns the records with message msg whose "file" is file.
func (h *logRecords) find(msg, file string) []map[string]any {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []map[string]any
	for _, m := range h.recs {
		if m["msg"] == msg && m["file"] == file {
			out = append(out, m)
		}
	}
	return out
}

type withAttrs struct {
	h     *logRecords
	attrs []slog.Attr
}

func (w *withAttrs) Enabled(context.Context, slog.Level) bool { return true }
func (w *withAttrs) WithAttrs(as []slog.Attr) slog.Handler {
	return &withAttrs{h: w.h, attrs: append(append([]slog.Attr(nil), w.attrs...), as...)}
}
func (w *withAttrs) WithGroup(string) slog.Handler { return w }
func (w *withAttrs) Handle(_ context.Context, r slog.Record) error {
	return w.h.add(r, w.attrs)
}

// TestSegmentedWindows: a window's blocks leave in as few send calls as
// UDP segmentation allows, and the client still receives one datagram per
// block with the right content. With NoSegmentation, or when the kernel
// refuses to segment on this socket (SO_NO_CHECK makes every segmented
// send fail with EINVAL, as a blksize beyond the path MTU does on a real
// link), every block is its own send and the transfer completes the same.
func TestSegmentedWindows(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	files := map[string][]byte{
		"100k":      writeRandom(t, dir, "100k", 100000),   // 69 blocks of 1468, the last 176 bytes
		"4096":      writeRandom(t, dir, "4096", 4096),     // 8 blocks of 512 and an empty ninth
		"100":       writeRandom(t, dir, "100", 100),       // 13 blocks of 8, the last 4 bytes
		"big-block": writeRandom(t, dir, "big-block", 1e5), // 4 blocks of 30000: 2 per send
	}
	modes := []struct {
		name    string
		noGSO   bool
		refused bool
	}{{"segmented", false, false}, {"one send per block", true, false}, {"kernel refuses", false, true}}
	cases := []struct {
		file            string
		blksize, window string
		packets         int
		segmentedSends  int // sends when segmenting: per window, ceil(blocks / blocks per send)
	}{
		{"100k", "1468", "32", 69, 3},     // windows of 32, 32, 5
		{"100k", "1468", "64", 69, 3},     // 64 = 44 + 20 (64 KiB per send), then 5
		{"4096", "512", "8", 9, 2},        // 8, then the empty block alone
		{"100", "8", "16", 13, 1},         // one window
		{"big-block", "30000", "4", 4, 2}, // 2 blocks of 30004 bytes fit one send
	}
	probe, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	kernelSegments := gsoSupported(probe)
	probe.Close()
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			if !m.noGSO && !kernelSegments {
				t.Skip("this kernel has no UDP_SEGMENT (Linux < 4.18): the server sends one datagram per block")
			}
			logs := &logRecords{}
			srv := &Server{Root: dir, Timeout: 200 * time.Millisecond, MaxWindowSize: 64, MaxBlockSize: 65464,
				NoSegmentation: m.noGSO, Log: slog.New(logs)}
			if m.refused {
				srv.onTransferSocket = func(c *net.UDPConn) {
					rc, err := c.SyscallConn()
					if err != nil {
						t.Error(err)
						return
					}
					_ = rc.Control(func(fd uintptr) {
						if err := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_NO_CHECK, 1); err != nil {
							t.Error(err)
						}
					})
				}
			}
			ts := startServer(t, srv)
			for _, tc := range cases {
				c := &client{server: ts.addr, opts: options("blksize", tc.blksize, "windowsize", tc.window)}
				got, err := c.get(testCtx(t, 30*time.Second), tc.file)
				if err != nil {
					t.Fatalf("%s blksize %s windowsize %s: %v", tc.file, tc.blksize, tc.window, err)
				}
				if !bytes.Equal(got, files[tc.file]) {
					t.Fatalf("%s: got %d bytes, want %d (content differs)", tc.file, len(got), len(files[tc.file]))
				}
				if c.dataSeen != tc.packets {
					t.Fatalf("%s: the client received %d DATA datagrams, want %d (one per block)", tc.file, c.dataSeen, tc.packets)
				}
				if ev := ts.eventFrom(t, c.local); ev.Err != nil {
					t.Fatalf("%s: %v", tc.file, ev.Err)
				}
				done := logs.find("TFTP transfer complete", tc.file)
				if len(done) == 0 {
					t.Fatalf("%s: no completion record", tc.file)
				}
				last := done[len(done)-1]
				wantSends := tc.packets
				if !m.noGSO && !m.refused {
					wantSends = tc.segmentedSends
				}
				if last["packets"] != int64(tc.packets) || last["sends"] != int64(wantSends) {
					t.Fatalf("%s blksize %s windowsize %s: packets %v in %v sends, want %d in %d",
						tc.file, tc.blksize, tc.window, last["packets"], last["sends"], tc.packets, wantSends)
				}
				refusals := logs.find("TFTP segmentation offload refused, sending one datagram per block", tc.file)
				if m.refused != (len(refusals) > 0) {
					t.Fatalf("%s: %d refusal records, want them only when the kernel refuses", tc.file, len(refusals))
				}
				logs.mu.Lock()
				logs.recs = nil
				logs.mu.Unlock()
			}
		})
	}
}
