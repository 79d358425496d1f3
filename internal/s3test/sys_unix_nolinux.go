//go:build unix && !linux

package s3test

import "syscall"

// sysProcAttr puts the server in its own process group; without Linux's
// parent-death signal, a killed test binary can leave it running.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
