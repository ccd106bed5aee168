package eval

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"gonum.org/v1/gonum/mat"
	"gonum.org/v1/gonum/optimize"

	"github.com/hjepa-go/hjepa/tensor/parallel"
	"github.com/hjepa-go/hjepa/tensor/sgemm"
)

// TestCompareGonum measures our symmetric eigensolver and L-BFGS beside
// gonum's (mat.EigenSym; optimize.LBFGS) on the shapes hjepa eval uses:
// the eigenvalues of a 768 x 768 feature covariance (RankMe), and the linear
// probe's L2-regularised softmax regression (d=192, 10 classes, 10,000
// images). It logs times and agreement; it fails only when the two
// disagree, never on speed (go test -run TestCompareGonum -v ./eval).
func TestCompareGonum(t *testing.T) {
	if testing.Short() {
		t.Skip("a measurement")
	}
	rng := rand.New(rand.NewPCG(5, 5))

	const n = 768
	a := make([]float64, n*n)
	g := make([]float64, n*n)
	for i := range g {
		g[i] = rng.NormFloat64()
	}
	for i := range n { // a = g g^T / n: a covariance-like spectrum
		for j := 0; j <= i; j++ {
			s := 0.0
			for k := range n {
				s += g[i*n+k] * g[j*n+k]
			}
			a[i*n+j], a[j*n+i] = s/n, s/n
		}
	}
	start := time.Now()
	ours, _, err := SymEig(a, n, false)
	if err != nil {
		t.Fatal(err)
	}
	oursT := time.Since(start)
	start = time.Now()
	var es mat.EigenSym
	if !es.Factorize(mat.NewSymDense(n, append([]float64(nil), a...)), false) {
		t.Fatal("gonum EigenSym failed")
	}
	theirs := es.Values(nil) // ascending
	gonumT := time.Since(start)
	worst := 0.0
	for i := range ours {
		worst = math.Max(worst, math.Abs(ours[i]-theirs[i])/math.Max(1e-12, math.Abs(theirs[n-1])))
	}
	t.Logf("eigenvalues of a %dx%d covariance: ours %v, gonum %v; largest difference %.2g of the top eigenvalue", n, n, oursT.Round(time.Millisecond), gonumT.Round(time.Millisecond), worst)
	if worst > 1e-10 {
		t.Errorf("eigenvalues differ by %.2g of the top one", worst)
	}

	// The probe's objective, exact float64 path.
	const d, c, m = 192, 10, 10000
	x := make([]float32, m*d)
	y := make([]int, m)
	centers := make([]float64, c*d)
	for i := range centers {
		centers[i] = rng.NormFloat64()
	}
	for i := range m {
		y[i] = rng.IntN(c)
		for j := range d {
			x[i*d+j] = float32(centers[y[i]*d+j]*0.3 + rng.NormFloat64())
		}
	}
	pool := parallel.New(2)
	defer pool.Close()
	obj := newProbeObjective(pool, sgemm.New(pool, ""), x, y, d, c, true)
	obj.l2 = 1e-3
	theta := make([]float64, c*d+c)
	start = time.Now()
	r, err := MinimizeLBFGS(obj.eval, theta, LBFGSOptions{MaxIter: 500, GradTol: 1e-6})
	if err != nil {
		t.Fatal(err)
	}
	oursT = time.Since(start)
	grad := make([]float64, len(theta))
	problem := optimize.Problem{
		Func: func(th []float64) float64 { return obj.eval(th, grad) },
		Grad: func(gr, th []float64) { obj.eval(th, gr) },
	}
	start = time.Now()
	res, err := optimize.Minimize(problem, make([]float64, c*d+c), &optimize.Settings{MajorIterations: 500, GradientThreshold: 1e-6 * math.Max(1, r.F)}, &optimize.LBFGS{Store: 15})
	if err != nil && res == nil {
		t.Fatal(err)
	}
	gonumT = time.Since(start)
	t.Logf("probe (d=%d, %d classes, %d images): ours f=%.10g in %d iterations, %d evaluations, %v; gonum f=%.10g in %d iterations, %d evaluations (%d gradients), %v (%v)",
		d, c, m, r.F, r.Iters, r.Evals, oursT.Round(time.Millisecond), res.F, res.Stats.MajorIterations, res.Stats.FuncEvaluations, res.Stats.GradEvaluations, gonumT.Round(time.Millisecond), res.Status)
	if math.Abs(r.F-res.F) > 1e-6*math.Max(1, math.Abs(r.F)) {
		t.Errorf("the two L-BFGS reach different optima: %.10g vs %.10g", r.F, res.F)
	}
}
