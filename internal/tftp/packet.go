package tftp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// Opcodes (RFC 1350 §5, RFC 2347 for OACK).
const (
	OpRRQ   uint16 = 1
	OpWRQ   uint16 = 2
	OpDATA  uint16 = 3
	OpACK   uint16 = 4
	OpERROR uint16 = 5
	OpOACK  uint16 = 6
)

// Error codes (RFC 1350 appendix, RFC 2347 for code 8).
const (
	ErrCodeNotDefined        uint16 = 0
	ErrCodeFileNotFound      uint16 = 1
	ErrCodeAccessViolation   uint16 = 2
	ErrCodeDiskFull          uint16 = 3
	ErrCodeIllegalOperation  uint16 = 4
	ErrCodeUnknownTID        uint16 = 5
	ErrCodeFileExists        uint16 = 6
	ErrCodeNoSuchUser        uint16 = 7
	ErrCodeOptionNegotiation uint16 = 8
)

// Limits of the wire format.
const (
	// MaxFilenameLen is the longest file name dodai accepts in a request.
	// It is a policy limit (PXE file names are short; Linux NAME_MAX is 255),
	// not a protocol one.
	MaxFilenameLen = 255
	// MinBlockSize and MaxBlockSize are the blksize bounds of RFC 2348.
	MinBlockSize = 8
	MaxBlockSize = 65464
	// DefaultBlockSize is RFC 1350's block size.
	DefaultBlockSize = 512
	// MaxWindowSize is the windowsize upper bound of RFC 7440.
	MaxWindowSize = 65535
)

// Packet is one decoded TFTP packet: *Request, *Data, *Ack, *Error or *OACK.
type Packet interface {
	// Marshal returns the packet's wire encoding.
	Marshal() []byte
}

// Option is one RFC 2347 option, in the order it appeared on the wire.
// Names are case-insensitive on the wire; Name keeps the client's spelling.
type Option struct {
	Name, Value string
}

// Request is an RRQ or WRQ.
type Request struct {
	Op       uint16 // OpRRQ or OpWRQ
	Filename string
	Mode     string // as sent; compare case-insensitively
	Options  []Option
}

// Data is a DATA packet.
type Data struct {
	Block   uint16
	Payload []byte
}

// Ack is an ACK packet.
type Ack struct {
	Block uint16
}

// Error is an ERROR packet.
type Error struct {
	Code    uint16
	Message string
}

// OACK is an option acknowledgement (RFC 2347).
type OACK struct {
	Options []Option
}

// ErrMalformed is wrapped by every ParsePacket error.
var ErrMalformed = errors.New("malformed TFTP packet")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// ParsePacket decodes one datagram. It never panics and copies nothing it
// does not need: Data.Payload aliases b.
//
// Leniency (documented in docs/tftp.md): trailing NUL bytes after the last
// complete option are ignored, because some PXE ROMs pad requests; an ERROR
// packet whose message lacks the terminating NUL is accepted.
func ParsePacket(b []byte) (Packet, error) {
	if len(b) < 2 {
		return nil, malformed("%d bytes, shorter than an opcode", len(b))
	}
	op := binary.BigEndian.Uint16(b)
	body := b[2:]
	switch op {
	case OpRRQ, OpWRQ:
		r, err := parseRequest(op, body)
		if err != nil {
			return nil, err
		}
		return r, nil
	case OpDATA:
		if len(body) < 2 {
			return nil, malformed("DATA without a block number")
		}
		if len(body)-2 > MaxBlockSize {
			return nil, malformed("DATA payload of %d bytes exceeds %d", len(body)-2, MaxBlockSize)
		}
		return &Data{Block: binary.BigEndian.Uint16(body), Payload: body[2:]}, nil
	case OpACK:
		if len(body) != 2 {
			return nil, malformed("ACK of %d bytes, want 4", len(b))
		}
		return &Ack{Block: binary.BigEndian.Uint16(body)}, nil
	case OpERROR:
		if len(body) < 2 {
			return nil, malformed("ERROR without a code")
		}
		msg := body[2:]
		if i := bytes.IndexByte(msg, 0); i >= 0 {
			if !allZero(msg[i+1:]) {
				return nil, malformed("ERROR has data after the message")
			}
			msg = msg[:i]
		}
		return &Error{Code: binary.BigEndian.Uint16(body), Message: string(msg)}, nil
	case OpOACK:
		opts, err := parseOptions(body)
		if err != nil {
			return nil, err
		}
		return &OACK{Options: opts}, nil
	default:
		return nil, malformed("unknown opcode %d", op)
	}
}

