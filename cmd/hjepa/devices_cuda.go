//go:build !nocuda

package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/hjepa-go/hjepa/cuda"
)

// listDevices prints the GPUs as NVML (cgo builds) or the CUDA driver
// (static builds) reports them.
func listDevices(out io.Writer) error {
	d, err := cuda.Discover()
	if err != nil {
		if errors.Is(err, cuda.ErrNoDriver) {
			fmt.Fprintf(out, "no NVIDIA driver on this machine: training runs on the CPU (--device cpu)\n(%v)\n", err)
			return nil
		}
		return err
	}
	if len(d.Devices) == 0 {
		fmt.Fprintf(out, "no GPU visible (%s, driver %s): training runs on the CPU\n", d.Source, d.Driver)
		return nil
	}
	fmt.Fprintf(out, "%d GPU(s) via %s, driver %s:\n", len(d.Devices), d.Source, d.Driver)
	for _, dev := range d.Devices {
		fmt.Fprintf(out, "  %s\n", dev)
	}
	return nil
}
