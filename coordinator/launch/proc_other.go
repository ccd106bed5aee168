//go:build !linux

package launch

import (
	"os"
	"syscall"
)

// sysProcAttr: elsewhere than on Linux a child stays in the launcher's
// process group and has no parent-death signal.
func sysProcAttr() *syscall.SysProcAttr { return nil }

// reap waits for c to exit and collects its status.
func (c *child) reap() (*os.ProcessState, error) {
	err := c.cmd.Wait()
	c.mu.Lock()
	c.reaped = true
	c.mu.Unlock()
	return c.cmd.ProcessState, err
}

// signal sends sig to c while it has not been reaped.
func (c *child) signal(sig syscall.Signal) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.reaped {
		return
	}
	if sig == syscall.SIGKILL {
		_ = c.cmd.Process.Kill()
		return
	}
	_ = c.cmd.Process.Signal(sig)
}
