//go:build nocuda

package device

import (
	"errors"

	"github.com/hjepa-go/hjepa/tensor"
)

func openGPU(int, bool) (tensor.Backend, error) { return nil, errNoCUDA }

func noGPU(err error) bool { return errors.Is(err, errNoCUDA) }

func discover() (Inventory, error) { return Inventory{}, errNoCUDA }
