package eval

import (
	"errors"
	"fmt"
	"math"
)

// Objective evaluates f(x) and writes its gradient into grad (len(x)).
type Objective func(x, grad []float64) float64

// LBFGSOptions configures MinimizeLBFGS. Zero fields take the defaults noted.
type LBFGSOptions struct {
	Memory  int     // correction pairs kept (default 15)
	MaxIter int     // iterations, i.e. accepted steps (default 1000)
	GradTol float64 // stop when max|g| <= GradTol * max(1, |f|) (default 1e-6)
	// FTol stops when the relative decrease (f_k - f_{k+1}) / max(|f_k|,
	// |f_{k+1}|, 1) <= FTol (default 1e-12; a negative value disables it).
	FTol float64
}

func (o LBFGSOptions) withDefaults() LBFGSOptions {
	if o.Memory <= 0 {
		o.Memory = 15
	}
	if o.MaxIter <= 0 {
		o.MaxIter = 1000
	}
	if o.GradTol <= 0 {
		o.GradTol = 1e-6
	}
	if o.FTol == 0 {
		o.FTol = 1e-12
	}
	return o
}

// LBFGSResult reports how a minimisation ended.
type LBFGSResult struct {
	F         float64 // objective at the returned point
	GradNorm  float64 // max |g| there
	Iters     int     // accepted steps
	Evals     int     // objective evaluations
	Converged bool    // a tolerance was met (not MaxIter, not a line-search failure)
	Reason    string  // "gradient", "ftol", "max iterations" or "line search: ..."
}

// Strong Wolfe constants (Nocedal & Wright's usual quasi-Newton values).
const (
	wolfeC1      = 1e-4
	wolfeC2      = 0.9
	maxLineEvals = 25
)

// MinimizeLBFGS minimises f from x (updated in place to the best point found)
// by limited-memory BFGS: the two-loop recursion with the scaling
// gamma = s'y / y'y of the newest pair, and a line search satisfying the
// strong Wolfe conditions (Nocedal & Wright, Algorithms 3.5 and 3.6, with
// safeguarded cubic interpolation in the zoom). Pairs with s'y <= 0 are
// skipped; a non-descent direction or a failed line search restarts from the
// steepest descent once before giving up.
func MinimizeLBFGS(f Objective, x []float64, opts LBFGSOptions) (LBFGSResult, error) {
	o := opts.withDefaults()
	n := len(x)
	if n == 0 {
		return LBFGSResult{}, errors.New("lbfgs: empty parameter vector")
	}
	g := make([]float64, n)
	fx := f(x, g)
	res := LBFGSResult{Evals: 1}
	if !finite(fx) || !allFinite(g) {
		return res, fmt.Errorf("lbfgs: objective is not finite at the starting point (f = %v)", fx)
	}
	var (
		s, y        = make([][]float64, 0, o.Memory), make([][]float64, 0, o.Memory)
		rho         = make([]float64, 0, o.Memory)
		alpha       = make([]float64, o.Memory)
		p           = make([]float64, n)
		xt, gt      = make([]float64, n), make([]float64, n)
		xPrev, gPrv = make([]float64, n), make([]float64, n)
	)
	finish := func(conv bool, why string) (LBFGSResult, error) {
		res.F, res.GradNorm, res.Converged, res.Reason = fx, normInf(g), conv, why
		return res, nil
	}
	for res.Iters < o.MaxIter {
		if normInf(g) <= o.GradTol*math.Max(1, math.Abs(fx)) {
			return finish(true, "gradient")
		}
		// Direction p = -H g by the two-loop recursion.
		copy(p, g)
		for i := len(s) - 1; i >= 0; i-- {
			alpha[i] = rho[i] * dot(s[i], p)
			axpy(-alpha[i], y[i], p)
		}
		step := 1.0
		if k := len(s); k > 0 {
			scal(dot(s[k-1], y[k-1])/dot(y[k-1], y[k-1]), p)
		} else {
			// First step (or after a restart): at most unit length along -g.
			step = math.Min(1, 1/norm2(g))
		}
		for i := range s {
			beta := rho[i] * dot(y[i], p)
			axpy(alpha[i]-beta, s[i], p)
		}
		scal(-1, p)
		dg := dot(p, g)
		if !(dg < 0) {
			if len(s) == 0 {
				return finish(false, "line search: no descent direction")
			}
			s, y, rho = s[:0], y[:0], rho[:0]
			continue
		}
		copy(xPrev, x)
		copy(gPrv, g)
		fPrev := fx
		ft, ok, evals := wolfeSearch(f, x, fx, g, dg, p, step, xt, gt)
		res.Evals += evals
		if !ok {
			if len(s) > 0 {
				s, y, rho = s[:0], y[:0], rho[:0] // restart along -g once
				continue
			}
			return finish(false, "line search: no point satisfying the Wolfe conditions")
		}
		copy(x, xt)
		copy(g, gt)
		fx = ft
		res.Iters++
		// New correction pair, recycling the oldest buffers when full.
		var sn, yn []float64
		if len(s) == o.Memory {
			sn, yn = s[0], y[0]
			s = append(s[:0], s[1:]...)
			y = append(y[:0], y[1:]...)
			rho = append(rho[:0], rho[1:]...)
		} else {
			sn, yn = make([]float64, n), make([]float64, n)
		}
		for i := range sn {
			sn[i] = x[i] - xPrev[i]
			yn[i] = g[i] - gPrv[i]
		}
		if sy := dot(sn, yn); sy > 1e-16*dot(yn, yn) && sy > 0 {
			s, y, rho = append(s, sn), append(y, yn), append(rho, 1/sy)
		}
		if o.FTol > 0 && (fPrev-fx)/math.Max(math.Max(math.Abs(fPrev), math.Abs(fx)), 1) <= o.FTol {
			return finish(true, "ftol")
		}
	}
	if normInf(g) <= o.GradTol*math.Max(1, math.Abs(fx)) {
		return finish(true, "gradient")
	}
	return finish(false, "max iterations")
}

