package kubetest

import (
	"fmt"
	"net"
	"sync"
)

var (
	portsMu sync.Mutex
	// handedOut remembers every port given out by this test process, so two
	// Envs of one process never receive the same port even if the kernel
	// hands it out again after the probe listener closed.
	handedOut = map[int]bool{}
)

// freePorts returns n distinct free TCP ports on 127.0.0.1. The probe
// listeners are held open together, so the n ports differ; another process
// may still take one before our child binds it, which the starters detect
// (the child dies with "address already in use") and retry with new ports.
func freePorts(n int) ([]int, error) {
	portsMu.Lock()
	defer portsMu.Unlock()
	var (
		ports []int
		lns   []net.Listener
	)
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	for attempts := 0; len(ports) < n; attempts++ {
		if attempts > 100*n {
			return nil, fmt.Errorf("finding %d free ports on 127.0.0.1: too many attempts", n)
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port on 127.0.0.1: %w", err)
		}
		lns = append(lns, l)
		port := l.Addr().(*net.TCPAddr).Port
		if handedOut[port] {
			continue
		}
		handedOut[port] = true
		ports = append(ports, port)
	}
	return ports, nil
}
