package eval

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/hjepa-go/hjepa/tensor/sgemm"
)

// blobs draws n points in d dimensions from c unit-variance Gaussians with
// the given means ([c, d]), equal priors.
func blobs(rng *rand.Rand, n, d, c int, means []float64) ([]float32, []int) {
	x := make([]float32, n*d)
	y := make([]int, n)
	for i := 0; i < n; i++ {
		y[i] = rng.IntN(c)
		for j := 0; j < d; j++ {
			x[i*d+j] = float32(means[y[i]*d+j] + rng.NormFloat64())
		}
	}
	return x, y
}

func randomMeans(rng *rand.Rand, d, c int, spread float64) []float64 {
	m := make([]float64, c*d)
	for i := range m {
		m[i] = spread * rng.NormFloat64()
	}
	return m
}

func TestProbeGradientMatchesFiniteDifferences(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	const n, d, c = 60, 5, 3
	x, y := blobs(rng, n, d, c, randomMeans(rng, d, c, 1))
	pool := newPool(2)
	defer pool.Close()
	eng := sgemm.New(pool, "")
	theta := make([]float64, c*d+c)
	for i := range theta {
		theta[i] = 0.3 * rng.NormFloat64()
	}
	for _, cs := range []struct{ exact, pen bool }{{true, false}, {false, false}, {true, true}} {
		exact := cs.exact
		obj := newProbeObjective(pool, eng, x, y, d, c, exact)
		obj.l2 = 0.05
		if cs.pen { // the whitened objective's per-column penalty
			obj.pen = []float64{1, 3, 0.5, 10, 2}
		}
		g := make([]float64, len(theta))
		obj.eval(theta, g)
		tmp := make([]float64, len(theta))
		const h = 1e-5
		tol := 1e-8
		if !exact {
			tol = 2e-3 // float32 products: loss noise ~1e-7 over step 1e-5
		}
		for i := range theta {
			tp := append([]float64(nil), theta...)
			tp[i] += h
			fp := obj.eval(tp, tmp)
			tp[i] -= 2 * h
			fm := obj.eval(tp, tmp)
			fd := (fp - fm) / (2 * h)
			if math.Abs(fd-g[i]) > tol*math.Max(1, math.Abs(g[i])) {
				t.Fatalf("exact=%v: d/dtheta[%d]: analytic %.12g, finite difference %.12g", exact, i, g[i], fd)
			}
		}
	}
}

func TestProbeFastPathMatchesExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	const n, d, c = 3000, 40, 7 // several chunks and blocks, ragged ends
	x, y := blobs(rng, n, d, c, randomMeans(rng, d, c, 0.5))
	pool := newPool(3)
	defer pool.Close()
	eng := sgemm.New(pool, "")
	theta := make([]float64, c*d+c)
	for i := range theta {
		theta[i] = 0.2 * rng.NormFloat64()
	}
	ex, fa := newProbeObjective(pool, eng, x, y, d, c, true), newProbeObjective(pool, eng, x, y, d, c, false)
	ge, gf := make([]float64, len(theta)), make([]float64, len(theta))
	le, lf := ex.eval(theta, ge), fa.eval(theta, gf)
	if math.Abs(le-lf) > 1e-6*le {
		t.Fatalf("loss: exact %.12g fast %.12g", le, lf)
	}
	for i := range ge {
		if math.Abs(ge[i]-gf[i]) > 1e-6 {
			t.Fatalf("grad[%d]: exact %.12g fast %.12g", i, ge[i], gf[i])
		}
	}
}

