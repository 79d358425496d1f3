//go:build unix

package kubetest

import (
	"os"
	"syscall"
)

// terminateGroup sends SIGTERM to the process group that p leads.
func terminateGroup(p *os.Process) error { return syscall.Kill(-p.Pid, syscall.SIGTERM) }

// killGroup sends SIGKILL to the process group that p leads.
func killGroup(p *os.Process) error { return syscall.Kill(-p.Pid, syscall.SIGKILL) }
