//go:build unix && !linux

package kubetest

import "syscall"

// sysProcAttr puts a child in its own process group. There is no
// parent-death signal outside Linux: a child of a killed test binary
// outlives it.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
