//go:build !amd64 || purego

package cpu

var useAVX2 = false

func geluFwdAVX2(out, x *float32, n int)                    { panic("unreachable") }
func geluBwdAVX2(dx, dout, x *float32, n int)               { panic("unreachable") }
func expShiftAVX2(x *float32, n int, shift float32) float32 { panic("unreachable") }

func vmaxAVX2(x *float32, n int) float32                           { panic("unreachable") }
func vscaleAVX2(x *float32, n int, s float32)                      { panic("unreachable") }
func vsumAVX2(x *float32, n int) float32                           { panic("unreachable") }
func lnDevAVX2(x *float32, n int, mu float32) (sum, sumSq float32) { panic("unreachable") }
func lnFwdAVX2(out, x, w, b *float32, n int, mu, rs, k float32)    { panic("unreachable") }
func lnNormAVX2(out, x *float32, n int, mu, rs, k float32)         { panic("unreachable") }
func lnBwdSumsAVX2(dout, x, w *float32, n int, mu, rs float32) (sg, sgx float32) {
	panic("unreachable")
}
func lnBwdRowAVX2(dx, dout, x, w, accW, accB *float32, n int, mu, rs, mg, mgx float32) {
	panic("unreachable")
}

func dsRowAVX2(p, dp *float32, n int, d float32) { panic("unreachable") }

func vadd3AVX2(dst, a, b *float32, n int) { panic("unreachable") }
