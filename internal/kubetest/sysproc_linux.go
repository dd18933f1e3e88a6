package kubetest

import "syscall"

// sysProcAttr makes the server receive SIGTERM if the test process dies
// without stopping it (for example on a test timeout).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
