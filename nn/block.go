package nn

import (
	"fmt"
	"math"

	"github.com/hjepa-go/hjepa/tensor"
)

// MLP is fc2(GELU(fc1(x))): D -> Hidden -> D, as I-JEPA's MLP.
type MLP struct {
	FC1, FC2 *Linear

	h      *tensor.Tensor // fc1 output, saved for the GELU backward
	act    tensor.Workspace
	dh     tensor.Workspace
	hidden int
}

// NewMLP declares fc1 and fc2 (with biases) under pb.
func NewMLP(pb *Builder, dim, hidden int) *MLP {
	return &MLP{
		FC1:    NewLinear(pb, "fc1", dim, hidden, true),
		FC2:    NewLinear(pb, "fc2", hidden, dim, true),
		hidden: hidden,
	}
}

// Forward maps x [..., D] to y [..., D].
func (m *MLP) Forward(b tensor.Backend, x *tensor.Tensor) *tensor.Tensor {
	m.h = m.FC1.Forward(b, x)
	a := m.act.Get(b, m.h.Shape()...)
	b.GELUForward(a, m.h)
	return m.FC2.Forward(b, a)
}

// Backward overwrites dx [..., D] (nil skips it) and accumulates the fc1/fc2
// gradients. dy: [..., D].
func (m *MLP) Backward(b tensor.Backend, dx, dy *tensor.Tensor) {
	dh := m.dh.Get(b, m.h.Shape()...)
	m.FC2.Backward(b, dh, dy)
	b.GELUBackward(dh, dh, m.h)
	m.FC1.Backward(b, dx, dh)
}

// Attention is timm/I-JEPA multi-head self-attention: qkv Linear (with bias)
// to the packed [B, N, 3, H, Dh] layout, softmax(QK^T * Dh^-0.5) V per head,
// then the proj Linear.
type Attention struct {
	Dim, Heads int
	Scale      float32
	QKV, Proj  *Linear

	qkv    *tensor.Tensor // [B, N, 3D]
	out    *tensor.Tensor // [B, N, D]
	lse    *tensor.Tensor // [B, H, N]
	outWS  tensor.Workspace
	lseWS  tensor.Workspace
	doutWS tensor.Workspace
	dqkvWS tensor.Workspace
}

// NewAttention declares qkv [3D, D] and proj [D, D] (with biases) under pb.
func NewAttention(pb *Builder, dim, heads int) *Attention {
	return &Attention{
		Dim: dim, Heads: heads,
		Scale: float32(math.Pow(float64(dim/heads), -0.5)),
		QKV:   NewLinear(pb, "qkv", dim, 3*dim, true),
		Proj:  NewLinear(pb, "proj", dim, dim, true),
	}
}

// Forward maps x [B, N, D] to y [B, N, D].
func (a *Attention) Forward(b tensor.Backend, x *tensor.Tensor) *tensor.Tensor {
	if x.Rank() != 3 || x.Dim(2) != a.Dim {
		panic(fmt.Sprintf("nn: Attention %s: x %v, want [B, N, %d]", a.QKV.W.Name, x.Shape(), a.Dim))
	}
	bs, n := x.Dim(0), x.Dim(1)
	a.qkv = a.QKV.Forward(b, x)
	a.out = a.outWS.Get(b, bs, n, a.Dim)
	a.lse = a.lseWS.Get(b, bs, a.Heads, n)
	b.AttentionForward(a.out, a.lse, a.qkv, a.Heads, a.Scale)
	return a.Proj.Forward(b, a.out)
}

// Backward overwrites dx [B, N, D] (nil skips it) and accumulates the qkv and
// proj gradients. dy: [B, N, D].
func (a *Attention) Backward(b tensor.Backend, dx, dy *tensor.Tensor) {
	dout := a.doutWS.Get(b, a.out.Shape()...)
	a.Proj.Backward(b, dout, dy)
	dqkv := a.dqkvWS.Get(b, a.qkv.Shape()...)
	b.AttentionBackward(dqkv, dout, a.qkv, a.out, a.lse, a.Heads, a.Scale)
	a.QKV.Backward(b, dx, dqkv)
}

// Block is the pre-norm transformer block of I-JEPA:
//
//	h = x + attn(norm1(x)); y = h + mlp(norm2(h)).
type Block struct {
	Norm1 *LayerNorm
	Attn  *Attention
	Norm2 *LayerNorm
	MLP   *MLP

	hWS, yWS, dn1WS, dn2WS tensor.Workspace
}

