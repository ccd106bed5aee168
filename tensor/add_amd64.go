//go:build amd64 && !purego

package tensor

import "golang.org/x/sys/cpu"

// useAVX2 selects addAVX2 for AddInto: 8 lanes per add, where Go's
// compiler emits one scalar add per element. Each element's sum is the
// same IEEE single-precision add either way, so results do not depend on
// which machine (or loop) computed them.
var useAVX2 = cpu.X86.HasAVX2

// addAVX2 adds n elements of src into dst, n a multiple of 32.
//
//go:noescape
func addAVX2(dst, src *float32, n int)

func addVec(dst, src []float32) int {
	n := len(dst) &^ 31
	if !useAVX2 || n == 0 {
		return 0
	}
	addAVX2(&dst[0], &src[0], n)
	return n
}
