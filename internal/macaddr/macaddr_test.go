package macaddr

import (
	"encoding/json"
	"net"
	"testing"
)

func TestParse(t *testing.T) {
	want := MAC{0x52, 0x54, 0x00, 0xab, 0xcd, 0xef}
	for _, s := range []string{"52:54:00:ab:cd:ef", "52:54:00:AB:CD:EF", "52-54-00-ab-cd-ef", "5254.00ab.cdef"} {
		m, err := Parse(s)
		if err != nil || m != want || m.String() != "52:54:00:ab:cd:ef" {
			t.Errorf("Parse(%q) = %v, %v", s, m, err)
		}
	}
	for _, s := range []string{"", "52:54:00:ab:cd", "52:54:00:ab:cd:ef:01:02", "00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01", "zz:54:00:ab:cd:ef", "52:54:00:ab:cd:ef\n"} {
		if m, err := Parse(s); err == nil {
			t.Errorf("Parse(%q) = %v, want an error", s, m)
		}
	}
}

func TestTextForms(t *testing.T) {
	m := MAC{0x02, 0, 0, 0, 0x0a, 0xff}
	b, err := json.Marshal(map[string]MAC{"mac": m})
	if err != nil || string(b) != `{"mac":"02:00:00:00:0a:ff"}` {
		t.Fatalf("json: %s %v", b, err)
	}
	var back struct{ MAC MAC }
	if err := json.Unmarshal([]byte(`{"MAC":"02-00-00-00-0A-FF"}`), &back); err != nil || back.MAC != m {
		t.Fatalf("unmarshal: %v %v", back, err)
	}
	if err := json.Unmarshal([]byte(`{"MAC":"nope"}`), &back); err == nil {
		t.Fatal("bad MAC decoded")
	}
	if got, _ := m.AppendText([]byte("x=")); string(got) != "x=02:00:00:00:0a:ff" {
		t.Fatalf("AppendText: %s", got)
	}
	if m.HardwareAddr().String() != m.String() {
		t.Fatal("HardwareAddr differs")
	}
	if _, ok := FromBytes([]byte{1, 2, 3}); ok {
		t.Fatal("3 bytes accepted")
	}
	if v, ok := FromBytes(net.HardwareAddr{2, 0, 0, 0, 0x0a, 0xff}); !ok || v != m {
		t.Fatal("FromBytes")
	}
	if !(MAC{}).IsZero() || m.IsZero() {
		t.Fatal("IsZero")
	}
	// The zero MAC ("none", e.g. a declined address) is "" in text forms.
	var z struct{ MAC MAC }
	if b, _ := json.Marshal(z); string(b) != `{"MAC":""}` {
		t.Fatalf("zero MAC: %s", b)
	}
	z.MAC = m
	if err := json.Unmarshal([]byte(`{"MAC":""}`), &z); err != nil || !z.MAC.IsZero() {
		t.Fatalf("empty MAC: %v %v", z.MAC, err)
	}
	if c, err := Canonical("52-54-00-AB-CD-EF"); err != nil || c != "52:54:00:ab:cd:ef" {
		t.Fatalf("Canonical: %q %v", c, err)
	}
}

// FuzzParse: any MAC text Parse accepts round-trips through String, and
// String always matches net.HardwareAddr's canonical form.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"52:54:00:ab:cd:ef", "52-54-00-AB-CD-EF", "5254.00ab.cdef", "", "::::::"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := Parse(s)
		if err != nil {
			return
		}
		again, err := Parse(m.String())
		if err != nil || again != m {
			t.Fatalf("%q → %s → %v %v", s, m, again, err)
		}
		if m.String() != net.HardwareAddr(m[:]).String() {
			t.Fatalf("%s vs %s", m, net.HardwareAddr(m[:]))
		}
	})
}
