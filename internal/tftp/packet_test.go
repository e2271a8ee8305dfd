package tftp

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParsePacketValid(t *testing.T) {
	cases := []struct {
		name string
		wire string
		want Packet
	}{
		{"rrq plain", "\x00\x01undionly.kpxe\x00octet\x00", &Request{Op: OpRRQ, Filename: "undionly.kpxe", Mode: "octet"}},
		{"rrq edk2 options", "\x00\x01ipxe.efi\x00octet\x00tsize\x000\x00blksize\x001468\x00windowsize\x004\x00",
			&Request{Op: OpRRQ, Filename: "ipxe.efi", Mode: "octet", Options: options("tsize", "0", "blksize", "1468", "windowsize", "4")}},
		{"rrq padded", "\x00\x01a\x00octet\x00blksize\x00512\x00\x00\x00\x00", &Request{Op: OpRRQ, Filename: "a", Mode: "octet", Options: options("blksize", "512")}},
		{"wrq", "\x00\x02f\x00netascii\x00", &Request{Op: OpWRQ, Filename: "f", Mode: "netascii"}},
		{"data", "\x00\x03\x12\x34hello", &Data{Block: 0x1234, Payload: []byte("hello")}},
		{"data empty", "\x00\x03\xff\xff", &Data{Block: 0xffff, Payload: []byte{}}},
		{"ack", "\x00\x04\x00\x07", &Ack{Block: 7}},
		{"error", "\x00\x05\x00\x08User aborted the transfer\x00", &Error{Code: 8, Message: "User aborted the transfer"}},
		{"error without NUL", "\x00\x05\x00\x01nope", &Error{Code: 1, Message: "nope"}},
		{"oack", "\x00\x06blksize\x001468\x00tsize\x00850528\x00", &OACK{Options: options("blksize", "1468", "tsize", "850528")}},
		{"oack empty", "\x00\x06", &OACK{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParsePacket([]byte(tc.wire))
			if err != nil {
				t.Fatalf("ParsePacket: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %#v, want %#v", got, tc.want)
			}
			again, err := ParsePacket(got.Marshal())
			if err != nil || !reflect.DeepEqual(again, got) {
				t.Fatalf("re-parse of Marshal: %#v, %v", again, err)
			}
		})
	}
}

func TestParsePacketMalformed(t *testing.T) {
	cases := []struct {
		name, wire, wantMsg string
	}{
		{"empty", "", "shorter than an opcode"},
		{"one byte", "\x00", "shorter than an opcode"},
		{"unknown opcode", "\x00\x09xx", "unknown opcode 9"},
		{"opcode zero", "\x00\x00", "unknown opcode 0"},
		{"rrq no NUL", "\x00\x01file", "not NUL-terminated"},
		{"rrq empty name", "\x00\x01\x00octet\x00", "empty file name"},
		{"rrq missing mode", "\x00\x01file\x00", "no NUL-terminated mode"},
		{"rrq mode unterminated", "\x00\x01file\x00octet", "no NUL-terminated mode"},
		{"rrq empty mode", "\x00\x01file\x00\x00", "empty mode"},
		{"option without value", "\x00\x01f\x00octet\x00blksize\x00", `option "blksize" has no NUL-terminated value`},
		{"option with empty value", "\x00\x01f\x00octet\x00blksize\x00\x00tsize\x000\x00", `option "blksize" has an empty value`},
		{"option value unterminated", "\x00\x01f\x00octet\x00blksize\x001468", `option "blksize" has no NUL-terminated value`},
		{"option name unterminated", "\x00\x01f\x00octet\x00blksize", "option name is not NUL-terminated"},
		{"empty option name", "\x00\x01f\x00octet\x00\x001468\x00", "empty option name"},
		{"too long filename", "\x00\x01" + strings.Repeat("a", MaxFilenameLen+1) + "\x00octet\x00", "exceeds 255"},
		{"ack short", "\x00\x04\x00", "ACK of 3 bytes"},
		{"ack long", "\x00\x04\x00\x01\x00", "ACK of 5 bytes"},
		{"data short", "\x00\x03\x00", "without a block number"},
		{"data too big", "\x00\x03\x00\x01" + strings.Repeat("x", MaxBlockSize+1), "exceeds 65464"},
		{"error short", "\x00\x05\x00", "without a code"},
		{"error trailing data", "\x00\x05\x00\x01msg\x00junk", "data after the message"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ParsePacket([]byte(tc.wire))
			if err == nil {
				t.Fatalf("ParsePacket accepted %q as %#v", tc.wire, p)
			}
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("error %v does not wrap ErrMalformed", err)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("error %q does not mention %q", err, tc.wantMsg)
			}
		})
	}
}

func TestErrorMarshalCutsAtNUL(t *testing.T) {
	b := (&Error{Code: 2, Message: "a\x00b"}).Marshal()
	if !bytes.Equal(b, []byte("\x00\x05\x00\x02a\x00")) {
		t.Fatalf("got %q", b)
	}
}

func FuzzParsePacket(f *testing.F) {
	for _, s := range []string{
		"\x00\x01undionly.kpxe\x00octet\x00",
		"\x00\x01ipxe.efi\x00octet\x00tsize\x000\x00blksize\x001468\x00windowsize\x004\x00",
		"\x00\x01a\x00octet\x00blksize\x00512\x00\x00\x00",
		"\x00\x02f\x00netascii\x00",
		"\x00\x03\x00\x01data",
		"\x00\x04\xff\xff",
		"\x00\x05\x00\x08User aborted the transfer\x00",
		"\x00\x06blksize\x001468\x00",
		"\x00\x01f\x00octet\x00blksize\x00",
		"",
		"\x00",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParsePacket(b)
		if err != nil {
			if p != nil {
				t.Fatalf("packet %#v with error %v", p, err)
			}
			return
		}
		wire := p.Marshal()
		again, err := ParsePacket(wire)
		if err != nil {
			t.Fatalf("Marshal of %#v = %q does not parse: %v", p, wire, err)
		}
		if !reflect.DeepEqual(normalize(again), normalize(p)) {
			t.Fatalf("round trip changed %#v into %#v", p, again)
		}
		// Canonical input (no padding, terminated ERROR) round-trips byte for byte.
		if !bytes.Equal(again.Marshal(), wire) {
			t.Fatalf("Marshal not stable: %q vs %q", again.Marshal(), wire)
		}
	})
}

// normalize makes nil and empty payloads/option lists compare equal.
func normalize(p Packet) Packet {
	switch p := p.(type) {
	case *Data:
		if len(p.Payload) == 0 {
			return &Data{Block: p.Block}
		}
	case *OACK:
		if len(p.Options) == 0 {
			return &OACK{}
		}
	case *Request:
		if len(p.Options) == 0 {
			q := *p
			q.Options = nil
			return &q
		}
	}
	return p
}
