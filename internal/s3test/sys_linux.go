package s3test

import "syscall"

// sysProcAttr puts the server in its own process group (so that a terminal's
// ^C reaches it only through Stop) and has the kernel kill it when the test
// binary dies.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
