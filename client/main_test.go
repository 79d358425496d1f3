package client_test

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/haul-dev/haul/internal/syncbuf"
)

// server and adminToken are the `haul up` this package's tests and examples
// call; TestMain also sets HAUL_SERVER and HAUL_API_TOKEN to them.
var server, adminToken string

// TestMain builds haul and starts `haul up` on a free port with a
// throwaway data directory, as a user would.
func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "haul-client-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "haul")
	build := exec.Command("go", "build", "-o", bin, "github.com/haul-dev/haul/cmd/haul")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build haul:", err)
		return 1
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	addr := l.Addr().String()
	l.Close()
	data := filepath.Join(dir, "data")
	log := &syncBuffer{}
	up := exec.Command(bin, "up", "--listen", addr, "--data", data, "--log-level", "warn")
	up.Stdout, up.Stderr = log, log
	if err := up.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	exited := make(chan struct{})
	go func() { up.Wait(); close(exited) }()
	defer func() {
		up.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			up.Process.Kill()
			<-exited
		}
	}()
	server = "http://" + addr
	for deadline := time.Now().Add(60 * time.Second); ; {
		resp, err := http.Get(server + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		select {
		case <-exited:
			fmt.Fprintf(os.Stderr, "haul up exited:\n%s", log.String())
			return 1
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			fmt.Fprintf(os.Stderr, "haul up not ready after 60s:\n%s", log.String())
			return 1
		}
	}
	b, err := os.ReadFile(filepath.Join(data, "admin-token"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "haul up wrote no admin token:", err)
		return 1
	}
	adminToken = strings.TrimSpace(string(b))
	os.Setenv("HAUL_SERVER", server)
	os.Setenv("HAUL_API_TOKEN", adminToken)
	code := m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "haul up's log:\n%s", log.String())
	}
	return code
}

// syncBuffer collects output written while the test reads it.
type syncBuffer = syncbuf.Buffer
