package cpu

import (
	"math"

	"github.com/hjepa-go/hjepa/tensor"
)

// AdamW takes one step as torch.optim.AdamW (single-tensor path): the scalar
// factors (tensor.AdamWStep.Factors) are formed in float64 as Python does,
// then applied in float32.
func (b *Backend) AdamW(p, g, m, v *tensor.Tensor, h tensor.AdamWStep) {
	n := p.Numel()
	mustNumel("AdamW", "g", g, n)
	mustNumel("AdamW", "m", m, n)
	mustNumel("AdamW", "v", v, n)
	if h.Step < 1 {
		panic("cpu: AdamW: Step is 1-based")
	}
	f := h.Factors()
	decay, beta1, beta2, omb1, omb2 := f.Decay, f.Beta1, f.Beta2, f.OneMinusBeta1, f.OneMinusBeta2
	stepSize, bc2Sqrt, eps := f.StepSize, f.BC2Sqrt, f.Eps
	ps, gs, ms, vs := p.F32(), g.F32(), m.F32(), v.F32()
	b.forElems(n, func(lo, hi int) {
		pp, gg, mm, vv := ps[lo:hi], gs[lo:hi], ms[lo:hi], vs[lo:hi]
		gg, mm, vv = gg[:len(pp)], mm[:len(pp)], vv[:len(pp)]
		for i := range pp {
			gi := gg[i]
			pi := pp[i] * decay
			mi := mm[i]*beta1 + omb1*gi
			vi := vv[i]*beta2 + omb2*gi*gi
			denom := float32(math.Sqrt(float64(vi)))/bc2Sqrt + eps
			pp[i] = pi - stepSize*(mi/denom)
			mm[i], vv[i] = mi, vi
		}
	})
}
