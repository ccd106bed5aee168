//go:build nocuda

package train

import (
	"errors"

	"github.com/hjepa-go/hjepa/tensor"
)

// errNoCUDA is the error of every GPU request in a build without the CUDA
// backend: `-tags nocuda` leaves out purego's dynamic loader, so that
// CGO_ENABLED=0 gives a fully static binary (for FROM-scratch images).
var errNoCUDA = errors.New("this binary was built with -tags nocuda (no CUDA backend); rebuild without the tag to use a GPU")

func openGPU(int, bool) (tensor.Backend, error) { return nil, errNoCUDA }

func noGPU(err error) bool { return errors.Is(err, errNoCUDA) }
