package nn

import (
	"github.com/hjepa-go/hjepa/tensor"
)

// Linear is y = x W^T + b with W [Out, In] and b [Out], like torch.nn.Linear.
type Linear struct {
	In, Out int
	W, B    *Param // B is nil without bias

	x  *tensor.Tensor // saved input [..., In]
	ws tensor.Workspace
}

// NewLinear declares name.weight [out, in] (decayed) and, with bias,
// name.bias [out] (not decayed).
func NewLinear(pb *Builder, name string, in, out int, bias bool) *Linear {
	l := &Linear{In: in, Out: out}
	l.W = pb.Param(name+".weight", true, out, in)
	if bias {
		l.B = pb.Param(name+".bias", false, out)
	}
	return l
}

// Forward computes y [..., Out] from x [..., In] in a buffer the Linear owns.
func (l *Linear) Forward(b tensor.Backend, x *tensor.Tensor) *tensor.Tensor {
	shape := append(append(make([]int, 0, x.Rank()), x.Shape()[:x.Rank()-1]...), l.Out)
	y := l.ws.Get(b, shape...)
	l.ForwardInto(b, y, x)
	return y
}

// ForwardInto computes y [R, Out] (any leading shape) from x [R, In] into a
// buffer the caller owns.
func (l *Linear) ForwardInto(b tensor.Backend, y, x *tensor.Tensor) {
	if x.Cols() != l.In || y.Cols() != l.Out || x.Rows() != y.Rows() {
		panic("nn: Linear " + l.W.Name + ": x " + tensor.ShapeString(x.Shape()) + " -> y " + tensor.ShapeString(y.Shape()))
	}
	l.x = x
	g := tensor.GemmArgs{TransB: true, M: x.Rows(), N: l.Out, K: l.In, Alpha: 1, A: x, B: l.W.W, C: y}
	if l.B != nil {
		g.Bias = l.B.W // added as C is written, not in a pass of its own
	}
	b.Gemm(g)
}

// Backward accumulates dW += dy^T x and db += sum_rows dy, and overwrites
// dx [..., In] = dy W when dx is non-nil. dy: [..., Out].
func (l *Linear) Backward(b tensor.Backend, dx, dy *tensor.Tensor) {
	x := l.x
	r := x.Rows()
	if dy.Rows() != r || dy.Cols() != l.Out {
		panic("nn: Linear " + l.W.Name + " backward: dy " + tensor.ShapeString(dy.Shape()) + " for x " + tensor.ShapeString(x.Shape()))
	}
	b.Gemm(tensor.GemmArgs{TransA: true, M: l.Out, N: l.In, K: r, Alpha: 1, Beta: 1, A: dy, B: x, C: l.W.G})
	if l.B != nil {
		b.SumRows(l.B.G, dy)
	}
	if dx != nil {
		b.Gemm(tensor.GemmArgs{M: r, N: l.In, K: l.Out, Alpha: 1, A: dy, B: l.W.W, C: dx})
	}
}

func (l *Linear) init(b tensor.Backend, rng *tensor.RNG, std float32) {
	b.TruncNormal(l.W.W, rng, 0, std, -2, 2)
	if l.B != nil {
		b.Fill(l.B.W, 0)
	}
}

// LayerNorm normalises the last dimension: y = (x-mean)*rstd*w + b, with
// weight w [D] and bias b [D] (neither decayed).
type LayerNorm struct {
	D    int
	Eps  float32
	W, B *Param

	x               *tensor.Tensor
	out, mean, rstd tensor.Workspace
	meanT, rstdT    *tensor.Tensor
}

// NewLayerNorm declares name.weight and name.bias, both [d].
func NewLayerNorm(pb *Builder, name string, d int, eps float32) *LayerNorm {
	return &LayerNorm{D: d, Eps: eps,
		W: pb.Param(name+".weight", false, d),
		B: pb.Param(name+".bias", false, d)}
}

// Forward normalises x [..., D] into y [..., D] (owned by the LayerNorm).
func (n *LayerNorm) Forward(b tensor.Backend, x *tensor.Tensor) *tensor.Tensor {
	if x.Cols() != n.D {
		panic("nn: LayerNorm " + n.W.Name + ": x " + tensor.ShapeString(x.Shape()))
	}
	y := n.out.Get(b, x.Shape()...)
	r := x.Rows()
	n.x = x
	n.meanT = n.mean.Get(b, r)
	n.rstdT = n.rstd.Get(b, r)
	b.LayerNormForward(y.Reshape(r, n.D), n.meanT, n.rstdT, x.Reshape(r, n.D), n.W.W, n.B.W, n.Eps)
	return y
}

// Backward ACCUMULATES dx [..., D] += dL/dx (dx must be non-nil) and the
// weight and bias gradients. dy: [..., D].
func (n *LayerNorm) Backward(b tensor.Backend, dx, dy *tensor.Tensor) {
	r := n.x.Rows()
	b.LayerNormBackward(dx.Reshape(r, n.D), n.W.G, n.B.G, dy.Reshape(r, n.D), n.x.Reshape(r, n.D), n.meanT, n.rstdT, n.W.W)
}

func (n *LayerNorm) init(b tensor.Backend) {
	b.Fill(n.W.W, 1)
	b.Fill(n.B.W, 0)
}
