package ifsock

import (
	"context"
	"net"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// TestListenUDP binds to loopback (the only interface every test machine
// has) on a free port: the socket reports its device, and a second socket
// on the same port fails instead of sharing it.
func TestListenUDP(t *testing.T) {
	ifname := loopbackName(t)
	c, err := ListenUDP(context.Background(), ifname, 0, true)
	if err != nil {
		t.Skipf("SO_BINDTODEVICE not permitted here: %v", err)
	}
	defer c.Close()
	if d := device(t, c); d != ifname {
		t.Fatalf("Device = %q, want %q", d, ifname)
	}
	// The kernel reports twice the size asked for (its bookkeeping).
	if rb := rcvbuf(t, c); os.Geteuid() == 0 && rb < RecvBuffer {
		t.Errorf("receive buffer %d as root, want >= %d", rb, RecvBuffer)
	}
	port := c.LocalAddr().(*net.UDPAddr).Port
	if c2, err := ListenUDP(context.Background(), ifname, port, false); err == nil {
		c2.Close()
		t.Fatal("a second socket on the same port was accepted")
	}
	plain, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if d := device(t, plain); d != "" {
		t.Fatalf("unbound socket reports device %q", d)
	}
}

func loopbackName(t *testing.T) string {
	t.Helper()
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback != 0 {
			return i.Name
		}
	}
	t.Skip("no loopback interface")
	return ""
}

func rcvbuf(t *testing.T, c *net.UDPConn) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	var gerr error
	rc.Control(func(fd uintptr) { n, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF) })
	if gerr != nil {
		t.Fatal(gerr)
	}
	return n
}

func device(t *testing.T, c *net.UDPConn) string {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var dev string
	var gerr error
	rc.Control(func(fd uintptr) { dev, gerr = unix.GetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE) })
	if gerr != nil {
		t.Fatal(gerr)
	}
	return dev
}