// wolfeSearch finds a step a along p from x (value f0, gradient g0, slope
// dg0 = g0'p < 0) satisfying the strong Wolfe conditions, starting at a1.
// On success xt, gt hold the accepted point and its gradient.
func wolfeSearch(f Objective, x []float64, f0 float64, g0 []float64, dg0 float64, p []float64, a1 float64, xt, gt []float64) (float64, bool, int) {
	evals := 0
	// decreased is the Armijo condition, or Hager & Zhang's approximate
	// form when f has stopped resolving the decrease (f within 1e-10
	// relative of f0 but the slope still says downhill): near the optimum
	// c1*a*dg0 falls below f's rounding error.
	fEps := 1e-10 * math.Abs(f0)
	decreased := func(a, fa, da float64) bool {
		return fa <= f0+wolfeC1*a*dg0 || (fa <= f0+fEps && da <= (2*wolfeC1-1)*dg0)
	}
	eval := func(a float64) (float64, float64) {
		for i := range xt {
			xt[i] = x[i] + a*p[i]
		}
		fa := f(xt, gt)
		evals++
		return fa, dot(gt, p)
	}
	zoom := func(lo, flo, dlo, hi, fhi, dhi float64) (float64, bool) {
		for evals < maxLineEvals {
			a := cubicMin(lo, flo, dlo, hi, fhi, dhi)
			fa, da := eval(a)
			if !finite(fa) || !decreased(a, fa, da) || fa >= flo {
				hi, fhi, dhi = a, fa, da
				if !finite(fa) {
					fhi, dhi = math.MaxFloat64, 0
				}
			} else {
				if math.Abs(da) <= -wolfeC2*dg0 {
					return fa, true
				}
				if da*(hi-lo) >= 0 {
					hi, fhi, dhi = lo, flo, dlo
				}
				lo, flo, dlo = a, fa, da
			}
			if math.Abs(hi-lo) <= 1e-16*math.Max(math.Abs(lo), math.Abs(hi)) {
				break
			}
		}
		// Accept the best sufficient-decrease point if it improves f.
		if lo > 0 && flo < f0 {
			fa, _ := eval(lo)
			return fa, fa < f0
		}
		return 0, false
	}
	aPrev, fPrev, dPrev := 0.0, f0, dg0
	a := a1
	for i := 1; evals < maxLineEvals; i++ {
		fa, da := eval(a)
		if !finite(fa) {
			// Overshot into overflow: treat as a failed sufficient decrease.
			r, ok := zoom(aPrev, fPrev, dPrev, a, math.MaxFloat64, 0)
			return r, ok, evals
		}
		if !decreased(a, fa, da) || (i > 1 && fa >= fPrev) {
			r, ok := zoom(aPrev, fPrev, dPrev, a, fa, da)
			return r, ok, evals
		}
		if math.Abs(da) <= -wolfeC2*dg0 {
			return fa, true, evals
		}
		if da >= 0 {
			r, ok := zoom(a, fa, da, aPrev, fPrev, dPrev)
			return r, ok, evals
		}
		aPrev, fPrev, dPrev = a, fa, da
		a *= 4
	}
	return 0, false, evals
}

// cubicMin is the minimiser of the cubic interpolating (a, fa, da) and
// (b, fb, db) (Nocedal & Wright eq. 3.59), safeguarded to the middle 80% of
// the interval; bisection when the cubic has no usable minimiser.
func cubicMin(a, fa, da, b, fb, db float64) float64 {
	lo, hi := math.Min(a, b), math.Max(a, b)
	w := hi - lo
	mid := 0.5 * (a + b)
	if fb == math.MaxFloat64 {
		return mid
	}
	d1 := da + db - 3*(fa-fb)/(a-b)
	disc := d1*d1 - da*db
	if disc < 0 || !finite(disc) {
		return mid
	}
	d2 := math.Copysign(math.Sqrt(disc), b-a)
	t := b - (b-a)*(db+d2-d1)/(db-da+2*d2)
	if !finite(t) || t < lo+0.1*w || t > hi-0.1*w {
		return mid
	}
	return t
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

func allFinite(v []float64) bool {
	for _, x := range v {
		if !finite(x) {
			return false
		}
	}
	return true
}

func dot(a, b []float64) float64 {
	s := 0.0
	for i, v := range a {
		s += v * b[i]
	}
	return s
}

func axpy(alpha float64, x, y []float64) {
	for i, v := range x {
		y[i] += alpha * v
	}
}

func scal(alpha float64, x []float64) {
	for i := range x {
		x[i] *= alpha
	}
}

func norm2(x []float64) float64 { return math.Sqrt(dot(x, x)) }

func normInf(x []float64) float64 {
	m := 0.0
	for _, v := range x {
		m = math.Max(m, math.Abs(v))
	}
	return m
}
