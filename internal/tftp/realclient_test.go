package tftp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dodai-dev/dodai/internal/testutil"
)

// Tests with the real clients from Debian (hack/deps/tftp.apt): tftp-hpa's
// tftp, atftp and curl, talking to the server on 127.0.0.1.

// skipShort skips the real-client tests in the fast tier (go test -short).
func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("real TFTP clients run in the full tier only (-short skips them)")
	}
}

func needTool(t *testing.T, name string) string {
	t.Helper()
	testutil.NeedTools(t, "hack/deps/tftp.apt", name)
	p, _ := exec.LookPath(name)
	return p
}

// clientCmd builds the command line of one real client fetching remote into local.
func clientCmd(t *testing.T, kind string, port uint16, remote, local string, blksize, window int) []string {
	p := strconv.Itoa(int(port))
	switch kind {
	case "tftp-hpa":
		// tftp-hpa's client negotiates no options (plain RFC 1350).
		return []string{needTool(t, "tftp"), "-m", "binary", "127.0.0.1", p, "-c", "get", remote, local}
	case "atftp":
		args := []string{needTool(t, "atftp"), "--option", "tsize 0"}
		if blksize > 0 {
			args = append(args, "--option", fmt.Sprintf("blksize %d", blksize))
		}
		if window > 0 {
			args = append(args, "--option", fmt.Sprintf("windowsize %d", window))
		}
		return append(args, "-g", "-r", remote, "-l", local, "127.0.0.1", p)
	case "curl":
		args := []string{needTool(t, "curl"), "-sS", "--fail", "-o", local}
		if blksize > 0 {
			args = append(args, "--tftp-blksize", strconv.Itoa(blksize))
		}
		return append(args, "tftp://127.0.0.1:"+p+"/"+remote)
	}
	t.Fatalf("unknown client %s", kind)
	return nil
}

