package progress

import (
	"os"

	"golang.org/x/sys/unix"
)

// isTTY asks the kernel for f's terminal attributes, which only a terminal
// has (a character device such as /dev/null fails).
func isTTY(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
