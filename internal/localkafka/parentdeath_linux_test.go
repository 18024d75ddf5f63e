package localkafka_test

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/stratadev/strata/internal/localkafka"
)

// envParent makes TestParentProcess the parent that starts a broker.
const envParent = "STRATA_LOCALKAFKA_PARENT"

// TestParentProcess is not a test: run by TestBrokerDiesWithParent with
// envParent set, it starts a broker, prints its PID, address and directory,
// and waits to be killed.
func TestParentProcess(t *testing.T) {
	if os.Getenv(envParent) != "1" {
		t.Skip("the parent process of TestBrokerDiesWithParent")
	}
	srv, err := localkafka.Start(t.Context(), localkafka.Options{})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("broker %d %s %s\n", srv.PID(), srv.URL(), srv.Dir())
	select {}
}

// A broker goes away with the process that started it, even one killed
// with SIGKILL that stops nothing itself.
func TestBrokerDiesWithParent(t *testing.T) {
	t.Parallel()
	skipUnlessLocal(t)
	parent := exec.Command(os.Args[0], "-test.run=^TestParentProcess$")
	parent.Env = append(os.Environ(), envParent+"=1")
	parent.Stderr = os.Stderr
	out, err := parent.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { parent.Process.Kill(); parent.Wait() })
	var pid int
	var url, dir string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if _, err := fmt.Sscanf(sc.Text(), "broker %d %s %s", &pid, &url, &dir); err == nil {
			break
		}
	}
	if pid == 0 {
		t.Fatalf("the parent printed no broker line: %v", sc.Err())
	}
	t.Cleanup(func() {
		syscall.Kill(pid, syscall.SIGKILL) // if the test failed
		if strings.Contains(dir, "localkafka-") {
			os.RemoveAll(dir)
		}
	})
	exited, err := pidfdOpen(pid)
	if err != nil {
		t.Fatalf("pidfd_open(%d): %v", pid, err)
	}
	defer syscall.Close(exited)

	if err := parent.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	parent.Wait()
	if err := waitReadable(exited, 60*time.Second); err != nil {
		t.Fatalf("broker %d after its parent was killed: %v", pid, err)
	}
	l, err := net.Listen("tcp", url)
	if err != nil {
		t.Fatalf("%s still taken after the broker exited: %v", url, err)
	}
	l.Close()
}

// pidfdOpen returns a file descriptor that becomes readable when process
// pid exits.
func pidfdOpen(pid int) (int, error) {
	const sysPidfdOpen = 434 // the same on every architecture
	fd, _, errno := syscall.Syscall(sysPidfdOpen, uintptr(pid), 0, 0)
	if errno != 0 {
		return -1, errno
	}
	return int(fd), nil
}

// waitReadable waits until fd is readable, or fails after timeout.
func waitReadable(fd int, timeout time.Duration) error {
	type pollFd struct {
		fd      int32
		events  int16
		revents int16
	}
	const pollIn = 0x1
	deadline := time.Now().Add(timeout)
	for {
		p := pollFd{fd: int32(fd), events: pollIn}
		ts := syscall.NsecToTimespec(int64(max(time.Until(deadline), 0)))
		n, _, errno := syscall.Syscall6(syscall.SYS_PPOLL, uintptr(unsafe.Pointer(&p)), 1, uintptr(unsafe.Pointer(&ts)), 0, 0, 0)
		switch {
		case errno == syscall.EINTR:
			continue
		case errno != 0:
			return errno
		case n == 0:
			return errors.New("still running after " + timeout.String())
		default:
			return nil
		}
	}
}