func TestProbeSeparableIsPerfect(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	const d, c = 8, 4
	means := randomMeans(rng, d, c, 20) // far apart: linearly separable in practice
	x, y := blobs(rng, 800, d, c, means)
	xt, yt := blobs(rng, 400, d, c, means)
	p, rep, err := FitProbe(x, y, d, c, ProbeOptions{L2: 1e-4, Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	for _, set := range []struct {
		x []float32
		y []int
	}{{x, y}, {xt, yt}} {
		pred, err := p.Predict(set.x)
		if err != nil {
			t.Fatal(err)
		}
		if acc := Accuracy(pred, set.y); acc != 1 {
			t.Fatalf("accuracy %v on separable data (%+v)", acc, rep)
		}
	}
	if !rep.Converged {
		t.Fatalf("not converged: %+v", rep)
	}
}

func TestProbeAgreesWithBayesOnBlobs(t *testing.T) {
	// Three unit-variance 2-D Gaussians, equal priors: the Bayes classifier
	// is the nearest mean, a linear rule the probe must recover.
	rng := rand.New(rand.NewPCG(11, 12))
	means := []float64{0, 0, 2.5, 0, 1.25, 2}
	x, y := blobs(rng, 6000, 2, 3, means)
	xt, _ := blobs(rng, 3000, 2, 3, means)
	p, rep, err := FitProbe(x, y, 2, 3, ProbeOptions{L2: 1e-6, Threads: 2})
	if err != nil || !rep.Converged {
		t.Fatalf("%v %+v", err, rep)
	}
	pred, _ := p.Predict(xt)
	agree := 0
	for i := range pred {
		best, bd := 0, math.Inf(1)
		for k := 0; k < 3; k++ {
			dx, dy := float64(xt[2*i])-means[2*k], float64(xt[2*i+1])-means[2*k+1]
			if dd := dx*dx + dy*dy; dd < bd {
				best, bd = k, dd
			}
		}
		if pred[i] == best {
			agree++
		}
	}
	if frac := float64(agree) / float64(len(pred)); frac < 0.98 {
		t.Fatalf("agrees with the Bayes classifier on %.3f of points", frac)
	}
}

// The L-BFGS optimum must match an independent plain gradient descent on the
// same (strongly convex) objective: exactly with Exact, within float32
// rounding on the default path, which fits on whitened features. The
// features are strongly correlated (the way pooled ViT features are), so
// the whitening has real work to do.
func TestProbeOptimumMatchesGradientDescent(t *testing.T) {
	for _, exact := range []bool{true, false} {
		probeOptimumMatchesGradientDescent(t, exact)
	}
}

func probeOptimumMatchesGradientDescent(t *testing.T, exact bool) {
	rng := rand.New(rand.NewPCG(13, 14))
	const n, d, c, l2 = 200, 4, 3, 1e-2
	x, y := blobs(rng, n, d, c, randomMeans(rng, d, c, 1))
	for i := 0; i < n; i++ { // mix the columns: column j += 3 * column 0
		for j := 1; j < d; j++ {
			x[i*d+j] += 3 * x[i*d]
		}
	}
	lossTol, wTol, gradTol := 1e-12, 1e-7, 1e-10
	if !exact { // float32 products: the gradient is good to ~1e-7
		lossTol, wTol, gradTol = 1e-7, 1e-4, 1e-6
	}
	p, rep, err := FitProbe(x, y, d, c, ProbeOptions{L2: l2, Exact: exact, Tol: gradTol, FTol: -1, Threads: 1})
	if err != nil || !rep.Converged {
		t.Fatalf("exact=%v: %v %+v", exact, err, rep)
	}
	pool := newPool(1)
	defer pool.Close()
	mean, std := columnMoments(pool, x, n, d)
	xs := standardise(pool, x, n, d, mean, std)
	obj := newProbeObjective(pool, sgemm.New(pool, ""), xs, y, d, c, true)
	obj.l2 = l2
	// Step 1/L with L >= 0.5 max_i(||x_i||^2 + 1) + l2 bounding the Hessian.
	lmax := 0.0
	for i := 0; i < n; i++ {
		s := 1.0
		for j := 0; j < d; j++ {
			s += float64(xs[i*d+j]) * float64(xs[i*d+j])
		}
		lmax = math.Max(lmax, s)
	}
	step := 1 / (0.5*lmax + l2)
	theta := make([]float64, c*d+c)
	g := make([]float64, len(theta))
	var f float64
	for it := 0; it < 200000; it++ {
		f = obj.eval(theta, g)
		if normInf(g) < 1e-13 {
			break
		}
		axpy(-step, g, theta)
	}
	t.Logf("exact=%v: L-BFGS %+v; GD stopped at max abs grad %.3g", exact, rep, normInf(g))
	if math.Abs(f-rep.Loss) > lossTol*f {
		t.Fatalf("exact=%v: loss: L-BFGS %.15g, gradient descent %.15g", exact, rep.Loss, f)
	}
	for i := range p.W {
		if math.Abs(p.W[i]-theta[i]) > wTol*math.Max(1, math.Abs(theta[i])) {
			t.Fatalf("exact=%v: W[%d]: L-BFGS %.12g, gradient descent %.12g", exact, i, p.W[i], theta[i])
		}
	}
}

func TestProbeL2SelectionAndDeterminism(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	const d, c = 10, 3
	x, y := blobs(rng, 1500, d, c, randomMeans(rng, d, c, 0.7))
	var first *Probe
	for _, threads := range []int{1, 3} {
		p, rep, err := FitProbe(x, y, d, c, ProbeOptions{L2: -1, Threads: threads})
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Trials) != len(DefaultL2Grid) {
			t.Fatalf("trials %+v", rep.Trials)
		}
		found := false
		for _, l := range DefaultL2Grid {
			found = found || l == rep.L2
		}
		if !found || !rep.Converged {
			t.Fatalf("report %+v", rep)
		}
		if first == nil {
			first = p
			continue
		}
		for i := range p.W {
			if p.W[i] != first.W[i] {
				t.Fatalf("threads=%d: W[%d] differs: %v vs %v", threads, i, p.W[i], first.W[i])
			}
		}
	}
}

func TestProbeRejectsBadInput(t *testing.T) {
	if _, _, err := FitProbe(make([]float32, 6), []int{0, 1, 2}, 2, 2, ProbeOptions{}); err == nil {
		t.Fatal("label outside [0, C) accepted")
	}
	if _, _, err := FitProbe(make([]float32, 5), []int{0, 1, 1}, 2, 2, ProbeOptions{}); err == nil {
		t.Fatal("wrong feature count accepted")
	}
}
