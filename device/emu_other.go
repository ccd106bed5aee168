//go:build !cudaemu || !cgo || nocuda

package device

import (
	"errors"

	"github.com/hjepa-go/hjepa/tensor"
)

// openEmulator fails: the host emulator is only in cgo builds with -tags
// cudaemu (and without nocuda).
func openEmulator() (tensor.Backend, error) {
	return nil, errors.New("the CUDA emulator is only in test builds (go build -tags cudaemu, with cgo); use auto, cpu, cuda or cuda:K")
}
