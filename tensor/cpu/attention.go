package cpu

import (
	"fmt"
	"math"

	"github.com/hjepa-go/hjepa/tensor"
)

// attnRowBlock is the number of query rows whose dP = dO V^T is formed at a
// time in the backward, so a worker holds one head's [N, N] matrix plus a
// [attnRowBlock, N] strip.
const attnRowBlock = 32

// attnShape checks qkv [B, N, 3*H*Dh] and returns B, N, Dh.
func attnShape(op string, qkv *tensor.Tensor, heads int) (bs, n, dh int) {
	if qkv.Rank() != 3 || heads <= 0 || qkv.Dim(2)%(3*heads) != 0 {
		panic(fmt.Sprintf("cpu: %s: qkv has shape %s, want [B, N, 3*H*Dh] with H=%d", op, tensor.ShapeString(qkv.Shape()), heads))
	}
	return qkv.Dim(0), qkv.Dim(1), qkv.Dim(2) / (3 * heads)
}

// AttentionForward: one pool item per (batch, head). Per head:
//
//	S = scale * Q K^T  [N, N] (worker scratch), P = softmax(S) in place,
//	lse = max + log(sum exp(S - max)), O = P V written into out's head columns.
//
// Q, K and V are read in place from qkv with row stride 3*H*Dh.
func (b *Backend) AttentionForward(out, lse, qkv *tensor.Tensor, heads int, scale float32) {
	bs, n, dh := attnShape("AttentionForward", qkv, heads)
	hd := heads * dh
	mustNumel("AttentionForward", "out", out, bs*n*hd)
	mustNumel("AttentionForward", "lse", lse, bs*heads*n)
	qs, os, ls := qkv.F32(), out.F32(), lse.F32()
	if n == 0 || dh == 0 {
		return
	}
	ld := 3 * hd
	b.pool.For(bs*heads, 1, func(w, lo, hi int) {
		s := grow(&b.scratch[w].a, n*n)
		for item := lo; item < hi; item++ {
			bi, h := item/heads, item%heads
			base := bi*n*ld + h*dh
			q, k, v := qs[base:], qs[base+hd:], qs[base+2*hd:]
			b.eng.SgemmSerial(w, false, true, n, n, dh, scale, q, ld, k, ld, 0, s, n)
			l := ls[(bi*heads+h)*n:][:n]
			for i := 0; i < n; i++ {
				l[i] = softmaxRow(s[i*n : (i+1)*n])
			}
			b.eng.SgemmSerial(w, false, false, n, dh, n, 1, s, n, v, ld, 0, os[bi*n*hd+h*dh:], hd)
		}
	})
}

// softmaxRow replaces row by softmax(row) and returns its log-sum-exp.
func softmaxRow(row []float32) float32 {
	m := rowMax(row)
	sum := expShift(row, m)
	inv := 1 / sum
	if n := len(row) &^ 7; useAVX2 && n > 0 {
		vscaleAVX2(&row[0], n, inv)
		row = row[n:]
	}
	for j := range row {
		row[j] *= inv
	}
	return m + float32(math.Log(float64(sum)))
}

// AttentionBackward overwrites dqkv from dout and the forward's qkv, out and
// lse, recomputing P = exp(scale*Q K^T - lse) per head:
//
//	dV = P^T dO, dP = dO V^T, dS = P * (dP - rowsum(dO*O)),
//	dQ = scale * dS K, dK = scale * dS^T Q.
func (b *Backend) AttentionBackward(dqkv, dout, qkv, out, lse *tensor.Tensor, heads int, scale float32) {
	bs, n, dh := attnShape("AttentionBackward", qkv, heads)
	hd := heads * dh
	mustNumel("AttentionBackward", "dqkv", dqkv, bs*n*3*hd)
	mustNumel("AttentionBackward", "dout", dout, bs*n*hd)
	mustNumel("AttentionBackward", "out", out, bs*n*hd)
	mustNumel("AttentionBackward", "lse", lse, bs*heads*n)
	qs, dqs, dos, os, ls := qkv.F32(), dqkv.F32(), dout.F32(), out.F32(), lse.F32()
	if n == 0 || dh == 0 {
		return
	}
	ld := 3 * hd
	b.pool.For(bs*heads, 1, func(w, lo, hi int) {
		sc := &b.scratch[w]
		p := grow(&sc.a, n*n)
		strip := grow(&sc.b, attnRowBlock*n+n)
		dp, delta := strip[:attnRowBlock*n], strip[attnRowBlock*n:]
		for item := lo; item < hi; item++ {
			bi, h := item/heads, item%heads
			base := bi*n*ld + h*dh
			q, k, v := qs[base:], qs[base+hd:], qs[base+2*hd:]
			dq, dk, dv := dqs[base:], dqs[base+hd:], dqs[base+2*hd:]
			obase := bi*n*hd + h*dh
			do, o := dos[obase:], os[obase:]
			l := ls[(bi*heads+h)*n:][:n]

			// P = exp(scale*Q K^T - lse).
			b.eng.SgemmSerial(w, false, true, n, n, dh, scale, q, ld, k, ld, 0, p, n)
			for i := 0; i < n; i++ {
				row := p[i*n : (i+1)*n]
				expShift(row, l[i])
				// delta_i = rowsum(dO_i * O_i)
				doi, oi := do[i*hd:][:dh], o[i*hd:][:dh]
				var d float32
				for t, g := range doi {
					d += g * oi[t]
				}
				delta[i] = d
			}
			// dV = P^T dO.
			b.eng.SgemmSerial(w, true, false, n, dh, n, 1, p, n, do, hd, 0, dv, ld)
			// dS = P * (dO V^T - delta), a strip of rows at a time, in place of P.
			for i0 := 0; i0 < n; i0 += attnRowBlock {
				rb := min(attnRowBlock, n-i0)
				b.eng.SgemmSerial(w, false, true, rb, n, dh, 1, do[i0*hd:], hd, v, ld, 0, dp, n)
				for i := 0; i < rb; i++ {
					row := p[(i0+i)*n : (i0+i+1)*n]
					dpr := dp[i*n : (i+1)*n]
					di := delta[i0+i]
					if m := n &^ 7; useAVX2 && m > 0 {
						dsRowAVX2(&row[0], &dpr[0], m, di)
						row, dpr = row[m:], dpr[m:]
					}
					for j, pv := range row {
						row[j] = pv * (dpr[j] - di)
					}
				}
			}
			// dQ = scale * dS K, dK = scale * dS^T Q.
			b.eng.SgemmSerial(w, false, false, n, dh, n, scale, p, n, k, ld, 0, dq, ld)
			b.eng.SgemmSerial(w, true, false, n, dh, n, scale, p, n, q, ld, 0, dk, ld)
		}
	})
}

// expShift sets row[j] = exp(row[j] - shift) and returns the sum.
func expShift(row []float32, shift float32) float32 {
	var sum float32
	if n := len(row) &^ 7; useAVX2 && n > 0 {
		sum = expShiftAVX2(&row[0], n, shift)
		row = row[n:]
	}
	for j, v := range row {
		e := expf(v - shift)
		row[j] = e
		sum += e
	}
	return sum
}

// rowMax is the largest element of a non-empty row.
func rowMax(row []float32) float32 {
	m := row[0]
	if n := len(row) &^ 7; useAVX2 && n > 0 {
		m = vmaxAVX2(&row[0], n)
		row = row[n:]
	}
	for _, v := range row {
		if v > m {
			m = v
		}
	}
	return m
}
