package launch_test

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/hjepa-go/hjepa/coordinator/launch"
)

// How `hjepa launch --nproc 2` uses Run: the signals a terminal or a
// scheduler sends the launcher go to every child, and the launcher exits
// with the coordinator's status.
func ExampleRun() {
	self, _ := os.Executable()
	spec := launch.Spec{
		Coordinator: launch.Proc{Path: self, Args: []string{"coordinator", "--nproc", "2"}},
		Workers: []launch.Proc{
			{Path: self, Args: []string{"worker"}, Env: []string{"RANK=0", "LOCAL_RANK=0"}},
			{Path: self, Args: []string{"worker"}, Env: []string{"RANK=1", "LOCAL_RANK=1"}},
		},
		MaxRestarts:  3,
		RestartDelay: 2 * time.Second,
		Logger:       zap.NewExample(),
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	code, err := launch.Run(context.Background(), spec, sigs)
	if err != nil {
		spec.Logger.Error("launch", zap.Error(err))
	}
	os.Exit(code)
}
