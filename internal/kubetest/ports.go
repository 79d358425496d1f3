package kubetest

import (
	"fmt"
	"net"
	"sync"
)

// portPicker returns n distinct TCP ports on 127.0.0.1 that were free a
// moment ago.
type portPicker func(n int) ([]int, error)

// handedOut remembers every port that freePorts has returned in this process,
// so that clusters started at once by one test binary never share a port.
// Other processes can still take a port between its pick and its bind; the
// start detects that and retries on new ports.
var handedOut struct {
	mu    sync.Mutex
	ports map[int]bool
}

// maxPickTries bounds how many listeners freePorts opens for one call.
const maxPickTries = 64

// freePorts asks the kernel for ephemeral ports by listening on
// 127.0.0.1:0, holding all listeners until n distinct new ports are found.
func freePorts(n int) ([]int, error) {
	handedOut.mu.Lock()
	defer handedOut.mu.Unlock()
	if handedOut.ports == nil {
		handedOut.ports = make(map[int]bool)
	}
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	var ports []int
	for try := 0; len(ports) < n; try++ {
		if try == maxPickTries {
			return nil, fmt.Errorf("pick %d free ports: only %d found in %d tries", n, len(ports), try)
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("pick a free port: %w", err)
		}
		listeners = append(listeners, l)
		port := l.Addr().(*net.TCPAddr).Port
		if handedOut.ports[port] {
			continue
		}
		handedOut.ports[port] = true
		ports = append(ports, port)
	}
	return ports, nil
}
