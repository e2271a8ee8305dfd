package tftp

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestFiles: with Files the server serves exactly the listed names, from
// the files the caller chose, following their symlinks (Debian's
// /usr/lib/ipxe/ipxe.efi is an absolute symlink to /boot/ipxe.efi), and
// nothing else: not other files beside them, not their directories.
func TestFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	want := writeRandom(t, dir, "boot/ipxe.efi", 50_000)
	undi := writeRandom(t, dir, "undionly.kpxe", 3000)
	writeRandom(t, dir, "secret", 10)
	links := t.TempDir()
	if err := os.Symlink(filepath.Join(dir, "boot", "ipxe.efi"), filepath.Join(links, "ipxe.efi")); err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, &Server{Timeout: 200 * time.Millisecond, Files: map[string]string{
		"ipxe.efi":      filepath.Join(links, "ipxe.efi"),
		"undionly.kpxe": filepath.Join(dir, "undionly.kpxe"),
		"arm64/snp.efi": filepath.Join(dir, "boot"), // a directory: refused when asked
	}})
	for name, body := range map[string][]byte{"ipxe.efi": want, "/ipxe.efi": want, "./undionly.kpxe": undi} {
		c := &client{server: ts.addr, opts: options("blksize", "1468", "windowsize", "8")}
		got, err := c.get(testCtx(t, 30*time.Second), name)
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("%s: %d bytes, %v", name, len(got), err)
		}
		if ev := ts.event(t); ev.Err != nil || ev.Bytes != int64(len(body)) {
			t.Fatalf("%s: event %+v", name, ev)
		}
	}
	for name, code := range map[string]uint16{
		"secret":          ErrCodeFileNotFound,
		"boot/ipxe.efi":   ErrCodeFileNotFound,
		"../secret":       ErrCodeAccessViolation,
		"arm64/snp.efi":   ErrCodeAccessViolation,
		"ipxe.efi/../x":   ErrCodeAccessViolation,
		"IPXE.EFI":        ErrCodeFileNotFound,
		"undionly.kpxe.0": ErrCodeFileNotFound,
	} {
		c := &client{server: ts.addr}
		_, err := c.get(testCtx(t, 30*time.Second), name)
		var perr *Error
		if !errors.As(err, &perr) || perr.Code != code {
			t.Errorf("%s: %v, want TFTP error %d", name, err, code)
		}
		ts.event(t)
	}
}
