package v1alpha1

import (
	"net/netip"
	"strings"
)

// MachineName is the object name of the Machine first seen with mac (a
// canonical MAC): the MAC with dashes, e.g. 52-54-00-12-34-56.
func MachineName(mac string) string { return strings.ReplaceAll(mac, ":", "-") }

// DHCPLeaseName is the object name of the DHCPLease of an address: the
// address itself, e.g. 10.99.0.100 (a valid object name).
func DHCPLeaseName(ip netip.Addr) string { return ip.String() }
