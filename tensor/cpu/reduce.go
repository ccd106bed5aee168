package cpu

import "github.com/hjepa-go/hjepa/tensor"

// Reductions use a fixed block partition (independent of the thread count):
// each block is reduced by one worker into its own slot, then the slots are
// combined in block order. The result is therefore bitwise identical for any
// number of threads.
const (
	sumBlock     = 1 << 13 // elements per block for Sum / SumSquares
	rowSumBlock  = 32      // rows per block for column sums (float32 partials)
	colSumTarget = 1 << 12 // at least this many elements per column-sum block
)

// partialBuf returns the shared per-block scratch; the caller holds b.mu.
func (b *Backend) partialBuf(n int) []float64 {
	if cap(b.partials) < n {
		b.partials = make([]float64, n)
	}
	return b.partials[:n]
}

func (b *Backend) Sum(x *tensor.Tensor) float64 {
	return b.blockSum(x.F32(), false)
}

func (b *Backend) SumSquares(x *tensor.Tensor) float64 {
	return b.blockSum(x.F32(), true)
}

func (b *Backend) blockSum(xs []float32, squares bool) float64 {
	return b.blockReduce(len(xs), func(lo, hi int) float64 {
		if squares {
			return sumSquares64(xs[lo:hi])
		}
		return sum64(xs[lo:hi])
	})
}

// blockReduce splits [0, n) into the fixed blocks of sumBlock elements,
// reduces each block with fn (which may also write elementwise outputs for
// its range) into its own slot, and adds the slots in block order: the
// result does not depend on the thread count.
func (b *Backend) blockReduce(n int, fn func(lo, hi int) float64) float64 {
	nb := (n + sumBlock - 1) / sumBlock
	if nb == 0 {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	part := b.partialBuf(nb)
	b.pool.For(nb, max(1, elemGrain/sumBlock), func(_, lo, hi int) {
		for blk := lo; blk < hi; blk++ {
			part[blk] = fn(blk*sumBlock, min(n, (blk+1)*sumBlock))
		}
	})
	var total float64
	for _, p := range part {
		total += p
	}
	return total
}

// sum64 adds s in float64 with four independent accumulators.
func sum64(s []float32) float64 {
	var a0, a1, a2, a3 float64
	i := 0
	for ; i+4 <= len(s); i += 4 {
		a0 += float64(s[i])
		a1 += float64(s[i+1])
		a2 += float64(s[i+2])
		a3 += float64(s[i+3])
	}
	for ; i < len(s); i++ {
		a0 += float64(s[i])
	}
	return (a0 + a1) + (a2 + a3)
}

func sumSquares64(s []float32) float64 {
	var a0, a1, a2, a3 float64
	i := 0
	for ; i+4 <= len(s); i += 4 {
		v0, v1, v2, v3 := float64(s[i]), float64(s[i+1]), float64(s[i+2]), float64(s[i+3])
		a0 += v0 * v0
		a1 += v1 * v1
		a2 += v2 * v2
		a3 += v3 * v3
	}
	for ; i < len(s); i++ {
		v := float64(s[i])
		a0 += v * v
	}
	return (a0 + a1) + (a2 + a3)
}

// SumRows accumulates dst [C] += column sums of x [R, C].
func (b *Backend) SumRows(dst, x *tensor.Tensor) {
	cols := x.Cols()
	mustNumel("SumRows", "dst", dst, cols)
	xs := x.F32()
	ds := dst.F32()
	rows := x.Rows()
	if cols == 0 || rows == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.columnSums(rows, cols, 1, func(r0, r1 int, acc [][]float32) {
		a := acc[0][:cols]
		for r := r0; r < r1; r++ {
			tensor.AddInto(a, xs[r*cols:(r+1)*cols])
		}
	}, func(j int, tot []float64) { ds[j] += float32(tot[0]) })
}

// columnSums is the fixed-partition column reduction shared by SumRows and
// the LayerNorm parameter gradients. Rows are cut into blocks of a fixed size
// (a function of cols only); accumulate adds rows [r0, r1) into nacc float32
// accumulators of length cols (zeroed beforehand); finish receives, per
// column, the block totals summed in block order in float64. The caller
// holds b.mu.
func (b *Backend) columnSums(rows, cols, nacc int, accumulate func(r0, r1 int, acc [][]float32), finish func(j int, tot []float64)) {
	blockRows := max(rowSumBlock, colSumTarget/cols)
	nb := (rows + blockRows - 1) / blockRows
	if cap(b.colPartials) < nb*nacc*cols {
		b.colPartials = make([]float32, nb*nacc*cols)
	}
	part := b.colPartials[:nb*nacc*cols]
	b.pool.For(nb, 1, func(_, lo, hi int) {
		var accs [4][]float32
		for blk := lo; blk < hi; blk++ {
			base := part[blk*nacc*cols : (blk+1)*nacc*cols]
			clear(base)
			for k := 0; k < nacc; k++ {
				accs[k] = base[k*cols : (k+1)*cols]
			}
			accumulate(blk*blockRows, min(rows, (blk+1)*blockRows), accs[:nacc])
		}
	})
	b.pool.For(cols, max(1, colSumTarget/max(nb*nacc, 1)), func(_, lo, hi int) {
		var tot [4]float64
		for j := lo; j < hi; j++ {
			for k := 0; k < nacc; k++ {
				var s float64
				for blk := 0; blk < nb; blk++ {
					s += float64(part[(blk*nacc+k)*cols+j])
				}
				tot[k] = s
			}
			finish(j, tot[:nacc])
		}
	})
}
