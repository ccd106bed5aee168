// Package emu implements cuda.Driver on the host, so that the CUDA backend
// (its launch shapes, argument marshalling and kernels) runs and is tested
// without a GPU. The kernels are cuda/kernels/hjepa.cu itself, compiled as
// C++ with cuda/kernels/emu.h, which runs the threads of each block as
// cooperative fibers; see emu.h for the thread model and what it diagnoses.
//
// Device memory is host memory (a device pointer is a host address), work
// runs synchronously on the calling goroutine, and Sgemm is plain
// column-major loops with cuBLAS's semantics. The emulator is stricter than
// a GPU where that is cheap: pointer arguments must lie in live allocations,
// copies and GEMM operands must fit in theirs, kernel arguments must match
// the kernel's parameter types, and new allocations are filled with NaNs.
//
// Tests import this package, and package device in binaries built with
// -tags cudaemu (device "cuda-emu", for end-to-end tests of the CUDA
// backend's behaviour, its out-of-memory errors included, without a GPU);
// package cuda never does (it builds with CGO_ENABLED=0). SetMemoryLimit
// gives the emulated device a size.
//
// Building it needs cgo and a C++17 compiler (g++); without cgo the package
// is empty and its tests are skipped.
package emu
