package jepa

import "math"

// VICReg returns the variance and covariance terms of VICReg (Bardes et al.;
// facebookresearch/vicreg) for one branch x [n, d] (row-major) and their
// gradient with respect to x:
//
//	xc   = x - mean_rows(x)
//	std  = sqrt(var_unbiased(xc) + 1e-4)
//	var  = mean_j relu(gamma - std_j)
//	cov  = xc^T xc / (n-1);  covl = sum_{i != j} cov_ij^2 / d
//	loss = varCoeff*var + covCoeff*covl
//
// It is computed in float64 on the host: n is a batch and d a width, so the
// d x d covariance is small next to a training step. With n < 2 the terms are
// undefined and it returns 0 and a zero gradient.
//
// gamma is the variance hinge's target std (VICReg's gamma, 1 there).
func VICReg(x []float32, n, d int, gamma, varCoeff, covCoeff float64) (float64, []float32) {
	grad := make([]float32, n*d)
	if n < 2 {
		return 0, grad
	}
	xc := make([]float64, n*d)
	mean := make([]float64, d)
	for i := 0; i < n; i++ {
		for j := 0; j < d; j++ {
			mean[j] += float64(x[i*d+j])
		}
	}
	for j := range mean {
		mean[j] /= float64(n)
	}
	for i := 0; i < n; i++ {
		for j := 0; j < d; j++ {
			xc[i*d+j] = float64(x[i*d+j]) - mean[j]
		}
	}
	nm1 := float64(n - 1)
	cov := make([]float64, d*d)
	for i := 0; i < n; i++ {
		row := xc[i*d : (i+1)*d]
		for a := 0; a < d; a++ {
			va := row[a]
			if va == 0 {
				continue
			}
			c := cov[a*d : (a+1)*d]
			for bb := 0; bb < d; bb++ {
				c[bb] += va * row[bb]
			}
		}
	}
	for k := range cov {
		cov[k] /= nm1
	}

	// Loss and dL/dxc. For the variance term, dstd_j/dxc_ij = xc_ij/((n-1) std_j).
	// For the covariance term, dcovl/dxc = (4/(d(n-1))) xc C_off.
	var varLoss, covLoss float64
	dstd := make([]float64, d)
	for j := 0; j < d; j++ {
		std := math.Sqrt(cov[j*d+j] + 1e-4)
		if gamma-std > 0 {
			varLoss += gamma - std
			dstd[j] = -varCoeff / float64(d) / (nm1 * std)
		}
	}
	varLoss /= float64(d)
	off := make([]float64, d*d)
	for a := 0; a < d; a++ {
		for bb := 0; bb < d; bb++ {
			if a != bb {
				off[a*d+bb] = cov[a*d+bb]
				covLoss += cov[a*d+bb] * cov[a*d+bb]
			}
		}
	}
	covLoss /= float64(d)
	gxc := make([]float64, n*d)
	cs := covCoeff * 4 / (float64(d) * nm1)
	for i := 0; i < n; i++ {
		row := xc[i*d : (i+1)*d]
		g := gxc[i*d : (i+1)*d]
		for j := 0; j < d; j++ {
			g[j] = dstd[j] * row[j]
		}
		for a := 0; a < d; a++ {
			va := row[a]
			if va == 0 {
				continue
			}
			o := off[a*d : (a+1)*d]
			for bb := 0; bb < d; bb++ {
				g[bb] += cs * va * o[bb]
			}
		}
	}
	// Centering's adjoint: subtract the column means of the gradient.
	gm := make([]float64, d)
	for i := 0; i < n; i++ {
		for j := 0; j < d; j++ {
			gm[j] += gxc[i*d+j]
		}
	}
	for i := 0; i < n; i++ {
		for j := 0; j < d; j++ {
			grad[i*d+j] = float32(gxc[i*d+j] - gm[j]/float64(n))
		}
	}
	return varCoeff*varLoss + covCoeff*covLoss, grad
}
