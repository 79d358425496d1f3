package aws

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"

	"github.com/haul-dev/haul/internal/syncbuf"
)

// The tests talk to moto's EC2 emulator (moto_server, moto 5.x), one
// server per test binary: started by the first test that needs it and
// killed by TestMain when the tests are done. Tests share it and keep out
// of each other's way with their own tags and launch templates.

const (
	motoRegion       = "us-east-1"
	motoStartTimeout = 30 * time.Second
	motoPollInterval = 50 * time.Millisecond
)

// motoEnv is the environment moto runs with: unknown instance types are
// rejected (InvalidInstanceType), as EC2 does, instead of accepted.
var motoEnv = []string{"MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION=true"}

var moto struct {
	once sync.Once
	srv  *motoServer
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if moto.srv != nil {
		moto.srv.stop()
	}
	os.Exit(code)
}

// motoEndpoint returns the URL of the shared moto server, starting it on
// first use. It fails the test when moto_server cannot be started.
func motoEndpoint(t *testing.T) string {
	t.Helper()
	moto.once.Do(func() { moto.srv, moto.err = startMoto() })
	if moto.err != nil {
		t.Fatalf("moto EC2 emulator: %v", moto.err)
	}
	return moto.srv.endpoint
}

// lockedBuffer collects output written while the test reads it.
type lockedBuffer = syncbuf.Buffer

type motoServer struct {
	endpoint string
	cmd      *exec.Cmd
	out      *lockedBuffer
	done     chan struct{} // closed when the process has exited
	waitErr  error         // set before done is closed
	stopOnce sync.Once
}

// startMoto starts moto_server on a free loopback port, in its own process
// group, and waits until it answers HTTP.
func startMoto() (*motoServer, error) {
	bin, err := exec.LookPath("moto_server")
	if err != nil {
		return nil, fmt.Errorf("moto_server is not on PATH (install it with `pip install 'moto[server]'`; these tests need it): %w", err)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &motoServer{
		endpoint: "http://127.0.0.1:" + strconv.Itoa(port),
		out:      &lockedBuffer{},
		done:     make(chan struct{}),
	}
	s.cmd = exec.Command(bin, "-H", "127.0.0.1", "-p", strconv.Itoa(port))
	s.cmd.Env = append(os.Environ(), motoEnv...)
	s.cmd.Stdout = s.out
	s.cmd.Stderr = s.out
	// Own process group, so that stop kills the pyenv shim's children too;
	// the parent-death signal takes moto down with a killed test binary.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() {
		s.waitErr = s.cmd.Wait()
		close(s.done)
	}()
	if err := s.waitReady(); err != nil {
		s.stop()
		return nil, fmt.Errorf("%w\nmoto_server output:\n%s", err, s.out.String())
	}
	return s, nil
}

// waitReady polls the server until it answers, it exits, or the deadline
// passes.
func (s *motoServer) waitReady() error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.NewTimer(motoStartTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(motoPollInterval)
	defer tick.Stop()
	for {
		resp, err := client.Get(s.endpoint + "/")
		if err == nil {
			_ = resp.Body.Close()
			return nil
		}
		select {
		case <-s.done:
			return fmt.Errorf("moto_server exited before answering: %v", s.waitErr)
		case <-deadline.C:
			return fmt.Errorf("moto_server did not answer on %s within %s: %v", s.endpoint, motoStartTimeout, err)
		case <-tick.C:
		}
	}
}

// stop kills the server's process group and waits for it to exit.
func (s *motoServer) stop() {
	s.stopOnce.Do(func() {
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			fmt.Fprintf(os.Stderr, "moto_server (pid %d) did not exit after SIGKILL\n", s.cmd.Process.Pid)
		}
	})
}

// freePort asks the kernel for a free loopback TCP port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	return port, nil
}

// staticCredentials is an option for New that signs with moto's dummy
// credentials.
func staticCredentials(o *ec2.Options) {
	o.Credentials = credentials.NewStaticCredentialsProvider("test", "test", "")
}

// motoClient returns a raw EC2 client on the moto server, for setting up
// and checking what the provider did.
func motoClient(t *testing.T) *ec2.Client {
	t.Helper()
	endpoint := motoEndpoint(t)
	return ec2.New(ec2.Options{
		Region:       motoRegion,
		BaseEndpoint: awssdk.String(endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
	})
}

// testContext is the context of one test: bounded, so a hung server fails
// the test instead of the whole binary timing out.
func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

var errNoImage = errors.New("moto knows no AMI")
