package localproc

import "syscall"

// sysProcAttr runs the server as cred in a process group of its own, and
// has the kernel send it deathSig when the caller dies.
func sysProcAttr(cred *syscall.Credential, deathSig syscall.Signal) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred, Setpgid: true, Pdeathsig: deathSig}
}
