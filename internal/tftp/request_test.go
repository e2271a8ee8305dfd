package tftp

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPrepareBadRequests(t *testing.T) {
	dir := t.TempDir()
	writeRandom(t, dir, "file.bin", 1000)
	if err := os.Mkdir(filepath.Join(dir, "adir"), 0o755); err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	s := &Server{Root: dir}
	long := strings.Repeat("a", MaxFilenameLen+1)
	cases := []struct {
		name     string
		raw      string
		wantCode uint16
		wantMsg  string
	}{
		{"write request", "\x00\x02file.bin\x00octet\x00", ErrCodeAccessViolation, "access violation"},
		{"missing mode", "\x00\x01file.bin\x00", ErrCodeIllegalOperation, "no NUL-terminated mode"},
		{"empty mode", "\x00\x01file.bin\x00\x00", ErrCodeIllegalOperation, "empty mode"},
		{"bad mode", "\x00\x01file.bin\x00binary\x00", ErrCodeIllegalOperation, `unknown transfer mode "binary"`},
		{"mail mode", "\x00\x01file.bin\x00mail\x00", ErrCodeIllegalOperation, `"mail" is not supported`},
		{"blksize not a number", string(rrq("file.bin", "octet", "blksize", "big")), ErrCodeOptionNegotiation, `blksize="big"`},
		{"blksize too small", string(rrq("file.bin", "octet", "blksize", "7")), ErrCodeOptionNegotiation, "want an integer 8..65464"},
		{"blksize zero", string(rrq("file.bin", "octet", "blksize", "0")), ErrCodeOptionNegotiation, "blksize"},
		{"blksize negative", string(rrq("file.bin", "octet", "blksize", "-1468")), ErrCodeOptionNegotiation, "blksize"},
		{"blksize plus sign", string(rrq("file.bin", "octet", "blksize", "+1468")), ErrCodeOptionNegotiation, "blksize"},
		{"blksize spaces", string(rrq("file.bin", "octet", "blksize", " 1468")), ErrCodeOptionNegotiation, "blksize"},
		{"blksize overflow", string(rrq("file.bin", "octet", "blksize", "99999999999999999999")), ErrCodeOptionNegotiation, "blksize"},
		{"windowsize zero", string(rrq("file.bin", "octet", "windowsize", "0")), ErrCodeOptionNegotiation, "windowsize"},
		{"windowsize too big", string(rrq("file.bin", "octet", "windowsize", "65536")), ErrCodeOptionNegotiation, "1..65535"},
		{"timeout zero", string(rrq("file.bin", "octet", "timeout", "0")), ErrCodeOptionNegotiation, "timeout"},
		{"timeout too big", string(rrq("file.bin", "octet", "timeout", "256")), ErrCodeOptionNegotiation, "1..255"},
		{"tsize not a number", string(rrq("file.bin", "octet", "tsize", "x")), ErrCodeOptionNegotiation, "tsize"},
		{"option without value", "\x00\x01file.bin\x00octet\x00blksize\x00", ErrCodeIllegalOperation, `option "blksize" has no NUL-terminated value`},
		{"too long filename", "\x00\x01" + long + "\x00octet\x00", ErrCodeIllegalOperation, "exceeds 255"},
		{"non-existent file", string(rrq("nope.efi", "octet")), ErrCodeFileNotFound, `file not found: "nope.efi"`},
		{"non-existent in dir", string(rrq("adir/nope", "octet")), ErrCodeFileNotFound, "file not found"},
		{"directory", string(rrq("adir", "octet")), ErrCodeAccessViolation, `"adir" is a directory`},
		{"root", string(rrq("/", "octet")), ErrCodeAccessViolation, "root directory"},
		{"dotdot", string(rrq("../file.bin", "octet")), ErrCodeAccessViolation, `".."`},
		{"backslash", string(rrq(`adir\file.bin`, "octet")), ErrCodeAccessViolation, "backslash"},
		{"data to server port", "\x00\x03\x00\x01xx", ErrCodeIllegalOperation, "expected a read request (RRQ), got opcode 3"},
		{"ack to server port", "\x00\x04\x00\x01", ErrCodeIllegalOperation, "got opcode 4"},
		{"garbage", "\x17\x17garbage", ErrCodeIllegalOperation, "unknown opcode"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tr, perr := s.prepare(root, []byte(tc.raw))
			if perr == nil {
				if tr != nil {
					tr.close()
				}
				t.Fatalf("accepted %q", tc.raw)
			}
			if perr.Code != tc.wantCode || !strings.Contains(perr.Message, tc.wantMsg) {
				t.Fatalf("got error %d %q, want %d containing %q", perr.Code, perr.Message, tc.wantCode, tc.wantMsg)
			}
			if strings.Contains(perr.Message, dir) {
				t.Fatalf("error %q leaks the server path", perr.Message)
			}
		})
	}
	// ERROR packets and runts sent to the server port get no answer at all.
	for _, raw := range []string{"\x00\x05\x00\x00x\x00", "\x00", ""} {
		if tr, perr := s.prepare(root, []byte(raw)); tr != nil || perr != nil {
			t.Errorf("prepare(%q) = %v, %v; want no answer", raw, tr, perr)
		}
	}
}

