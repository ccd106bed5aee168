package cpu

import "github.com/hjepa-go/hjepa/tensor"

// randGrain is smaller than elemGrain: each element costs a Philox block.
const randGrain = 1 << 11

func (b *Backend) RandUniform(t *tensor.Tensor, rng *tensor.RNG, lo, hi float32) {
	xs := t.F32()
	span := hi - lo
	b.pool.For(len(xs), randGrain, func(_, a, e int) {
		for i := a; i < e; i++ {
			xs[i] = lo + span*rng.UniformAt(i)
		}
	})
	rng.Advance(len(xs))
}

func (b *Backend) RandNormal(t *tensor.Tensor, rng *tensor.RNG, mean, std float32) {
	xs := t.F32()
	b.pool.For(len(xs), randGrain, func(_, a, e int) {
		for i := a; i < e; i++ {
			xs[i] = mean + std*float32(rng.NormalAt(i))
		}
	})
	rng.Advance(len(xs))
}

func (b *Backend) TruncNormal(t *tensor.Tensor, rng *tensor.RNG, mean, std, lo, hi float32) {
	xs := t.F32()
	m, s, l, h := float64(mean), float64(std), float64(lo), float64(hi)
	b.pool.For(len(xs), randGrain, func(_, a, e int) {
		for i := a; i < e; i++ {
			xs[i] = float32(rng.TruncNormalAt(i, m, s, l, h))
		}
	})
	rng.Advance(len(xs))
}
