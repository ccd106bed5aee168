//go:build !amd64 || purego

package sgemm

// archKernels lists the assembly kernels this CPU can run, best first: none
// off amd64.
func archKernels() []microKernel { return nil }
