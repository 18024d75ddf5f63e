//go:build unix && !linux

package localproc

import "syscall"

// sysProcAttr runs the server as cred in a process group of its own.
// Pdeathsig exists on Linux only; deathSig is unused here.
func sysProcAttr(cred *syscall.Credential, _ syscall.Signal) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred, Setpgid: true}
}
