package tftp

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// tsizePlaceholder marks the tsize OACK value until the file size is known.
const tsizePlaceholder = "\x00size"

// negotiated is the outcome of RFC 2347 option negotiation.
type negotiated struct {
	blksize int
	window  int
	timeout time.Duration // 0: server default
	oack    []Option      // accepted options, in the client's order and spelling
}

// negotiate applies the client's options to the server's limits.
//
//   - blksize (RFC 2348): 8..65464; larger requests are answered with the
//     server's cap (MaxBlockSize), as the RFC allows.
//   - windowsize (RFC 7440): 1..65535, answered with at most MaxWindowSize.
//   - timeout (RFC 2349): 1..255 seconds, echoed as is.
//   - tsize (RFC 2349): any decimal; the OACK carries the file's size.
//
// A known option with a malformed or out-of-range value is refused with
// ERROR 8, naming it; unknown options are ignored (not in the OACK); a
// repeated option counts once (the first).
// MaxNegotiatedTimeout is the longest per-packet timeout a client may
// negotiate (RFC 2349 "timeout"); larger requests are declined.
const MaxNegotiatedTimeout = 10 * time.Second

func (s *Server) negotiate(req *Request) (negotiated, *Error) {
	n := negotiated{blksize: DefaultBlockSize, window: 1}
	seen := map[string]bool{}
	for _, o := range req.Options {
		name := strings.ToLower(o.Name)
		if seen[name] {
			continue
		}
		seen[name] = true
		switch name {
		case "blksize":
			v, ok := parseDecimal(o.Value)
			if !ok || v < MinBlockSize {
				return n, optionError(o, fmt.Sprintf("an integer %d..%d", MinBlockSize, MaxBlockSize))
			}
			n.blksize = int(min(v, int64(s.maxBlockSize())))
			n.oack = append(n.oack, Option{Name: o.Name, Value: strconv.Itoa(n.blksize)})
		case "windowsize":
			v, ok := parseDecimal(o.Value)
			if !ok || v < 1 || v > MaxWindowSize {
				return n, optionError(o, fmt.Sprintf("an integer 1..%d", MaxWindowSize))
			}
			n.window = int(min(v, int64(s.maxWindowSize())))
			n.oack = append(n.oack, Option{Name: o.Name, Value: strconv.Itoa(n.window)})
		case "timeout":
			v, ok := parseDecimal(o.Value)
			if !ok || v < 1 || v > 255 {
				return n, optionError(o, "an integer 1..255 (seconds)")
			}
			if time.Duration(v)*time.Second > MaxNegotiatedTimeout {
				// RFC 2349 lets the server decline the option by leaving it out
				// of the OACK. Accepting 255 s would let a client that never
				// ACKs hold a transfer slot for 4 × 255 s (17 min; see
				// newBackoff).
				continue
			}
			n.timeout = time.Duration(v) * time.Second
			n.oack = append(n.oack, Option{Name: o.Name, Value: strconv.FormatInt(v, 10)})
		case "tsize":
			if _, ok := parseDecimal(o.Value); !ok {
				return n, optionError(o, "a non-negative integer (0 in a read request)")
			}
			n.oack = append(n.oack, Option{Name: o.Name, Value: tsizePlaceholder})
		}
	}
	return n, nil
}

func optionError(o Option, want string) *Error {
	return &Error{Code: ErrCodeOptionNegotiation, Message: fmt.Sprintf("option %s=%q: want %s", o.Name, o.Value, want)}
}

// parseDecimal accepts 1 to 18 ASCII digits (no sign, no spaces).
func parseDecimal(s string) (int64, bool) {
	if len(s) == 0 || len(s) > 18 {
		return 0, false
	}
	var v int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int64(c-'0')
	}
	return v, true
}
