package cpu

import (
	"math"

	"github.com/hjepa-go/hjepa/tensor"
)

// LayerNormForward normalises each row of x [R, D]; see tensor.Backend.
// Mean and variance are computed by the corrected two-pass scheme in float32
// (Chan, Golub & LeVeque): mu = sum(x)/D, then c = sum(x-mu)/D and
// var = (sum((x-mu)^2) - D*c^2)/D, normalising with x - mu - c. The
// correction c removes the rounding error of mu, so rows with a large mean
// relative to their spread stay accurate to float32 rounding.
func (b *Backend) LayerNormForward(out, mean, rstd, x, w, bias *tensor.Tensor, eps float32) {
	rows, d := x.Rows(), x.Cols()
	mustNumel("LayerNormForward", "out", out, rows*d)
	if out.Cols() != d {
		panic("cpu: LayerNormForward: out " + tensor.ShapeString(out.Shape()) + " and x " + tensor.ShapeString(x.Shape()) + " differ in row length")
	}
	mustNumel("LayerNormForward", "mean", mean, rows)
	mustNumel("LayerNormForward", "rstd", rstd, rows)
	var ws, bs []float32
	if w != nil {
		mustNumel("LayerNormForward", "w", w, d)
		ws = w.F32()
	}
	if bias != nil {
		mustNumel("LayerNormForward", "b", bias, d)
		bs = bias.F32()
	}
	xs, os, ms, rs := x.F32(), out.F32(), mean.F32(), rstd.F32()
	if d == 0 {
		return
	}
	b.pool.For(rows, rowGrain(d), func(_, lo, hi int) {
		for r := lo; r < hi; r++ {
			row := xs[r*d : (r+1)*d]
			o := os[r*d : (r+1)*d]
			mu0 := sum32(row) / float32(d)
			sd, ssd := sumDev32(row, mu0)
			c := sd / float32(d)
			v := max(0, (ssd-sd*c)/float32(d))
			mu := mu0 + c
			rs32 := float32(1 / math.Sqrt(float64(v+eps)))
			ms[r], rs[r] = mu, rs32
			switch {
			case ws != nil && bs != nil:
				for j, xv := range row {
					o[j] = (xv-mu0-c)*rs32*ws[j] + bs[j]
				}
			case ws != nil:
				for j, xv := range row {
					o[j] = (xv - mu0 - c) * rs32 * ws[j]
				}
			case bs != nil:
				for j, xv := range row {
					o[j] = (xv-mu0-c)*rs32 + bs[j]
				}
			default:
				for j, xv := range row {
					o[j] = (xv - mu0 - c) * rs32
				}
			}
		}
	})
}

// LayerNormBackward accumulates dx += dL/dx and, with w, dw += dL/dw and
// db += dL/db (db may be nil when the forward had no bias). With
// xhat = (x-mean)*rstd and g = dout*w:
//
//	dx = rstd * (g - mean(g) - xhat*mean(g*xhat))
func (b *Backend) LayerNormBackward(dx, dw, db, dout, x, mean, rstd, w *tensor.Tensor) {
	rows, d := x.Rows(), x.Cols()
	mustNumel("LayerNormBackward", "dx", dx, rows*d)
	mustNumel("LayerNormBackward", "dout", dout, rows*d)
	mustNumel("LayerNormBackward", "mean", mean, rows)
	mustNumel("LayerNormBackward", "rstd", rstd, rows)
	xs, dxs, dos, ms, rs := x.F32(), dx.F32(), dout.F32(), mean.F32(), rstd.F32()
	if d == 0 || rows == 0 {
		return
	}
	if w == nil {
		b.pool.For(rows, rowGrain(d), func(wk, lo, hi int) {
			for r := lo; r < hi; r++ {
				lnBackwardRow(dxs[r*d:(r+1)*d], dos[r*d:(r+1)*d], xs[r*d:(r+1)*d], nil, ms[r], rs[r], nil, nil)
			}
		})
		return
	}
	mustNumel("LayerNormBackward", "w", w, d)
	ws := w.F32()
	var dws, dbs []float32
	if dw != nil {
		mustNumel("LayerNormBackward", "dw", dw, d)
		dws = dw.F32()
	}
	if db != nil {
		mustNumel("LayerNormBackward", "db", db, d)
		dbs = db.F32()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.columnSums(rows, d, 2, func(blk, r0, r1 int, acc [][]float64) {
		for r := r0; r < r1; r++ {
			lnBackwardRow(dxs[r*d:(r+1)*d], dos[r*d:(r+1)*d], xs[r*d:(r+1)*d], ws, ms[r], rs[r], acc[0], acc[1])
		}
	}, func(j int, tot []float64) {
		if dws != nil {
			dws[j] += float32(tot[0])
		}
		if dbs != nil {
			dbs[j] += float32(tot[1])
		}
	})
}

// lnBackwardRow does one row of LayerNormBackward; accW/accB (when non-nil)
// receive dout*xhat and dout.
func lnBackwardRow(dx, dout, x, w []float32, mu, rs float32, accW, accB []float64) {
	var sg, sgx [4]float32
	j := 0
	n := len(x)
	for ; j+4 <= n; j += 4 {
		for k := 0; k < 4; k++ {
			g := dout[j+k]
			if w != nil {
				g *= w[j+k]
			}
			xh := (x[j+k] - mu) * rs
			sg[k] += g
			sgx[k] += g * xh
		}
	}
	for ; j < n; j++ {
		g := dout[j]
		if w != nil {
			g *= w[j]
		}
		sg[0] += g
		sgx[0] += g * (x[j] - mu) * rs
	}
	inv := 1 / float32(n)
	mg := ((sg[0] + sg[1]) + (sg[2] + sg[3])) * inv
	mgx := ((sgx[0] + sgx[1]) + (sgx[2] + sgx[3])) * inv
	for j := range x {
		g := dout[j]
		if w != nil {
			g *= w[j]
		}
		xh := (x[j] - mu) * rs
		dx[j] += rs * (g - mg - xh*mgx)
		if accW != nil {
			accW[j] += float64(dout[j] * xh)
			accB[j] += float64(dout[j])
		}
	}
}

// sum32 adds s in float32 with eight partial sums (pairwise at the end).
func sum32(s []float32) float32 {
	var a [8]float32
	i := 0
	for ; i+8 <= len(s); i += 8 {
		a[0] += s[i]
		a[1] += s[i+1]
		a[2] += s[i+2]
		a[3] += s[i+3]
		a[4] += s[i+4]
		a[5] += s[i+5]
		a[6] += s[i+6]
		a[7] += s[i+7]
	}
	for ; i < len(s); i++ {
		a[i&7] += s[i]
	}
	return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]))
}

// sumDev32 returns sum(s[i]-mu) and sum((s[i]-mu)^2) in float32 with eight
// partial sums each.
func sumDev32(s []float32, mu float32) (sum, sumSq float32) {
	var a, q [8]float32
	i := 0
	for ; i+8 <= len(s); i += 8 {
		for k := 0; k < 8; k++ {
			v := s[i+k] - mu
			a[k] += v
			q[k] += v * v
		}
	}
	for ; i < len(s); i++ {
		v := s[i] - mu
		a[i&7] += v
		q[i&7] += v * v
	}
	sum = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]))
	sumSq = ((q[0] + q[1]) + (q[2] + q[3])) + ((q[4] + q[5]) + (q[6] + q[7]))
	return sum, sumSq
}
