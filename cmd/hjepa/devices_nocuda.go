//go:build nocuda

package main

import (
	"fmt"
	"io"
)

func listDevices(out io.Writer) error {
	fmt.Fprintln(out, "this binary was built with -tags nocuda: no CUDA backend, training runs on the CPU")
	return nil
}
