//go:build amd64 && !purego

package cpu

import "golang.org/x/sys/cpu"

//go:generate python3 math_amd64_gen.py

// useAVX2 selects the AVX2+FMA loops in math_amd64.s (generated; the erf and
// exp schemes are those of erff and expf, evaluated 8 float32 lanes at a
// time).
var useAVX2 = cpu.X86.HasAVX2 && cpu.X86.HasFMA

// geluFwdAVX2 processes n elements, n a multiple of 8.
//
//go:noescape
func geluFwdAVX2(out, x *float32, n int)

// geluBwdAVX2 processes n elements, n a multiple of 8.
//
//go:noescape
func geluBwdAVX2(dx, dout, x *float32, n int)

// expShiftAVX2 sets x[i] = exp(x[i] - shift) for n elements, n a multiple
// of 8, and returns their sum.
//
//go:noescape
func expShiftAVX2(x *float32, n int, shift float32) float32

// Row helpers (n a multiple of 8 unless stated).

//go:noescape
func vmaxAVX2(x *float32, n int) float32 // n >= 8

//go:noescape
func vscaleAVX2(x *float32, n int, s float32)

//go:noescape
func vsumAVX2(x *float32, n int) float32

//go:noescape
func lnDevAVX2(x *float32, n int, mu float32) (sum, sumSq float32)

//go:noescape
func lnFwdAVX2(out, x, w, b *float32, n int, mu, rs, k float32)

//go:noescape
func lnNormAVX2(out, x *float32, n int, mu, rs, k float32)

//go:noescape
func lnBwdSumsAVX2(dout, x, w *float32, n int, mu, rs float32) (sg, sgx float32)

//go:noescape
func lnBwdRowAVX2(dx, dout, x, w, accW, accB *float32, n int, mu, rs, mg, mgx float32)

//go:noescape
func dsRowAVX2(p, dp *float32, n int, d float32)

// vadd3AVX2 sets dst[i] = a[i] + b[i].
//
//go:noescape
func vadd3AVX2(dst, a, b *float32, n int)
