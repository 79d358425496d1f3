package kubetest

import "syscall"

// sysProcAttr puts a child in its own process group (so that signals meant
// for the test's group, such as ^C, reach it only through Stop) and asks the
// kernel to SIGKILL it when the test binary dies.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
