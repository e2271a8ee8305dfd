package dhcp

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/dodai-dev/dodai/internal/macaddr"
)

func journals(t *testing.T, path string) []string {
	t.Helper()
	m, err := filepath.Glob(path + ".journal*")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestJournalReplayAndTornLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "leases.json")
	cfg := dhcpConfig(t, path, nil, nil)
	a := net.HardwareAddr{2, 0, 0, 0, 0, 0xa}
	ipA, _ := handshake(t, cfg, a)
	// Killed mid-write: a torn last journal line is ignored.
	js := journals(t, path)
	if len(js) != 1 || !strings.HasSuffix(js[0], ".journal.1") {
		t.Fatalf("journals %v", js)
	}
	f, err := os.OpenFile(js[0], os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"mac":"02:00:00:00:00:0b","ip":"10.99`)
	f.Close()
	cfg2 := dhcpConfig(t, path, nil, nil)
	if le, ok := cfg2.Leases.Lookup(macaddr.MAC(a)); !ok || le.IP != ipA {
		t.Fatalf("lease lost: %v %v", le, ok)
	}
	// Opening folded journal 1 into the snapshot and started journal 2.
	if js := journals(t, path); len(js) != 1 || !strings.HasSuffix(js[0], ".journal.2") {
		t.Fatalf("journals after open %v", js)
	}
	var snap snapshotFile
	if b, err := os.ReadFile(path); err != nil || json.Unmarshal(b, &snap) != nil || snap.Journal != 1 || len(snap.Leases) != 1 || snap.Leases[0].IP != ipA {
		t.Fatalf("snapshot %+v %v", snap, err)
	}
	if err := cfg2.Leases.(*Leases).Close(); err != nil {
		t.Fatal(err)
	}
	// A corrupt line in the middle is an error naming the file and line,
	// and every file stays as it was (nothing folded, nothing removed).
	os.WriteFile(path+".journal.7", []byte("garbage\n{}\n"), 0o600)
	before := journals(t, path)
	snapBefore, _ := os.ReadFile(path)
	_, err = NewLeases(LeaseOptions{Path: path, Start: netip.MustParseAddr("10.99.0.100"), End: netip.MustParseAddr("10.99.0.102")})
	if err == nil || !strings.Contains(err.Error(), "leases.json.journal.7 line 1") {
		t.Fatalf("corrupt journal: %v", err)
	}
	if after := journals(t, path); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("journals changed by a failed open: %v, were %v", after, before)
	}
	if b, _ := os.ReadFile(path); string(b) != string(snapBefore) {
		t.Fatalf("snapshot changed by a failed open:\n%s\nwas\n%s", b, snapBefore)
	}
}

// TestJournalLegacyFiles: the snapshot and single journal of earlier
// versions are read, folded and replaced.
func TestJournalLegacyFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "leases.json")
	exp := time.Now().Add(time.Hour).UTC().Format(time.RFC3339Nano)
	os.WriteFile(path, []byte(`{"leases":[{"mac":"02:00:00:00:00:01","ip":"10.99.0.100","expiry":"`+exp+`"},{"mac":"","ip":"10.99.0.101","expiry":"`+exp+`","declined":true}]}`), 0o600)
	os.WriteFile(path+".journal", []byte(`{"mac":"02:00:00:00:00:02","ip":"10.99.0.102","expiry":"`+exp+`"}`+"\n"), 0o600)
	l, err := NewLeases(LeaseOptions{Path: path, Start: netip.MustParseAddr("10.99.0.100"), End: netip.MustParseAddr("10.99.0.110")})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for mac, ip := range map[string]string{"02:00:00:00:00:01": "10.99.0.100", "02:00:00:00:00:02": "10.99.0.102"} {
		if le, ok := l.Lookup(macaddr.MustParse(mac)); !ok || le.IP.String() != ip {
			t.Fatalf("%s: %+v %v", mac, le, ok)
		}
	}
	if ip, _ := l.Offer(macaddr.MAC{2, 0, 0, 0, 0, 9}, netip.MustParseAddr("10.99.0.101")); ip.String() == "10.99.0.101" {
		t.Fatal("declined address offered")
	}
	if _, err := os.Stat(path + ".journal"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("legacy journal kept: %v", err)
	}
}

