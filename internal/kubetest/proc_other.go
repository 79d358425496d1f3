//go:build !unix

package kubetest

import (
	"os"
	"syscall"
)

// sysProcAttr has nothing to set outside unix.
func sysProcAttr() *syscall.SysProcAttr { return nil }

// terminateGroup kills p: there are no process groups or SIGTERM here.
func terminateGroup(p *os.Process) error { return p.Kill() }

// killGroup kills p.
func killGroup(p *os.Process) error { return p.Kill() }
