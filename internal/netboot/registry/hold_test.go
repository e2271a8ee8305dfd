package registry

import (
	"net/netip"
	"testing"

	"github.com/dodai-dev/dodai/internal/state"
)

// An in-cluster replica's offer is held: the record changes, OnChange is
// not told; the replica's next observation of the machine passes the held
// change on even when it changes nothing itself; a record another replica
// wrote (Merge) drops the hold.
func TestHold(t *testing.T) {
	var told []state.Machine
	r, err := New(Options{Known: known(mac, "cp1"), OnChange: func(m state.Machine) { told = append(told, m) }})
	if err != nil {
		t.Fatal(err)
	}
	m, changed := r.Hold(mac, FromDHCP, netip.Addr{}, "amd64", StageDHCP)
	if !changed || m.Stage != string(StageDHCP) || m.Arch != "amd64" || len(told) != 0 {
		t.Fatalf("hold: %+v changed=%v, OnChange told %d times", m, changed, len(told))
	}
	if got, ok := r.Get(mac); !ok || got.Stage != string(StageDHCP) {
		t.Fatalf("held record not in the registry: %+v", got)
	}
	// The same offer again: nothing new to hold.
	if _, changed := r.Hold(mac, FromDHCP, netip.Addr{}, "amd64", StageDHCP); changed {
		t.Error("a repeated offer reported a change")
	}

	// This replica ACKs: the ACK's change and the held one go out once.
	ip := netip.MustParseAddr("10.0.0.5")
	r.Observe(mac, FromDHCP, ip, "amd64", StageDHCP)
	if len(told) != 1 || told[0].IP != ip.String() || told[0].Stage != string(StageDHCP) {
		t.Fatalf("after the ACK OnChange got %+v, want one record with %s", told, ip)
	}
	// An observation that changes nothing and holds nothing: silent.
	r.Observe(mac, FromDHCP, ip, "amd64", StageDHCP)
	if len(told) != 1 {
		t.Fatalf("an unchanged observation told OnChange: %+v", told)
	}

	// A held change with no change of the next observation: still passed on.
	m2 := mac
	m2[5]++
	r.Hold(m2, FromDHCP, netip.Addr{}, "amd64", StageDHCP)
	r.Observe(m2, FromDHCP, netip.Addr{}, "amd64", StageDHCP)
	if len(told) != 2 || told[1].MAC != m2.String() {
		t.Fatalf("the held record of %s was not passed on by the next observation: %+v", m2, told)
	}

	// Another replica recorded the machine: the hold is dropped.
	m3 := mac
	m3[5] += 2
	r.Hold(m3, FromDHCP, netip.Addr{}, "amd64", StageDHCP)
	other := state.Machine{MAC: m3.String(), IP: "10.0.0.7", Arch: "amd64", Stage: string(StageDHCP)}
	if _, changed := r.Merge(other); !changed {
		t.Error("the other replica's address did not merge")
	}
	r.Observe(m3, FromHTTP, netip.Addr{}, "", "")
	if len(told) != 2 {
		t.Fatalf("a hold survived the other replica's record: %+v", told[2:])
	}
	// SetInstalled clears it too (and tells, as always).
	r.Hold(mac, FromDHCP, netip.Addr{}, "amd64", StageIPXE)
	r.SetInstalled(mac, true)
	r.Observe(mac, FromHTTP, netip.Addr{}, "", "")
	if len(told) != 3 || told[2].Stage != string(StageInstalled) {
		t.Fatalf("after SetInstalled: %+v", told[2:])
	}
}