func runClient(ctx context.Context, args []string) (string, error) {
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.WaitDelay = 2 * time.Second
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func sameFile(t *testing.T, got string, want []byte) {
	t.Helper()
	b, err := os.ReadFile(got)
	if err != nil {
		t.Fatalf("client wrote no file: %v", err)
	}
	if sha256.Sum256(b) != sha256.Sum256(want) {
		t.Fatalf("%s: %d bytes, sha256 differs from the served %d bytes", got, len(b), len(want))
	}
}

func TestRealClients(t *testing.T) {
	skipShort(t)
	t.Parallel()
	dir := t.TempDir()
	out := t.TempDir()
	data := writeRandom(t, dir, "random.bin", 3<<20+123)
	ipxe := writeRandom(t, dir, "x86/ipxe.efi", 850528)
	ts := startServer(t, &Server{Root: dir, MaxWindowSize: 64})
	cases := []struct {
		client        string
		file          string
		want          []byte
		blksize, win  int
		wantBlk, wWin int
	}{
		{"tftp-hpa", "random.bin", data, 0, 0, 512, 1},
		{"tftp-hpa", "/x86/ipxe.efi", ipxe, 0, 0, 512, 1},
		{"atftp", "random.bin", data, 0, 0, 512, 1},
		{"atftp", "random.bin", data, 1468, 0, 1468, 1},
		{"atftp", "random.bin", data, 1468, 8, 1468, 8},
		{"atftp", "x86/ipxe.efi", ipxe, 1468, 32, 1468, 32},
		{"atftp", "random.bin", data, 65464, 64, 1468, 64}, // capped to MaxBlockSize
		{"curl", "random.bin", data, 0, 0, 512, 1},
		{"curl", "random.bin", data, 1468, 0, 1468, 1},
		{"curl", "x86/ipxe.efi", ipxe, 1024, 0, 1024, 1},
	}
	for i, tc := range cases {
		name := fmt.Sprintf("%s blksize %d windowsize %d %s", tc.client, tc.blksize, tc.win, tc.file)
		t.Run(name, func(t *testing.T) {
			local := filepath.Join(out, strconv.Itoa(i))
			ctx := testCtx(t, 60*time.Second)
			if o, err := runClient(ctx, clientCmd(t, tc.client, ts.addr.Port(), tc.file, local, tc.blksize, tc.win)); err != nil {
				t.Fatalf("%v: %s", err, o)
			}
			sameFile(t, local, tc.want)
			ev := ts.event(t)
			if ev.Err != nil || ev.Bytes != int64(len(tc.want)) || ev.BlockSize != tc.wantBlk || ev.WindowSize != tc.wWin {
				t.Fatalf("event %+v", ev)
			}
		})
	}
}

func TestRealClientErrors(t *testing.T) {
	skipShort(t)
	t.Parallel()
	dir := t.TempDir()
	out := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "adir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "passwd")); err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, &Server{Root: dir})
	for _, tc := range []struct{ client, file, want string }{
		{"tftp-hpa", "missing.efi", "file not found"},
		{"atftp", "missing.efi", "file not found"},
		{"curl", "missing.efi", "exit status 68"}, // CURLE_TFTP_NOTFOUND; curl 7.88 prints a getpeername message
		{"tftp-hpa", "adir", "is a directory"},
		{"atftp", "passwd", "access violation"},
		{"tftp-hpa", "../etc/passwd", "access violation"},
	} {
		t.Run(tc.client+" "+tc.file, func(t *testing.T) {
			local := filepath.Join(out, strings.ReplaceAll(tc.client+tc.file, "/", "_"))
			o, err := runClient(testCtx(t, 30*time.Second), clientCmd(t, tc.client, ts.addr.Port(), tc.file, local, 0, 0))
			if err != nil {
				o += err.Error()
			}
			if !strings.Contains(strings.ToLower(o), tc.want) {
				t.Fatalf("client output %q does not mention %q", o, tc.want)
			}
			if b, err := os.ReadFile(local); err == nil && len(b) > 0 {
				t.Fatalf("client wrote %d bytes", len(b))
			}
			if ev := ts.event(t); ev.Err == nil {
				t.Fatalf("event %+v", ev)
			}
		})
	}
}

// TestRealClientNetascii: tftp-hpa in ascii mode gets back the original
// text (it converts CR LF to LF), proving the server's conversion.
func TestRealClientNetascii(t *testing.T) {
	skipShort(t)
	t.Parallel()
	dir := t.TempDir()
	text := "#!ipxe\ndhcp\nchain http://10.0.0.1/boot.ipxe\n"
	if err := writeFile(dir, "boot.ipxe", text); err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, &Server{Root: dir})
	local := filepath.Join(t.TempDir(), "out")
	args := []string{needTool(t, "tftp"), "-m", "ascii", "127.0.0.1", strconv.Itoa(int(ts.addr.Port())), "-c", "get", "boot.ipxe", local}
	if o, err := runClient(testCtx(t, 30*time.Second), args); err != nil {
		t.Fatalf("%v: %s", err, o)
	}
	sameFile(t, local, []byte(text))
	ev := ts.event(t)
	if ev.Err != nil || ev.Bytes != int64(len(ToNetascii([]byte(text)))) {
		t.Fatalf("event %+v", ev)
	}
}

// TestRealClientRollover fetches a file of more than 65535 blocks of 512
// bytes, so block numbers wrap past 65535 to 0.
func TestRealClientRollover(t *testing.T) {
	skipShort(t)
	t.Parallel()
	dir := t.TempDir()
	const size = 65536*512 + 100_000 // 33.6 MB, 65732 blocks
	data := writeRandom(t, dir, "big.bin", size)
	ts := startServer(t, &Server{Root: dir})
	for _, tc := range []struct {
		client       string
		blksize, win int
	}{
		{"atftp", 512, 32},
		{"curl", 512, 0},
	} {
		t.Run(tc.client, func(t *testing.T) {
			local := filepath.Join(t.TempDir(), "big")
			start := time.Now()
			if o, err := runClient(testCtx(t, 90*time.Second), clientCmd(t, tc.client, ts.addr.Port(), "big.bin", local, tc.blksize, tc.win)); err != nil {
				t.Fatalf("%v: %s", err, o)
			}
			sameFile(t, local, data)
			ev := ts.event(t)
			if ev.Err != nil || ev.Bytes != size {
				t.Fatalf("event %+v", ev)
			}
			t.Logf("%s: %d blocks in %v", tc.client, size/512+1, time.Since(start))
		})
	}
}

