package power

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/dodai-dev/dodai/internal/testutil"
)

// A "BMC" on loopback that answers every IPMI packet with reply(packet):
// the client must end with a clear error within its bound, never panic.
// (The library drops replies it cannot parse, so most cases end as "no
// valid reply" after its retries.)
func TestIPMIGarbageReplies(t *testing.T) {
	testutil.Slow(t, "waits out the IPMI client's retries (5 s per case)")
	for _, c := range []struct {
		name  string
		reply func(req []byte) []byte
	}{
		{"empty", func([]byte) []byte { return []byte{} }},
		{"one byte", func([]byte) []byte { return []byte{0x06} }},
		{"RMCP header only", func([]byte) []byte { return []byte{0x06, 0x00, 0xff, 0x07} }},
		{"RMCP + short IPMI 2.0 session", func([]byte) []byte { return []byte{0x06, 0x00, 0xff, 0x07, 0x06, 0x11, 0, 0} }},
		{"RMCP + short IPMI 1.5 session", func([]byte) []byte { return []byte{0x06, 0x00, 0xff, 0x07, 0x00, 0, 0} }},
		{"request echoed", func(req []byte) []byte { return req }},
		{"request truncated", func(req []byte) []byte { return req[:len(req)/2] }},
		{"ASF pong with no body", func([]byte) []byte { return []byte{0x06, 0x00, 0xff, 0x06, 0, 0, 0x11, 0xbe, 0x40, 0, 0, 0} }},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close()
			go func() {
				buf := make([]byte, 2048)
				for {
					n, from, err := pc.ReadFrom(buf)
					if err != nil {
						return
					}
					pc.WriteTo(c.reply(append([]byte(nil), buf[:n]...)), from)
				}
			}()
			tg := Target{Node: "n", Protocol: "ipmi", Address: "127.0.0.1", Port: pc.LocalAddr().(*net.UDPAddr).Port, CipherSuite: 3, Username: "admin", Password: "secret"}
			rs := Run(context.Background(), []Target{tg}, Request{Action: Status, Timeout: 8 * time.Second})
			if rs[0].Err == nil {
				t.Fatalf("no error: %+v", rs[0])
			}
			if !strings.Contains(rs[0].Error, "127.0.0.1:") {
				t.Errorf("error does not name the BMC: %s", rs[0].Error)
			}
			if rs[0].Duration > 8*time.Second {
				t.Errorf("took %s", rs[0].Duration)
			}
			t.Logf("%s (%.1fs)", rs[0].Error, rs[0].Seconds)
		})
	}
}