func TestNegotiation(t *testing.T) {
	dir := t.TempDir()
	writeRandom(t, dir, "f", 123456)
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	cases := []struct {
		name     string
		srv      Server
		opts     []string
		wantOACK []Option // nil: no OACK
		wantBlk  int
		wantWin  int
		wantTmo  time.Duration
	}{
		{"no options, no OACK", Server{}, nil, nil, 512, 1, DefaultTimeout},
		{"unknown options only, no OACK", Server{}, []string{"multicast", "1", "utimeout", "5000"}, nil, 512, 1, DefaultTimeout},
		{"edk2 probe", Server{}, []string{"tsize", "0", "blksize", "1468", "windowsize", "4"},
			options("tsize", "123456", "blksize", "1468", "windowsize", "4"), 1468, 4, DefaultTimeout},
		{"blksize capped", Server{}, []string{"blksize", "65464"}, options("blksize", "1468"), 1468, 1, DefaultTimeout},
		{"blksize above RFC max capped", Server{MaxBlockSize: 100000}, []string{"blksize", "70000"}, options("blksize", "65464"), 65464, 1, DefaultTimeout},
		{"blksize small", Server{}, []string{"blksize", "8"}, options("blksize", "8"), 8, 1, DefaultTimeout},
		{"windowsize capped", Server{MaxWindowSize: 16}, []string{"windowsize", "64"}, options("windowsize", "16"), 512, 16, DefaultTimeout},
		{"timeout", Server{Timeout: 3 * time.Second}, []string{"timeout", "7"}, options("timeout", "7"), 512, 1, 7 * time.Second},
		{"server timeout default", Server{Timeout: 3 * time.Second}, nil, nil, 512, 1, 3 * time.Second},
		{"long timeout declined (slot-holding DoS)", Server{Timeout: 3 * time.Second}, []string{"timeout", "255", "blksize", "1024"}, options("blksize", "1024"), 1024, 1, 3 * time.Second},
		{"case-insensitive, client spelling kept", Server{}, []string{"BLKSIZE", "1024", "TSize", "0"}, options("BLKSIZE", "1024", "TSize", "123456"), 1024, 1, DefaultTimeout},
		{"repeated option: first wins", Server{}, []string{"blksize", "1024", "blksize", "2048"}, options("blksize", "1024"), 1024, 1, DefaultTimeout},
		{"unknown ignored among known", Server{}, []string{"foo", "bar", "windowsize", "8"}, options("windowsize", "8"), 512, 8, DefaultTimeout},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.srv
			s.Root = dir
			tr, perr := s.prepare(root, rrq("f", "octet", tc.opts...))
			if perr != nil {
				t.Fatal(perr)
			}
			defer tr.close()
			if tc.wantOACK == nil {
				if tr.oack != nil {
					t.Fatalf("OACK %v, want none", tr.oack.Options)
				}
			} else if tr.oack == nil || !equalOptions(tr.oack.Options, tc.wantOACK) {
				t.Fatalf("OACK %v, want %v", tr.oack, tc.wantOACK)
			}
			if tr.blksize != tc.wantBlk || tr.window != tc.wantWin || tr.timeout != tc.wantTmo {
				t.Fatalf("blksize %d window %d timeout %v; want %d %d %v", tr.blksize, tr.window, tr.timeout, tc.wantBlk, tc.wantWin, tc.wantTmo)
			}
		})
	}
}

func equalOptions(a, b []Option) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// FuzzRequest feeds arbitrary datagrams to the request handler (parse,
// validation, negotiation, path resolution, open): it never panics, every
// refusal is a well-formed ERROR, and every accepted request stays within
// the server's limits and the root.
func FuzzRequest(f *testing.F) {
	for _, s := range []string{
		"\x00\x01inside\x00octet\x00",
		"\x00\x01/sub/file\x00netascii\x00tsize\x000\x00",
		"\x00\x01inside\x00octet\x00blksize\x0065464\x00windowsize\x0065535\x00timeout\x00255\x00",
		"\x00\x01rel-escape\x00octet\x00",
		"\x00\x01inside\x00OCTET\x00BlkSize\x008\x00x\x00y\x00",
		"\x00\x02inside\x00octet\x00",
		"\x00\x05\x00\x01x\x00",
		"\x00\x01sub/updir/outside/secret\x00octet\x00",
	} {
		f.Add([]byte(s))
	}
	rootDir := escapeTree(f)
	root, err := os.OpenRoot(rootDir)
	if err != nil {
		f.Fatal(err)
	}
	s := &Server{Root: rootDir, MaxBlockSize: 4096, MaxWindowSize: 16}
	f.Fuzz(func(t *testing.T, raw []byte) {
		tr, perr := s.prepare(root, raw)
		if perr != nil {
			if tr != nil {
				t.Fatal("both a transfer and an error")
			}
			if _, err := ParsePacket(perr.Marshal()); err != nil || perr.Code > 8 || perr.Message == "" {
				t.Fatalf("bad error reply %#v: %v", perr, err)
			}
			if strings.Contains(perr.Message, rootDir) {
				t.Fatalf("error %q leaks the root path", perr.Message)
			}
			return
		}
		if tr == nil {
			return
		}
		defer tr.close()
		if tr.blksize < MinBlockSize || tr.blksize > 4096 || tr.window < 1 || tr.window > 16 || tr.timeout <= 0 {
			t.Fatalf("limits broken: blksize %d window %d timeout %v", tr.blksize, tr.window, tr.timeout)
		}
		b, _ := io.ReadAll(io.NewSectionReader(tr.r, 0, tr.size))
		if got := string(FromNetascii(b)); got != "IN" {
			t.Fatalf("served %q", b)
		}
		if tr.oack != nil {
			for _, o := range tr.oack.Options {
				if o.Value == tsizePlaceholder {
					t.Fatal("tsize placeholder leaked into the OACK")
				}
			}
		}
	})
}
