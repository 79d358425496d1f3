//go:build !unix

package s3test

import (
	"context"
	"errors"
	"os"
	"syscall"
)

func lockFile(ctx context.Context, path string) (func(), error) {
	return nil, errors.New("s3test: file locks need a unix system")
}

var stopSignal os.Signal = os.Kill

func killGroup(pid int) {}

func sysProcAttr() *syscall.SysProcAttr { return nil }
