package eval

import (
	"math"
	"math/rand/v2"
	"testing"
)

func rosenbrock(x, g []float64) float64 {
	f := 0.0
	clear(g)
	for i := 0; i+1 < len(x); i++ {
		a, b := 1-x[i], x[i+1]-x[i]*x[i]
		f += a*a + 100*b*b
		g[i] += -2*a - 400*x[i]*b
		g[i+1] += 200 * b
	}
	return f
}

func TestLBFGSRosenbrock(t *testing.T) {
	for _, x0 := range [][]float64{{-1.2, 1}, {-1.2, 1, -1.2, 1, -1.2, 1, -1.2, 1, -1.2, 1}} {
		x := append([]float64(nil), x0...)
		r, err := MinimizeLBFGS(rosenbrock, x, LBFGSOptions{GradTol: 1e-10, FTol: -1, Memory: 10})
		if err != nil {
			t.Fatal(err)
		}
		if !r.Converged {
			t.Fatalf("n=%d: not converged: %+v", len(x), r)
		}
		for i, v := range x {
			if math.Abs(v-1) > 1e-7 {
				t.Fatalf("n=%d: x[%d] = %v, want 1 (%+v)", len(x), i, v, r)
			}
		}
		t.Logf("rosenbrock n=%d: %d iterations, %d evaluations", len(x), r.Iters, r.Evals)
	}
}

// solve solves the dense system a x = b by Gaussian elimination with partial
// pivoting (a and b are clobbered).
func solve(a []float64, b []float64) []float64 {
	n := len(b)
	for k := 0; k < n; k++ {
		p := k
		for i := k + 1; i < n; i++ {
			if math.Abs(a[i*n+k]) > math.Abs(a[p*n+k]) {
				p = i
			}
		}
		for j := 0; j < n; j++ {
			a[k*n+j], a[p*n+j] = a[p*n+j], a[k*n+j]
		}
		b[k], b[p] = b[p], b[k]
		for i := k + 1; i < n; i++ {
			f := a[i*n+k] / a[k*n+k]
			for j := k; j < n; j++ {
				a[i*n+j] -= f * a[k*n+j]
			}
			b[i] -= f * b[k]
		}
	}
	x := make([]float64, n)
	for i := n - 1; i >= 0; i-- {
		s := b[i]
		for j := i + 1; j < n; j++ {
			s -= a[i*n+j] * x[j]
		}
		x[i] = s / a[i*n+i]
	}
	return x
}

func TestLBFGSQuadratic(t *testing.T) {
	const n = 30
	rng := rand.New(rand.NewPCG(1, 2))
	m := make([]float64, n*n)
	for i := range m {
		m[i] = rng.NormFloat64()
	}
	a := make([]float64, n*n) // m^T m + 0.1 I: SPD, condition number ~1e3
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			s := 0.0
			for k := 0; k < n; k++ {
				s += m[k*n+i] * m[k*n+j]
			}
			a[i*n+j] = s
		}
		a[i*n+i] += 0.1
	}
	b := make([]float64, n)
	for i := range b {
		b[i] = rng.NormFloat64()
	}
	f := func(x, g []float64) float64 { // 0.5 x'Ax - b'x
		v := 0.0
		for i := 0; i < n; i++ {
			s := 0.0
			for j := 0; j < n; j++ {
				s += a[i*n+j] * x[j]
			}
			g[i] = s - b[i]
			v += 0.5*x[i]*s - b[i]*x[i]
		}
		return v
	}
	want := solve(append([]float64(nil), a...), append([]float64(nil), b...))
	x := make([]float64, n)
	r, err := MinimizeLBFGS(f, x, LBFGSOptions{GradTol: 1e-12, FTol: -1, MaxIter: 5000})
	if err != nil || !r.Converged {
		t.Fatalf("%v %+v", err, r)
	}
	for i := range x {
		if math.Abs(x[i]-want[i]) > 1e-8*math.Max(1, math.Abs(want[i])) {
			t.Fatalf("x[%d] = %.12g, want %.12g", i, x[i], want[i])
		}
	}
	t.Logf("quadratic n=%d: %d iterations", n, r.Iters)
}

func TestLBFGSStopsAtMaxIterAndRejectsNaN(t *testing.T) {
	x := []float64{-1.2, 1}
	r, err := MinimizeLBFGS(rosenbrock, x, LBFGSOptions{MaxIter: 3})
	if err != nil || r.Converged || r.Iters != 3 || r.Reason != "max iterations" {
		t.Fatalf("%v %+v", err, r)
	}
	_, err = MinimizeLBFGS(func(x, g []float64) float64 { return math.NaN() }, []float64{1}, LBFGSOptions{})
	if err == nil {
		t.Fatal("NaN objective accepted")
	}
}
