//go:build !nocuda

package device

import (
	"errors"

	"github.com/hjepa-go/hjepa/cuda"
	"github.com/hjepa-go/hjepa/tensor"
)

// openGPU opens GPU ordinal as a backend (package cuda: libcuda and cuBLAS
// are loaded at run time, so this links nothing of CUDA).
func openGPU(ordinal int, tf32 bool) (tensor.Backend, error) {
	b, err := cuda.Open(ordinal, cuda.Options{TF32: tf32})
	if err != nil {
		return nil, err
	}
	return b, nil
}

// noGPU reports whether err means the machine has no NVIDIA driver or no
// visible device, as opposed to a GPU that failed.
func noGPU(err error) bool {
	return errors.Is(err, cuda.ErrNoDriver) || errors.Is(err, cuda.ErrNoDevice)
}

// discover asks NVML (cgo builds) or the CUDA driver (static builds).
func discover() (Inventory, error) {
	d, err := cuda.Discover()
	if err != nil {
		return Inventory{}, err
	}
	inv := Inventory{Source: d.Source, Driver: d.Driver}
	for _, g := range d.Devices {
		inv.GPUs = append(inv.GPUs, GPU{Index: g.Index, Name: g.Name, UUID: g.UUID, MemoryBytes: g.TotalMemory,
			Major: g.Major, Minor: g.Minor})
	}
	return inv, nil
}