// TestJournalCompactionWindow: a crash after compaction switched journals
// but before the snapshot was written leaves the old snapshot and two
// journals; all of them are replayed.
func TestJournalCompactionWindow(t *testing.T) {
	path := filepath.Join(t.TempDir(), "leases.json")
	opts := LeaseOptions{Path: path, Start: netip.MustParseAddr("10.99.0.100"), End: netip.MustParseAddr("10.99.0.110")}
	l, err := NewLeases(opts)
	if err != nil {
		t.Fatal(err)
	}
	a, b := macaddr.MAC{2, 0, 0, 0, 0, 0xa}, macaddr.MAC{2, 0, 0, 0, 0, 0xb}
	if _, err := l.Bind(a, netip.MustParseAddr("10.99.0.100"), time.Hour); err != nil {
		t.Fatal(err)
	}
	snapBefore, _ := os.ReadFile(path)
	if err := l.Compact(); err != nil {
		t.Fatal(err)
	}
	if js := journals(t, path); len(js) != 1 || !strings.HasSuffix(js[0], ".journal.2") {
		t.Fatalf("after compaction %v", js)
	}
	if _, err := l.Bind(b, netip.MustParseAddr("10.99.0.101"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	// Simulate the crash window: the old snapshot and journal 1 back.
	os.WriteFile(path, snapBefore, 0o600)
	os.WriteFile(path+".journal.1", []byte(`{"mac":"02:00:00:00:00:0a","ip":"10.99.0.100","expiry":"`+time.Now().Add(time.Hour).UTC().Format(time.RFC3339Nano)+`"}`+"\n"), 0o600)
	l2, err := NewLeases(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	for _, m := range []macaddr.MAC{a, b} {
		if _, ok := l2.Lookup(m); !ok {
			t.Fatalf("%s lost", m)
		}
	}
}

// TestGroupCommit: with DurableSync every ACK waits for an fdatasync that
// covers it, and concurrent binds share syncs.
func TestGroupCommit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "leases.json")
	l, err := NewLeases(LeaseOptions{Path: path, Durability: DurableSync, Start: netip.MustParseAddr("10.99.0.100"), End: netip.MustParseAddr("10.99.3.255")})
	if err != nil {
		t.Fatal(err)
	}
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n)
	start := l.Syncs()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mac := macaddr.MAC{2, 0, 0, 0, byte(i >> 8), byte(i)}
			ip := netip.AddrFrom4([4]byte{10, 99, 1, byte(i + 1)})
			d, err := l.Bind(mac, ip, time.Hour)
			if err == nil {
				if d == nil {
					err = errors.New("no Durable in sync mode")
				} else {
					err = d.Wait()
				}
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	syncs := l.Syncs() - start
	t.Logf("%d binds, %d fdatasyncs", n, syncs)
	if syncs < 1 || syncs > n {
		t.Fatalf("%d fdatasyncs for %d binds", syncs, n)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l2, err := NewLeases(LeaseOptions{Path: path, Start: netip.MustParseAddr("10.99.0.100"), End: netip.MustParseAddr("10.99.3.255")})
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	if got := len(l2.All()); got != n {
		t.Fatalf("%d leases after restart, want %d", got, n)
	}
}

// TestPersistFailureNoAck: when the lease cannot be recorded the REQUEST
// gets no answer (the client retries), neither an ACK nor a NAK.
func TestPersistFailureNoAck(t *testing.T) {
	path := filepath.Join(t.TempDir(), "leases.json")
	cfg := dhcpConfig(t, path, nil, nil)
	l := cfg.Leases.(*Leases)
	// Swap the journal for a read-only handle: every write fails.
	ro, err := os.Open(l.j.f.Name())
	if err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	l.j.f.Close()
	l.j.f = ro
	l.mu.Unlock()
	d := request(t, dhcpv4.MessageTypeDiscover)
	off, _ := cfg.Handle(d, PortDHCP)
	r := request(t, dhcpv4.MessageTypeRequest, reqIP(off.YourIPAddr.String()), serverID(serverIP.String()))
	reply, ev := cfg.Handle(r, PortDHCP)
	if reply != nil || !strings.Contains(ev.Ignored, ErrPersist.Error()) {
		t.Fatalf("reply %v, ignored %q", reply, ev.Ignored)
	}
}

func TestRecordRoundTrip(t *testing.T) {
	for _, le := range []Lease{
		{MAC: macaddr.MAC{2, 0, 0, 0, 0, 1}, IP: netip.MustParseAddr("10.0.0.1"), Expiry: time.Unix(1_700_000_000, 123456789)},
		{IP: netip.MustParseAddr("10.0.0.2"), Expiry: time.Unix(1_700_000_000, 0), Declined: true},
	} {
		line := appendRecord(nil, le)
		var back Lease
		if err := json.Unmarshal(line, &back); err != nil || back.MAC != le.MAC || back.IP != le.IP || !back.Expiry.Equal(le.Expiry) || back.Declined != le.Declined {
			t.Fatalf("%s → %+v %v", line, back, err)
		}
	}
}

// ---- crash durability: a helper process binds leases as fast as it can
// and prints each one once its ACK could leave; the test SIGKILLs it in
// the middle and checks that a restarted allocator knows every printed
// lease and never gives one of those addresses to another client.

const envCrashHelper = "DODAI_DHCP_CRASH_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(envCrashHelper); mode != "" {
		os.Exit(crashHelper(mode, os.Args[len(os.Args)-1]))
	}
	os.Exit(m.Run())
}

