package tftp

// ToNetascii converts text to RFC 1350 netascii (RFC 764 NVT ASCII): LF
// becomes CR LF and a bare CR becomes CR NUL. The server converts files
// sent in netascii mode; octet mode sends bytes unchanged.
func ToNetascii(b []byte) []byte {
	out := make([]byte, 0, len(b)+len(b)/16)
	for _, c := range b {
		switch c {
		case '\n':
			out = append(out, '\r', '\n')
		case '\r':
			out = append(out, '\r', 0)
		default:
			out = append(out, c)
		}
	}
	return out
}

// FromNetascii is the inverse of ToNetascii (CR LF → LF, CR NUL → CR); a
// CR followed by anything else is kept as is. Tests and clients use it.
func FromNetascii(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c == '\r' && i+1 < len(b) {
			switch b[i+1] {
			case '\n':
				out = append(out, '\n')
				i++
				continue
			case 0:
				out = append(out, '\r')
				i++
				continue
			}
		}
		out = append(out, c)
	}
	return out
}
