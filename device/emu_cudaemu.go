//go:build cudaemu && cgo && !nocuda

package device

import (
	"fmt"
	"os"
	"strconv"

	"github.com/hjepa-go/hjepa/cuda"
	"github.com/hjepa-go/hjepa/cuda/emu"
	"github.com/hjepa-go/hjepa/tensor"
)

// openEmulator opens the CUDA backend on the host emulator (package
// cuda/emu): the CUDA backend's kernels, allocator and failures, run on the
// CPU, for end-to-end tests without a GPU. EmuMemoryEnv, when set, is the
// emulated device's memory in bytes.
func openEmulator() (tensor.Backend, error) {
	d := emu.New()
	if v := os.Getenv(EmuMemoryEnv); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			d.Close()
			return nil, fmt.Errorf("%s=%q: want a positive number of bytes", EmuMemoryEnv, v)
		}
		d.SetMemoryLimit(n)
	}
	if v := os.Getenv(EmuTenantEnv); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			d.Close()
			return nil, fmt.Errorf("%s=%q: want a number of bytes", EmuTenantEnv, v)
		}
		d.SetTenant(n)
	}
	b, err := cuda.NewBackend(d, 0)
	if err != nil {
		d.Close()
		return nil, err
	}
	return b, nil
}
