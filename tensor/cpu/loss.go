package cpu

import (
	"fmt"

	"github.com/hjepa-go/hjepa/tensor"
)

// SmoothL1Loss and MSELoss reduce over Sum's fixed block partition, so the
// loss is bitwise identical for any thread count.

func (b *Backend) SmoothL1Loss(grad, pred, target *tensor.Tensor, beta, gradScale float32) float64 {
	if !(beta > 0) {
		panic(fmt.Sprintf("cpu: SmoothL1Loss: beta %v must be positive", beta))
	}
	half := 0.5 * beta
	inv := 1 / beta
	return b.lossReduce("SmoothL1Loss", grad, pred, target, func(g, p, t []float32) float64 {
		var acc float64
		for i := range p {
			d := p[i] - t[i]
			ad := d
			if ad < 0 {
				ad = -ad
			}
			var l, dl float32
			if ad < beta {
				l = 0.5 * d * d * inv
				dl = d * inv
			} else {
				l = ad - half
				dl = 1
				if d < 0 {
					dl = -1
				}
			}
			acc += float64(l)
			if g != nil {
				g[i] = gradScale * dl
			}
		}
		return acc
	})
}

func (b *Backend) MSELoss(grad, pred, target *tensor.Tensor, gradScale float32) float64 {
	return b.lossReduce("MSELoss", grad, pred, target, func(g, p, t []float32) float64 {
		var acc float64
		for i := range p {
			d := p[i] - t[i]
			acc += float64(d * d)
			if g != nil {
				g[i] = gradScale * 2 * d
			}
		}
		return acc
	})
}

// lossReduce runs an elementwise loss over Sum's fixed blocks.
func (b *Backend) lossReduce(name string, grad, pred, target *tensor.Tensor, block func(g, p, t []float32) float64) float64 {
	mustSameNumel(name, "pred", pred, "target", target)
	ps, ts := pred.F32(), target.F32()
	var gs []float32
	if grad != nil {
		mustSameNumel(name, "grad", grad, "pred", pred)
		gs = grad.F32()
	}
	return b.blockReduce(len(ps), func(lo, hi int) float64 {
		var g []float32
		if gs != nil {
			g = gs[lo:hi]
		}
		return block(g, ps[lo:hi], ts[lo:hi])
	})
}