// NewBlock declares norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2 under
// pb (e.g. pb.Scope("blocks.3.")), in forward order.
func NewBlock(pb *Builder, dim, heads, hidden int, eps float32) *Block {
	return &Block{
		Norm1: NewLayerNorm(pb, "norm1", dim, eps),
		Attn:  NewAttention(pb.Scope("attn."), dim, heads),
		Norm2: NewLayerNorm(pb, "norm2", dim, eps),
		MLP:   NewMLP(pb.Scope("mlp."), dim, hidden),
	}
}

// Forward maps x [B, N, D] to y [B, N, D].
func (k *Block) Forward(b tensor.Backend, x *tensor.Tensor) *tensor.Tensor {
	a := k.Attn.Forward(b, k.Norm1.Forward(b, x))
	h := k.hWS.Get(b, x.Shape()...)
	b.Add(h, x, a)
	m := k.MLP.Forward(b, k.Norm2.Forward(b, h))
	y := k.yWS.Get(b, x.Shape()...)
	b.Add(y, h, m)
	return y
}

// shareForward makes k's forward buffers o's: every activation k's forward
// writes is dead once the next block has read k's output, so in a
// forward-only stack one set of buffers serves every block (Encoder.ForwardOnly).
// k's input may then be o's output buffer, which k overwrites only after
// its last read of the input.
func (k *Block) shareForward(o *Block) {
	for _, p := range [][2]*tensor.Workspace{
		{&k.Norm1.out, &o.Norm1.out}, {&k.Norm1.mean, &o.Norm1.mean}, {&k.Norm1.rstd, &o.Norm1.rstd},
		{&k.Attn.QKV.ws, &o.Attn.QKV.ws}, {&k.Attn.outWS, &o.Attn.outWS}, {&k.Attn.lseWS, &o.Attn.lseWS},
		{&k.Attn.Proj.ws, &o.Attn.Proj.ws}, {&k.hWS, &o.hWS},
		{&k.Norm2.out, &o.Norm2.out}, {&k.Norm2.mean, &o.Norm2.mean}, {&k.Norm2.rstd, &o.Norm2.rstd},
		{&k.MLP.FC1.ws, &o.MLP.FC1.ws}, {&k.MLP.act, &o.MLP.act}, {&k.MLP.FC2.ws, &o.MLP.FC2.ws},
		{&k.yWS, &o.yWS},
	} {
		p[0].Share(p[1])
	}
}

// shareBackward makes k's backward temporaries o's: a block's backward
// needs them only while it runs, so one set serves a whole stack of blocks
// (NewEncoder, NewPredictor). The activations saved by the forward stay
// each block's own.
func (k *Block) shareBackward(o *Block) {
	for _, p := range [][2]*tensor.Workspace{
		{&k.dn1WS, &o.dn1WS}, {&k.dn2WS, &o.dn2WS},
		{&k.Attn.doutWS, &o.Attn.doutWS}, {&k.Attn.dqkvWS, &o.Attn.dqkvWS}, {&k.MLP.dh, &o.MLP.dh},
	} {
		p[0].Share(p[1])
	}
}

// Backward overwrites dx [B, N, D] with the input gradient and accumulates
// the block's parameter gradients. dy: [B, N, D]. dx may be the same tensor as
// dy (the residual stream's gradient updated in place).
func (k *Block) Backward(b tensor.Backend, dx, dy *tensor.Tensor) {
	dn2 := k.dn2WS.Get(b, dy.Shape()...)
	k.MLP.Backward(b, dn2, dy)
	if dx != dy {
		b.Copy(dx, dy)
	}
	k.Norm2.Backward(b, dx, dn2) // dx = dL/dh
	dn1 := k.dn1WS.Get(b, dy.Shape()...)
	k.Attn.Backward(b, dn1, dx)
	k.Norm1.Backward(b, dx, dn1)
}

// init follows I-JEPA: trunc_normal weights, zero biases, LayerNorm 1/0, then
// fix_init_weight divides attn.proj and mlp.fc2 weights by sqrt(2*layer),
// layer = index+1.
func (k *Block) init(b tensor.Backend, rng *tensor.RNG, std float32, layer int) {
	k.Norm1.init(b)
	k.Attn.QKV.init(b, rng, std)
	k.Attn.Proj.init(b, rng, std)
	k.Norm2.init(b)
	k.MLP.FC1.init(b, rng, std)
	k.MLP.FC2.init(b, rng, std)
	s := float32(1 / math.Sqrt(2*float64(layer)))
	b.Scale(k.Attn.Proj.W.W, s)
	b.Scale(k.MLP.FC2.W.W, s)
}
