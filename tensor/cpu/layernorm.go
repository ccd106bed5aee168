package cpu

import (
	"math"

	"github.com/hjepa-go/hjepa/tensor"
)

// LayerNormForward normalises each row of x [R, D]; see tensor.Backend.
// Mean and variance are computed by the corrected two-pass scheme in float32
// (Chan, Golub & LeVeque): mu = sum(x)/D, then c = sum(x-mu)/D and
// var = (sum((x-mu)^2) - D*c^2)/D, normalising with x - (mu + c). The
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
			mu0 := rowSum(row) / float32(d)
			sd, ssd := rowDev(row, mu0)
			c := sd / float32(d)
			v := max(0, (ssd-sd*c)/float32(d))
			mu := mu0 + c
			rs32 := float32(1 / math.Sqrt(float64(v+eps)))
			ms[r], rs[r] = mu, rs32
			lnNormalizeRow(o, row, ws, bs, mu0, rs32, -c*rs32)
		}
	})
}

// lnNormalizeRow sets o = xhat*w + b (w, b may be nil) with
// xhat = (x - mu)*rs + k, k = -c*rs the mean correction.
func lnNormalizeRow(o, x, w, b []float32, mu, rs, k float32) {
	o = o[:len(x)]
	if n := len(x) &^ 7; useAVX2 && n > 0 && (w == nil) == (b == nil) {
		if w != nil {
			lnFwdAVX2(&o[0], &x[0], &w[0], &b[0], n, mu, rs, k)
			w, b = w[n:], b[n:]
		} else {
			lnNormAVX2(&o[0], &x[0], n, mu, rs, k)
		}
		o, x = o[n:], x[n:]
	}
	switch {
	case w != nil && b != nil:
		w, b = w[:len(x)], b[:len(x)]
		for j, xv := range x {
			o[j] = ((xv-mu)*rs+k)*w[j] + b[j]
		}
	case w != nil:
		w = w[:len(x)]
		for j, xv := range x {
			o[j] = ((xv-mu)*rs + k) * w[j]
		}
	case b != nil:
		b = b[:len(x)]
		for j, xv := range x {
			o[j] = (xv-mu)*rs + k + b[j]
		}
	default:
		for j, xv := range x {
			o[j] = (xv-mu)*rs + k
		}
	}
}

// LayerNormBackward accumulates dx += dL/dx and, with w, dw += dL/dw and
// db += dL/db (either may be nil). With xhat = (x-mean)*rstd, g = dout*w:
//
//	dx = rstd * (g - mean(g) - xhat*mean(g*xhat))
//
// dw and db are column sums over rows, reduced over a fixed row-block
// partition so they do not depend on the thread count.
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
	b.columnSums(rows, d, 2, func(r0, r1 int, acc [][]float32) {
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

// lnBackwardRow does one row of LayerNormBackward; w == nil means no affine
// transform (then accW and accB are nil too), otherwise accW and accB receive
// dout*xhat and dout.
func lnBackwardRow(dx, dout, x, w []float32, mu, rs float32, accW, accB []float32) {
	n := len(x)
	dx, dout = dx[:n], dout[:n]
	var sg, sgx float32
	n8 := 0
	if useAVX2 && w != nil {
		n8 = n &^ 7
		if n8 > 0 {
			sg, sgx = lnBwdSumsAVX2(&dout[0], &x[0], &w[0], n8, mu, rs)
		}
	}
	for j := n8; j < n; j++ {
		g := dout[j]
		if w != nil {
			g *= w[j]
		}
		sg += g
		sgx += g * (x[j] - mu) * rs
	}
	inv := 1 / float32(n)
	mg, mgx := sg*inv, sgx*inv
	if n8 > 0 {
		lnBwdRowAVX2(&dx[0], &dout[0], &x[0], &w[0], &accW[0], &accB[0], n8, mu, rs, mg, mgx)
	}
	for j := n8; j < n; j++ {
		g := dout[j]
		if w != nil {
			g *= w[j]
		}
		xh := (x[j] - mu) * rs
		dx[j] += rs * (g - mg - xh*mgx)
		if accW != nil {
			accW[j] += dout[j] * xh
			accB[j] += dout[j]
		}
	}
}

// rowSum is the float32 sum of s (eight partial sums).
func rowSum(s []float32) float32 {
	var tail float32
	if n := len(s) &^ 7; useAVX2 && n > 0 {
		tail = vsumAVX2(&s[0], n)
		s = s[n:]
	}
	return tail + sum32(s)
}

// rowDev returns sum(s-mu) and sum((s-mu)^2).
func rowDev(s []float32, mu float32) (sum, sumSq float32) {
	if n := len(s) &^ 7; useAVX2 && n > 0 {
		sum, sumSq = lnDevAVX2(&s[0], n, mu)
		s = s[n:]
	}
	for _, v := range s {
		v -= mu
		sum += v
		sumSq += v * v
	}
	return sum, sumSq
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
