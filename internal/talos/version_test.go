package talos

import (
	"strings"
	"testing"
)

func TestContract(t *testing.T) {
	tests := []struct {
		version, want, err string
	}{
		{"v1.11.5", "v1.11", ""},
		{"v1.8.0", "v1.8", ""},
		{"1.10.3", "v1.10", ""},
		{"v1.7.6", "", "older than the oldest supported v1.8"},
		{"v1.12.7", "v1.12", ""},
		{"v1.13.9", "v1.13", ""},
		{"v1.14.0", "", "newer than this dodai supports"},
		{"v2.0.0", "", "newer than this dodai supports"},
		{"v0.14.0", "", "older than"},
		{"", "", "did not report"},
		{"latest", "", "not a version"},
	}
	for _, tt := range tests {
		c, err := Contract(tt.version)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: %v", tt.version, err)
			}
			continue
		}
		if err != nil || c.String() != tt.want {
			t.Errorf("%q: %v %v", tt.version, c, err)
		}
	}
	if !SameMinor("v1.11.5", "v1.11.0") || SameMinor("v1.11.5", "v1.10.5") || SameMinor("x", "x") {
		t.Error("SameMinor")
	}
}
