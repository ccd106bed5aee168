//go:build amd64 && !purego

package cpu

import "golang.org/x/sys/cpu"

// useAVX2 selects the AVX2+FMA loops in math_amd64.s (generated; the erf and
// exp schemes are those of erff and expf, evaluated 4 (float64) or 8
// (float32) lanes at a time).
var useAVX2 = cpu.X86.HasAVX2 && cpu.X86.HasFMA

// geluFwdAVX2 processes n elements, n a multiple of 8.
//
//go:noescape
func geluFwdAVX2(out, x *float32, n int)

// geluBwdAVX2 processes n elements, n a multiple of 4.
//
//go:noescape
func geluBwdAVX2(dx, dout, x *float32, n int)

// expShiftAVX2 sets x[i] = exp(x[i] - shift) for n elements, n a multiple
// of 8, and returns their sum.
//
//go:noescape
func expShiftAVX2(x *float32, n int, shift float32) float32
