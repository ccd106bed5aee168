package jobcmd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// Exit prints err (when there is one) and returns the process's exit code:
// an ExitError's, else 1.
func Exit(prog string, err error) int {
	if err == nil {
		return 0
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		if ee.Err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", prog, ee.Err)
		}
		return ee.Code
	}
	fmt.Fprintf(os.Stderr, "%s: %v\n", prog, err)
	return 1
}

// Main runs one of the job's commands as a program's root command
// (hjepa-coordinator, hjepa-worker): SIGINT/SIGTERM cancel its context.
func Main(c *cobra.Command) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	c.SilenceUsage, c.SilenceErrors = true, true
	c.Version = Version()
	code := Exit(c.Name(), c.ExecuteContext(ctx))
	stop()
	os.Exit(code)
}