func parseRequest(op uint16, body []byte) (*Request, error) {
	name, rest, ok := cutString(body)
	if !ok {
		return nil, malformed("request file name is not NUL-terminated")
	}
	if name == "" {
		return nil, malformed("request has an empty file name")
	}
	if len(name) > MaxFilenameLen {
		return nil, malformed("file name of %d bytes exceeds %d", len(name), MaxFilenameLen)
	}
	mode, rest, ok := cutString(rest)
	if !ok {
		return nil, malformed("request for %q has no NUL-terminated mode", name)
	}
	if mode == "" {
		return nil, malformed("request for %q has an empty mode", name)
	}
	opts, err := parseOptions(rest)
	if err != nil {
		return nil, fmt.Errorf("request for %q: %w", name, err)
	}
	return &Request{Op: op, Filename: name, Mode: mode, Options: opts}, nil
}

// parseOptions decodes NUL-terminated name/value pairs.
func parseOptions(b []byte) ([]Option, error) {
	var opts []Option
	for len(b) > 0 {
		if allZero(b) {
			break // padding
		}
		name, rest, ok := cutString(b)
		if !ok {
			return nil, malformed("option name is not NUL-terminated")
		}
		if name == "" {
			return nil, malformed("empty option name")
		}
		value, rest, ok := cutString(rest)
		if !ok {
			return nil, malformed("option %q has no NUL-terminated value", name)
		}
		if value == "" {
			return nil, malformed("option %q has an empty value", name)
		}
		opts = append(opts, Option{Name: name, Value: value})
		b = rest
	}
	return opts, nil
}

func cutString(b []byte) (s string, rest []byte, ok bool) {
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return "", nil, false
	}
	return string(b[:i]), b[i+1:], true
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// Marshal encodes the request.
func (r *Request) Marshal() []byte {
	b := binary.BigEndian.AppendUint16(nil, r.Op)
	b = appendString(b, r.Filename)
	b = appendString(b, r.Mode)
	return appendOptions(b, r.Options)
}

// Option returns the value of the first option named name (case-insensitive).
func (r *Request) Option(name string) (string, bool) {
	for _, o := range r.Options {
		if strings.EqualFold(o.Name, name) {
			return o.Value, true
		}
	}
	return "", false
}

// Marshal encodes the DATA packet.
func (d *Data) Marshal() []byte {
	b := make([]byte, 4, 4+len(d.Payload))
	binary.BigEndian.PutUint16(b, OpDATA)
	binary.BigEndian.PutUint16(b[2:], d.Block)
	return append(b, d.Payload...)
}

// Marshal encodes the ACK packet.
func (a *Ack) Marshal() []byte {
	b := make([]byte, 4)
	binary.BigEndian.PutUint16(b, OpACK)
	binary.BigEndian.PutUint16(b[2:], a.Block)
	return b
}

// Marshal encodes the ERROR packet. A NUL inside Message would end it early
// on the wire, so the message is cut there.
func (e *Error) Marshal() []byte {
	b := make([]byte, 4, 5+len(e.Message))
	binary.BigEndian.PutUint16(b, OpERROR)
	binary.BigEndian.PutUint16(b[2:], e.Code)
	msg, _, _ := strings.Cut(e.Message, "\x00")
	return appendString(b, msg)
}

// Error makes *Error usable as a Go error (a peer's or our own ERROR packet).
func (e *Error) Error() string {
	return fmt.Sprintf("TFTP error %d (%s): %s", e.Code, errorCodeName(e.Code), e.Message)
}

// Marshal encodes the OACK packet.
func (o *OACK) Marshal() []byte {
	b := binary.BigEndian.AppendUint16(nil, OpOACK)
	return appendOptions(b, o.Options)
}

func appendString(b []byte, s string) []byte {
	return append(append(b, s...), 0)
}

func appendOptions(b []byte, opts []Option) []byte {
	for _, o := range opts {
		b = appendString(b, o.Name)
		b = appendString(b, o.Value)
	}
	return b
}

func errorCodeName(c uint16) string {
	switch c {
	case ErrCodeNotDefined:
		return "not defined"
	case ErrCodeFileNotFound:
		return "file not found"
	case ErrCodeAccessViolation:
		return "access violation"
	case ErrCodeDiskFull:
		return "disk full"
	case ErrCodeIllegalOperation:
		return "illegal TFTP operation"
	case ErrCodeUnknownTID:
		return "unknown transfer ID"
	case ErrCodeFileExists:
		return "file already exists"
	case ErrCodeNoSuchUser:
		return "no such user"
	case ErrCodeOptionNegotiation:
		return "option negotiation failed"
	default:
		return "unknown code"
	}
}
