package jepa

import (
	"github.com/hjepa-go/hjepa/nn"
	"github.com/hjepa-go/hjepa/tensor"
)

// Projector is VICReg's expander on the context side: Linear(D, P), GELU,
// Linear(P, P) without bias (as the official VICReg's last layer: every
// VICReg term is blind to a constant shift, so its gradient would be
// rounding noise that AdamW turns into steps). VICReg regularises its output, as the official VICReg
// regularises the expander's and evaluates the backbone before it: whitening
// the encoder's own pooled features directly costs linear-probe accuracy.
type Projector struct {
	FC1, FC2 *nn.Linear

	h, act, dact tensor.Workspace
	in, dIn      tensor.Workspace
	hT           *tensor.Tensor
}

func newProjector(pb *nn.Builder, d, p int) *Projector {
	return &Projector{FC1: nn.NewLinear(pb, "fc1", d, p, true), FC2: nn.NewLinear(pb, "fc2", p, p, false)}
}

func (pr *Projector) init(b tensor.Backend, rng *tensor.RNG, std float32) {
	for _, l := range []*nn.Linear{pr.FC1, pr.FC2} {
		b.TruncNormal(l.W.W, rng, 0, std, -2, 2)
		if l.B != nil {
			b.Fill(l.B.W, 0)
		}
	}
}

// Forward maps x [n, D] (host) to y [n, P] on the host (valid until the
// next call) and keeps what Backward needs.
func (pr *Projector) Forward(b tensor.Backend, x []float32, n int) []float32 {
	d, p := pr.FC1.In, pr.FC2.Out
	in := pr.in.Get(b, n, d)
	b.Upload(in, x)
	pr.hT = pr.FC1.Forward(b, in)
	act := pr.act.Get(b, n, p)
	b.GELUForward(act, pr.hT)
	y := pr.FC2.Forward(b, act)
	out := make([]float32, n*p)
	b.Download(out, y)
	return out
}

// Backward accumulates the projector's gradients from dy [n, P] (host) of
// the last Forward and returns dx [n, D] on the host.
func (pr *Projector) Backward(b tensor.Backend, dy []float32, n int) []float32 {
	d, p := pr.FC1.In, pr.FC2.Out
	g := pr.h.Get(b, n, p)
	b.Upload(g, dy)
	dact := pr.dact.Get(b, n, p)
	pr.FC2.Backward(b, dact, g)
	b.GELUBackward(dact, dact, pr.hT)
	dx := pr.dIn.Get(b, n, d)
	pr.FC1.Backward(b, dx, dact)
	out := make([]float32, n*d)
	b.Download(out, dx)
	return out
}
