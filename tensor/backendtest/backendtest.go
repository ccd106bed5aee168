// Package backendtest is the compliance suite every tensor.Backend must pass.
// It uses only the tensor.Backend interface (data moves through Upload and
// Download), so it runs unchanged on the CPU and CUDA backends. Each kernel is
// compared with a float64 reference on random data of odd shapes; gradients
// are checked by central finite differences of the float64 reference.
// Tolerances are relative L2 errors, ||got - want|| / ||want||, stated per test.
package backendtest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/hjepa-go/hjepa/tensor"
)

// Run runs the suite; newBackend is called once per subtest and should
// register any cleanup with t.Cleanup.
func Run(t *testing.T, newBackend func(t *testing.T) tensor.Backend) {
	tests := []struct {
		name string
		fn   func(t *testing.T, b tensor.Backend)
	}{
		{"Gemm", testGemm},
		{"Elementwise", testElementwise},
		{"AddRowVectorSumRows", testRowVector},
		{"Patchify", testPatchify},
		{"LayerNormForward", testLayerNormForward},
		{"LayerNormBackward", testLayerNormBackward},
		{"GELU", testGELU},
		{"AttentionForward", testAttentionForward},
		{"AttentionBackward", testAttentionBackward},
		{"GatherScatterAdd", testGatherScatter},
		{"Reductions", testReductions},
		{"Losses", testLosses},
		{"AdamW", testAdamW},
		{"EMA", testEMA},
		{"Random", testRandom},
		{"ShapeChecks", testShapeChecks},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newBackend(t)) })
	}
}

// ---- helpers ----

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15)) }

func randn(r *rand.Rand, n int, scale float64) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(r.NormFloat64() * scale)
	}
	return s
}

func upload(b tensor.Backend, data []float32, shape ...int) *tensor.Tensor {
	t := b.New(tensor.Float32, shape...)
	b.Upload(t, data)
	return t
}

func uploadInt(b tensor.Backend, data []int32, shape ...int) *tensor.Tensor {
	t := b.New(tensor.Int32, shape...)
	b.UploadInt32(t, data)
	return t
}

func download(b tensor.Backend, t *tensor.Tensor) []float32 {
	d := make([]float32, t.Numel())
	b.Download(d, t)
	return d
}

func to64(s []float32) []float64 {
	d := make([]float64, len(s))
	for i, v := range s {
		d[i] = float64(v)
	}
	return d
}

// relL2 is ||got - want|| / ||want|| (absolute when want is zero).
func relL2(got []float32, want []float64) float64 {
	if len(got) != len(want) {
		return math.Inf(1)
	}
	var num, den float64
	for i, w := range want {
		d := float64(got[i]) - w
		num += d * d
		den += w * w
	}
	if den == 0 {
		return math.Sqrt(num)
	}
	return math.Sqrt(num / den)
}

func checkClose(t *testing.T, what string, got []float32, want []float64, tol float64) {
	t.Helper()
	for i, v := range got {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			if !(math.IsNaN(want[i]) || math.IsInf(want[i], 0)) {
				t.Errorf("%s: element %d is %v, want %v", what, i, v, want[i])
				return
			}
		}
	}
	if e := relL2(got, want); !(e <= tol) {
		t.Errorf("%s: relative L2 error %.3g > %.3g", what, e, tol)
	}
}

func checkEqual(t *testing.T, what string, got, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] && !(got[i] != got[i] && want[i] != want[i]) {
			t.Fatalf("%s: element %d is %v, want %v", what, i, got[i], want[i])
		}
	}
}

// mustPanic fails unless f panics.
func mustPanic(t *testing.T, what string, f func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Errorf("%s: no panic", what)
		}
	}()
	f()
}

// short picks the small value under -short.
func short(small, full int) int {
	if testing.Short() {
		return small
	}
	return full
}

// fdGrad returns the central-difference gradient of f at x (float64).
func fdGrad(x []float64, f func([]float64) float64) []float64 {
	const h = 1e-5
	g := make([]float64, len(x))
	for i := range x {
		old := x[i]
		x[i] = old + h
		fp := f(x)
		x[i] = old - h
		fm := f(x)
		x[i] = old
		g[i] = (fp - fm) / (2 * h)
	}
	return g
}

func dot64(a, b []float64) float64 {
	var s float64
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

func name(format string, args ...any) string { return fmt.Sprintf(format, args...) }

// The float64 finite-difference references are the slow part of the suite
// and do not depend on the backend; they are computed once per process for
// each (seeded, hence deterministic) case.
var (
	memoMu sync.Mutex
	memoed = map[string][][]float64{}
)

func memo(key string, f func() [][]float64) [][]float64 {
	memoMu.Lock()
	defer memoMu.Unlock()
	if v, ok := memoed[key]; ok {
		return v
	}
	v := f()
	memoed[key] = v
	return v
}
