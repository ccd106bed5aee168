package cpu

import (
	"fmt"

	"github.com/hjepa-go/hjepa/tensor"
)

// Patchify cuts img [B, C, H, W] into dst [B, (H/p)*(W/p), C*p*p].
func (b *Backend) Patchify(dst, img *tensor.Tensor, p int) {
	if img.Rank() != 4 || p <= 0 || img.Dim(2)%p != 0 || img.Dim(3)%p != 0 {
		panic(fmt.Sprintf("cpu: Patchify: img has shape %s, want [B, C, H, W] with H and W multiples of p=%d", tensor.ShapeString(img.Shape()), p))
	}
	bs, c, hh, ww := img.Dim(0), img.Dim(1), img.Dim(2), img.Dim(3)
	gh, gw := hh/p, ww/p
	np, pd := gh*gw, c*p*p
	mustNumel("Patchify", "dst", dst, bs*np*pd)
	ds, is := dst.F32(), img.F32()
	// One item per (image, patch row): copies p rows of p pixels per channel.
	b.pool.For(bs*gh, max(1, rowWork/max(gw*pd, 1)), func(_, lo, hi int) {
		for item := lo; item < hi; item++ {
			bi, py := item/gh, item%gh
			for px := 0; px < gw; px++ {
				d := ds[((bi*np)+py*gw+px)*pd:][:pd]
				for ch := 0; ch < c; ch++ {
					for i := 0; i < p; i++ {
						src := is[((bi*c+ch)*hh+py*p+i)*ww+px*p:][:p]
						copy(d[(ch*p+i)*p:][:p], src)
					}
				}
			}
		}
	})
}

// gatherArgs checks dst/src/idx for Gather (rows = dst) or ScatterAdd
// (rows = src) and returns the row length and the indices.
func gatherArgs(op string, many, few *tensor.Tensor, manyName, fewName string, idx *tensor.Tensor) (int, []int32) {
	c := few.Cols()
	if many.Cols() != c {
		panic(fmt.Sprintf("cpu: %s: %s %s and %s %s differ in row length", op, manyName, tensor.ShapeString(many.Shape()), fewName, tensor.ShapeString(few.Shape())))
	}
	if idx.DType() != tensor.Int32 {
		panic(fmt.Sprintf("cpu: %s: idx is %s, want int32", op, idx))
	}
	mustNumel(op, "idx", idx, many.Rows())
	ids := idx.I32()
	r := few.Rows()
	for i, v := range ids {
		if v < 0 || int(v) >= r {
			panic(fmt.Sprintf("cpu: %s: idx[%d] = %d outside [0, %d)", op, i, v, r))
		}
	}
	return c, ids
}

// Gather sets dst [M, C] row i = src [R, C] row idx[i].
func (b *Backend) Gather(dst, src, idx *tensor.Tensor) {
	c, ids := gatherArgs("Gather", dst, src, "dst", "src", idx)
	ds, ss := dst.F32(), src.F32()
	b.pool.For(len(ids), rowGrain(c), func(_, lo, hi int) {
		for i := lo; i < hi; i++ {
			copy(ds[i*c:(i+1)*c], ss[int(ids[i])*c:][:c])
		}
	})
}

// ScatterAdd sets dst [R, C] row idx[i] += src [M, C] row i. Work is split
// over column ranges, so every destination element is accumulated by one
// worker in index order: the result does not depend on the thread count.
func (b *Backend) ScatterAdd(dst, src, idx *tensor.Tensor) {
	c, ids := gatherArgs("ScatterAdd", src, dst, "src", "dst", idx)
	ds, ss := dst.F32(), src.F32()
	m := len(ids)
	if m == 0 || c == 0 {
		return
	}
	// Column chunks of at least 16 floats (a cache line) and enough work.
	grain := max(16, rowWork/m)
	nchunks := (c + grain - 1) / grain
	b.pool.For(nchunks, 1, func(_, lo, hi int) {
		c0, c1 := lo*grain, min(c, hi*grain)
		for i, r := range ids {
			d := ds[int(r)*c+c0 : int(r)*c+c1]
			s := ss[i*c+c0 : i*c+c1]
			for j, v := range s {
				d[j] += v
			}
		}
	})
}