// TestRealClientsConcurrent runs 50 real clients at once.
func TestRealClientsConcurrent(t *testing.T) {
	skipShort(t)
	t.Parallel()
	dir := t.TempDir()
	out := t.TempDir()
	data := writeRandom(t, dir, "f.bin", 1<<20)
	events := make(chan TransferEvent, 100)
	ts := startServer(t, &Server{Root: dir, Timeout: 2 * time.Second, OnTransfer: func(ev TransferEvent) { events <- ev }})
	ctx := testCtx(t, 120*time.Second)
	const n = 50
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			kind := []string{"atftp", "curl", "tftp-hpa", "atftp"}[i%4]
			win := []int{8, 0, 0, 32}[i%4]
			local := filepath.Join(out, strconv.Itoa(i))
			if o, err := runClient(ctx, clientCmd(t, kind, ts.addr.Port(), "f.bin", local, 1468, win)); err != nil {
				errs[i] = fmt.Errorf("%s: %v: %s", kind, err, o)
				return
			}
			if b, err := os.ReadFile(local); err != nil || !bytes.Equal(b, data) {
				errs[i] = fmt.Errorf("%s: content differs (%v)", kind, err)
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("client %d: %v", i, err)
		}
	}
	// A client may exit right after sending its last ACK, before the
	// server has read it: wait for all n events.
	for i := range n {
		select {
		case ev := <-events:
			if ev.Err != nil {
				t.Errorf("transfer to %v failed: %v", ev.Client, ev.Err)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("only %d of %d transfers reported", i, n)
		}
	}
}

// TestIPv6 serves on [::1] (ListenAndServe) and on an IPv6 wildcard socket;
// curl fetches over IPv6.
func TestIPv6(t *testing.T) {
	skipShort(t)
	t.Parallel()
	dir := t.TempDir()
	data := writeRandom(t, dir, "f.bin", 100_000)
	for _, listen := range []string{"[::1]:0", "[::]:0"} {
		t.Run(listen, func(t *testing.T) {
			conn, err := net.ListenPacket("udp", listen)
			if err != nil {
				t.Fatalf("IPv6 loopback unavailable: %v", err)
			}
			port := conn.LocalAddr().(*net.UDPAddr).Port
			srv := &Server{Root: dir}
			events := make(chan TransferEvent, 1)
			srv.OnTransfer = func(ev TransferEvent) { events <- ev }
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- srv.Serve(ctx, conn) }()
			defer func() { cancel(); <-done; conn.Close() }()
			hosts := []string{"[::1]"}
			if listen == "[::]:0" {
				hosts = append(hosts, "127.0.0.1") // dual-stack socket, IPv4 client
			}
			for _, host := range hosts {
				local := filepath.Join(t.TempDir(), "out")
				args := []string{needTool(t, "curl"), "-sS", "--fail", "-g", "--tftp-blksize", "1468", "-o", local, fmt.Sprintf("tftp://%s:%d/f.bin", host, port)}
				if o, err := runClient(testCtx(t, 30*time.Second), args); err != nil {
					t.Fatalf("%s: %v: %s", host, err, o)
				}
				sameFile(t, local, data)
				select {
				case ev := <-events:
					if ev.Err != nil || ev.Client.Addr().Is6() != (host == "[::1]") {
						t.Fatalf("event %+v", ev)
					}
				case <-time.After(10 * time.Second):
					t.Fatal("no event")
				}
			}
		})
	}
}
