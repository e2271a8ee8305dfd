// Package macaddr is dodai's one MAC address type. A MAC is decoded once,
// where it enters (a DHCP packet's chaddr, an HTTP query, the cluster file,
// a state file), into a comparable 6-byte value; from then on MACs compare
// with == and key maps without being normalised again, and every text form
// is the canonical one: lowercase hex, colon-separated (52:54:00:12:34:56).
package macaddr

import (
	"fmt"
	"net"
)

// MAC is an EUI-48 (Ethernet) address. The zero value is 00:00:00:00:00:00
// and also means "none" (see IsZero).
type MAC [6]byte

// Parse accepts every 6-byte form net.ParseMAC accepts (colons, hyphens as
// iPXE's ${mac:hexhyp} writes them, Cisco dots; any case) and returns the
// MAC.
func Parse(s string) (MAC, error) {
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 {
		return MAC{}, fmt.Errorf("%q is not a MAC address", s)
	}
	return MAC(hw), nil
}

// MustParse is Parse for constants (tests, built-in examples); it panics
// on bad input.
func MustParse(s string) MAC {
	m, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return m
}

// Canonical parses s and returns its canonical text form.
func Canonical(s string) (string, error) {
	m, err := Parse(s)
	if err != nil {
		return "", err
	}
	return m.String(), nil
}

// FromBytes returns the MAC in b, which must be exactly 6 bytes long (a
// DHCP chaddr with hlen 6).
func FromBytes(b []byte) (MAC, bool) {
	if len(b) != 6 {
		return MAC{}, false
	}
	return MAC(b), true
}

// IsZero reports whether m is the zero MAC (unset).
func (m MAC) IsZero() bool { return m == MAC{} }

const hexDigits = "0123456789abcdef"

// String is the canonical form: lowercase, colon-separated.
func (m MAC) String() string {
	var b [17]byte
	m.appendTo(b[:0])
	return string(b[:])
}

// AppendText appends the canonical form to b (encoding.TextAppender); the
// zero MAC appends nothing, like MarshalText.
func (m MAC) AppendText(b []byte) ([]byte, error) {
	if m.IsZero() {
		return b, nil
	}
	return m.appendTo(b), nil
}

func (m MAC) appendTo(b []byte) []byte {
	for i, x := range m {
		if i > 0 {
			b = append(b, ':')
		}
		b = append(b, hexDigits[x>>4], hexDigits[x&0xf])
	}
	return b
}

// MarshalText writes the canonical form (JSON, YAML and slog use it); the
// zero MAC ("none") is the empty string.
func (m MAC) MarshalText() ([]byte, error) {
	if m.IsZero() {
		return []byte{}, nil
	}
	return m.appendTo(make([]byte, 0, 17)), nil
}

// UnmarshalText parses any form Parse accepts, so files written by hand
// or by older versions decode to the same value; "" is the zero MAC.
func (m *MAC) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*m = MAC{}
		return nil
	}
	v, err := Parse(string(b))
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// HardwareAddr returns m as a net.HardwareAddr (a new slice).
func (m MAC) HardwareAddr() net.HardwareAddr { return append(net.HardwareAddr(nil), m[:]...) }
