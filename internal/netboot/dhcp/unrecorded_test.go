package dhcp

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/dodai-dev/dodai/internal/macaddr"
)

// pendingStore is a LeaseStore whose binds finish later with a chosen
// result, as a shared store's write does.
type pendingStore struct {
	LeaseStore
	finish func(error)
}

func (p *pendingStore) Bind(macaddr.MAC, netip.Addr, time.Duration) (*Durable, error) {
	d, finish := NewDurable()
	p.finish = finish
	return d, nil
}

// An ACK whose lease a shared store could not record: NAK when another
// client got the address meanwhile (the client starts over), no reply when
// the store failed (the client repeats its REQUEST).
func TestUnrecordedACK(t *testing.T) {
	for _, tc := range []struct {
		name    string
		err     error
		wantNAK bool
	}{
		{"another replica bound it", fmt.Errorf("10.99.0.100 is %w", ErrAddressTaken), true},
		{"store unreachable", fmt.Errorf("%w: apiserver timeout", ErrPersist), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := &pendingStore{}
			cfg := &Config{Mode: ModeDHCP, ServerIP: serverIP, HTTPURL: "http://10.99.0.1:8080", Leases: store,
				Subnet: netip.MustParsePrefix("10.99.0.0/24"), LeaseTime: time.Hour}
			mac := net.HardwareAddr{0x52, 0x54, 0, 0, 0, 9}
			req := request(t, dhcpv4.MessageTypeRequest, hw(mac), reqIP("10.99.0.100"), serverID(serverIP.String()), vendor("PXEClient"))
			ack, ev := cfg.Handle(req, PortDHCP)
			if ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck || ev.Durable.Ready() {
				t.Fatalf("want an ACK waiting for its lease, got %v (%s)", ack, ev.Ignored)
			}
			store.finish(tc.err)
			err := ev.Durable.Wait()
			reply, ev := cfg.Unrecorded(req, ev, err)
			if !tc.wantNAK {
				if reply != nil || ev.Reply != 0 || ev.Ignored == "" {
					t.Fatalf("store failure: reply %v, event %+v; want none, with the reason", reply, ev)
				}
				return
			}
			if reply == nil || reply.MessageType() != dhcpv4.MessageTypeNak || ev.Reply != dhcpv4.MessageTypeNak {
				t.Fatalf("lost race: reply %v, event %+v; want a NAK", reply, ev)
			}
			if sid := reply.ServerIdentifier(); !sid.Equal(net.IP(serverIP.AsSlice())) {
				t.Errorf("NAK server identifier %v, want %s", sid, serverIP)
			}
			if !reply.IsBroadcast() || !reply.YourIPAddr.IsUnspecified() || reply.BootFileName != "" || reply.TransactionID != req.TransactionID {
				t.Errorf("NAK: broadcast %v, yiaddr %v, file %q, xid %v (request %v)", reply.IsBroadcast(), reply.YourIPAddr, reply.BootFileName, reply.TransactionID, req.TransactionID)
			}
			if ev.Durable != nil {
				t.Error("the NAK's event still carries the failed Durable")
			}
		})
	}
}