func crashHelper(mode, path string) int {
	dur, _ := ParseDurability(mode)
	l, err := NewLeases(LeaseOptions{Path: path, Durability: dur, Start: netip.MustParseAddr("10.99.0.1"), End: netip.MustParseAddr("10.99.255.254")})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	w := bufio.NewWriter(os.Stdout)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := range 8 { // concurrent clients, so sync mode groups ACKs
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				mac := macaddr.MAC{2, byte(g)}
				binary.BigEndian.PutUint32(mac[2:], uint32(i))
				ip, ok := l.Offer(mac, netip.Addr{})
				if !ok {
					return
				}
				d, err := l.Bind(mac, ip, time.Hour)
				if err == nil {
					err = d.Wait()
				}
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(1)
				}
				mu.Lock() // the "ACK": only now may the client use ip
				fmt.Fprintf(w, "%s %s\n", mac, ip)
				w.Flush()
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return 0
}

func TestCrashDurability(t *testing.T) {
	if testing.Short() {
		t.Skip("kills a helper process mid-load: full tier only")
	}
	for _, mode := range []string{"write", "sync"} {
		t.Run(mode, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "leases.json")
			self, _ := os.Executable()
			for round := range 3 {
				cmd := exec.Command(self, "-test.run=^$", path)
				cmd.Env = append(os.Environ(), envCrashHelper+"="+mode)
				out, err := cmd.StdoutPipe()
				if err != nil {
					t.Fatal(err)
				}
				var stderr strings.Builder
				cmd.Stderr = &stderr
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				acked := map[string]string{} // ip → mac
				sc := bufio.NewScanner(out)
				killAt := 300 + round*500
				for sc.Scan() {
					f := strings.Fields(sc.Text())
					if len(f) == 2 {
						acked[f[1]] = f[0]
					}
					if len(acked) == killAt {
						cmd.Process.Signal(syscall.SIGKILL)
					}
				}
				cmd.Wait()
				if len(acked) < killAt {
					t.Fatalf("helper died early after %d leases: %s", len(acked), stderr.String())
				}
				l, err := NewLeases(LeaseOptions{Path: path, Start: netip.MustParseAddr("10.99.0.1"), End: netip.MustParseAddr("10.99.255.254")})
				if err != nil {
					t.Fatal(err)
				}
				for ip, mac := range acked {
					le, ok := l.Lookup(macaddr.MustParse(mac))
					if !ok || le.IP.String() != ip {
						t.Fatalf("round %d: ACKed lease %s → %s lost after SIGKILL (%+v %v)", round, mac, ip, le, ok)
					}
					// Another client asking for exactly that address does not get it.
					if got, ok := l.Offer(macaddr.MAC{0x0a, 0, 0, 0, 0, 1}, netip.MustParseAddr(ip)); ok && got.String() == ip {
						t.Fatalf("round %d: %s offered to another client after SIGKILL", round, ip)
					}
				}
				t.Logf("round %d: %d ACKed leases before SIGKILL, all kept", round, len(acked))
				l.Close()
			}
		})
	}
}
