package train

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/hjepa-go/hjepa/config"
	"github.com/hjepa-go/hjepa/jepa"
	"github.com/hjepa-go/hjepa/tensor"
	"github.com/hjepa-go/hjepa/tensor/cpu"
)

// smallGPU is a backend whose device reports 1 MiB free.
type smallGPU struct{ tensor.Backend }

func (smallGPU) Device() tensor.Device { return tensor.Device{Type: tensor.CUDA} }
func (smallGPU) DeviceMemory() (free, total uint64, err error) {
	return 1 << 20, 80 << 30, nil
}

// The memory check compares against the device's free memory when the
// backend has memory of its own.
func TestPreflightDeviceMemory(t *testing.T) {
	c := config.Default()
	ref := cpu.New(1)
	defer ref.Close()
	tr := &trainer{cfg: c, opts: Options{Out: t.TempDir()}, b: smallGPU{ref}}
	mc, err := jepa.NewModelConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	err = tr.preflight(mc)
	if err == nil || !strings.Contains(err.Error(), "of cuda:0 memory but 1.0 MiB is free") || !strings.Contains(err.Error(), "data.batch_size") {
		t.Fatalf("preflight = %v", err)
	}
}

// failingDevice is a backend whose device fails (tensor.Faulter) once
// failed is set, or at its next AdamW once armed is.
type failingDevice struct {
	tensor.Backend
	failed, armed *atomic.Bool
}

func (f failingDevice) AdamW(p, g, m, v *tensor.Tensor, h tensor.AdamWStep) {
	if f.armed.Load() {
		f.failed.Store(true)
	}
	f.Backend.AdamW(p, g, m, v, h)
}

func (f failingDevice) Err() error {
	if f.failed.Load() {
		return fmt.Errorf("cuda: out of memory on cuda:0 (fake): %w", tensor.ErrOutOfMemory)
	}
	return nil
}

// A device failure stops training with the step and the batch size, and
// writes no checkpoint of the failed device's values: the last good one
// stays latest.
func TestDeviceFailureStopsTraining(t *testing.T) {
	for _, tc := range []struct {
		name     string
		inAdamW  bool  // fail in step 2's optimizer step, else right after step 2 (before its checkpoint)
		errStep  int64 // the step the error names
		goodStep int64 // checkpoint_latest's
	}{
		{name: "in the optimizer step", inAdamW: true, errStep: 2, goodStep: 2},
		{name: "before the checkpoint", errStep: 2, goodStep: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := loopConfig(t, "training.max_steps=6", "checkpoint.every_steps=1", "data.batch_size=8")
			ref := cpu.New(1)
			defer ref.Close()
			var failed, armed atomic.Bool
			out := t.TempDir()
			r := newLoopRun(t, c, failingDevice{ref, &failed, &armed}, out)
			r.afterStep = func(step int64) {
				if step == 2 {
					if tc.inAdamW {
						armed.Store(true)
					} else {
						failed.Store(true)
					}
				}
			}
			s, err := r.run(t, context.Background())
			want := fmt.Sprintf("step %d (data.batch_size 8)", tc.errStep)
			if s != nil || !errors.Is(err, tensor.ErrOutOfMemory) || !strings.Contains(err.Error(), want) {
				t.Fatalf("Run = %+v, %v; want the device's failure naming %q", s, err, want)
			}
			if _, st := latest(t, out); st.Step != tc.goodStep {
				t.Errorf("checkpoint_latest at step %d, want the last good one, %d", st.Step, tc.goodStep)
			}
			if len(r.losses) != 2 {
				t.Errorf("%d steps reported, want 2", len(r.losses))
			}
		})
	}
}
