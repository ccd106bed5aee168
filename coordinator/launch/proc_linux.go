package launch

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// sysProcAttr puts a child in its own process group and kills it when the
// launcher dies.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// reap waits for c to exit, kills what is left of its process group, and
// collects its status. The group is killed while c is a zombie: until it is
// reaped its pid, which is the group's id, cannot name another process.
func (c *child) reap() (*os.ProcessState, error) {
	var info unix.Siginfo
	for unix.Waitid(unix.P_PID, c.pid, &info, unix.WEXITED|unix.WNOWAIT, nil) == unix.EINTR {
	}
	// Any other error of waitid: Wait below reports it.
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = syscall.Kill(-c.pid, syscall.SIGKILL)
	err := c.cmd.Wait()
	c.reaped = true
	return c.cmd.ProcessState, err
}

// signal sends sig to c's process group while c has not been reaped.
func (c *child) signal(sig syscall.Signal) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.reaped {
		return
	}
	if syscall.Kill(-c.pid, sig) != nil {
		_ = syscall.Kill(c.pid, sig) // c left its group
	}
}
