package nn

import (
	"fmt"
	"math"

	"github.com/hjepa-go/hjepa/tensor"
)

// SinCos2D returns I-JEPA's get_2d_sincos_pos_embed(dim, grid) as a row-major
// [grid*grid, dim] table, computed in float64 like numpy and rounded to
// float32. Patch n = i*grid + j (row i, column j). I-JEPA builds the grid with
// np.meshgrid(grid_w, grid_h), so its "emb_h" half (columns [0, dim/2)) encodes
// the column j and the second half the row i; each half is
// [sin(pos*omega_k) for k < dim/4, cos(pos*omega_k) for k < dim/4] with
// omega_k = 1/10000^(k/(dim/4)). dim must be a multiple of 4.
func SinCos2D(dim, grid int) []float32 {
	if dim%4 != 0 {
		panic(fmt.Sprintf("nn: SinCos2D dim %d is not a multiple of 4", dim))
	}
	q := dim / 4
	omega := make([]float64, q)
	for k := range omega {
		w := float64(k)
		w /= float64(dim/2) / 2
		omega[k] = 1 / math.Pow(10000, w)
	}
	out := make([]float32, grid*grid*dim)
	for i := 0; i < grid; i++ {
		for j := 0; j < grid; j++ {
			row := out[(i*grid+j)*dim:][:dim]
			for half, pos := range [2]float64{float64(j), float64(i)} {
				h := row[half*2*q:]
				for k := 0; k < q; k++ {
					v := pos * omega[k]
					h[k] = float32(math.Sin(v))
					h[q+k] = float32(math.Cos(v))
				}
			}
		}
	}
	return out
}

// posTable is a fixed [Np, D] position buffer on the backend, uploaded on
// first use.
type posTable struct {
	dim, grid int
	t         *tensor.Tensor
}

func (p *posTable) get(b tensor.Backend) *tensor.Tensor {
	if p.t == nil {
		p.t = b.New(tensor.Float32, p.grid*p.grid, p.dim)
		b.Upload(p.t, SinCos2D(p.dim, p.grid))
	}
	return p.t
}

// PatchEmbed is I-JEPA's PatchEmbed (a stride-p Conv2d) as a Linear on
// flattened patches: proj.weight is the Conv2d kernel [D, C, p, p] stored as
// [D, C*p*p], proj.bias is [D].
type PatchEmbed struct {
	Patch, InChans int
	Proj           *Linear

	patchesWS, keptWS tensor.Workspace
}

// NewPatchEmbed declares proj.weight and proj.bias under pb (e.g.
// pb.Scope("patch_embed.")).
func NewPatchEmbed(pb *Builder, inChans, patch, dim int) *PatchEmbed {
	return &PatchEmbed{Patch: patch, InChans: inChans, Proj: NewLinear(pb, "proj", inChans*patch*patch, dim, true)}
}

// Forward embeds the patches of img [B, C, H, W]. With keep [B, K] (int32
// patch indices per image, row-major over the patch grid) it embeds only the
// kept patches (gathered before the projection) and returns [B, K, D];
// with keep nil it returns [B, Np, D].
func (pe *PatchEmbed) Forward(b tensor.Backend, img, keep *tensor.Tensor) *tensor.Tensor {
	if img.Rank() != 4 || img.Dim(1) != pe.InChans || img.Dim(2)%pe.Patch != 0 || img.Dim(3)%pe.Patch != 0 {
		panic(fmt.Sprintf("nn: PatchEmbed: img %v, want [B, %d, H, W] with H, W multiples of %d", img.Shape(), pe.InChans, pe.Patch))
	}
	bs := img.Dim(0)
	np := (img.Dim(2) / pe.Patch) * (img.Dim(3) / pe.Patch)
	pd := pe.Proj.In
	patches := pe.patchesWS.Get(b, bs, np, pd)
	b.Patchify(patches, img, pe.Patch)
	x := patches
	if keep != nil {
		if keep.Rank() != 2 || keep.Dim(0) != bs {
			panic(fmt.Sprintf("nn: PatchEmbed: keep %v for %d images", keep.Shape(), bs))
		}
		k := keep.Dim(1)
		x = pe.keptWS.Get(b, bs, k, pd)
		// One gather per image: the indices are per image, and the backend
		// has no batched gather.
		for i := 0; i < bs; i++ {
			b.Gather(x.View(i*k*pd, k, pd), patches.View(i*np*pd, np, pd), keep.View(i*k, k))
		}
	}
	return pe.Proj.Forward(b, x)
}

// Backward accumulates the projection's gradients from dy [B, K, D]. There
// is no image gradient.
func (pe *PatchEmbed) Backward(b tensor.Backend, dy *tensor.Tensor) {
	pe.Proj.Backward(b, nil, dy)
}

// Encoder is I-JEPA's VisionTransformer: patch embedding, fixed sin-cos
// positions, pre-norm blocks and a final LayerNorm, no cls token.
type Encoder struct {
	Cfg    ViTConfig
	Patch  *PatchEmbed
	Blocks []*Block
	Norm   *LayerNorm

	pos    posTable
	posWS  tensor.Workspace
	gradWS tensor.Workspace
	// forwardOnly: the blocks share their buffers (ForwardOnly).
	forwardOnly bool
}

// NewEncoder declares the encoder's parameters under pb with timm's names:
// patch_embed.proj.*, blocks.{i}.*, norm.*. The trainer scopes it, e.g.
// NewEncoder(pb.Scope("encoder."), cfg).
func NewEncoder(pb *Builder, cfg ViTConfig) (*Encoder, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	e := &Encoder{Cfg: cfg, pos: posTable{dim: cfg.Dim, grid: cfg.GridSize()}}
	e.Patch = NewPatchEmbed(pb.Scope("patch_embed."), cfg.InChans, cfg.PatchSize, cfg.Dim)
	for i := 0; i < cfg.Depth; i++ {
		e.Blocks = append(e.Blocks, NewBlock(pb.Scope(fmt.Sprintf("blocks.%d.", i)), cfg.Dim, cfg.Heads, cfg.Hidden(), cfg.Eps))
		e.Blocks[i].shareBackward(e.Blocks[0])
	}
	e.Norm = NewLayerNorm(pb, "norm", cfg.Dim, cfg.Eps)
	return e, nil
}

// ForwardOnly makes e keep no activations for a backward pass: its blocks
// share one set of buffers, so a forward holds one block's activations
// instead of Depth blocks'. The EMA target encoder is forward-only (I-JEPA
// runs it under torch.no_grad()); Backward then panics.
func (e *Encoder) ForwardOnly() {
	for _, blk := range e.Blocks[min(1, len(e.Blocks)):] {
		blk.shareForward(e.Blocks[0])
	}
	e.forwardOnly = true
}

// Positions returns the fixed [Np, D] position table on b.
func (e *Encoder) Positions(b tensor.Backend) *tensor.Tensor { return e.pos.get(b) }

// Forward encodes img [B, C, H, W] (H = W = ImgSize). With keep [B, K] (int32
// patch indices per image) only the kept patches are embedded, which equals
// I-JEPA's embed + positions + apply_masks; the result is [B, K, D], or
// [B, Np, D] with keep nil.
func (e *Encoder) Forward(b tensor.Backend, img, keep *tensor.Tensor) *tensor.Tensor {
	c := e.Cfg
	if img.Rank() != 4 || img.Dim(2) != c.ImgSize || img.Dim(3) != c.ImgSize {
		panic(fmt.Sprintf("nn: Encoder: img %v, want [B, %d, %d, %d]", img.Shape(), c.InChans, c.ImgSize, c.ImgSize))
	}
	x := e.Patch.Forward(b, img, keep)
	pos := e.pos.get(b)
	bs, n := x.Dim(0), x.Dim(1)
	if keep == nil {
		b.AddRowVector(x.Reshape(bs, n*c.Dim), pos.Reshape(n*c.Dim))
	} else {
		p := e.posWS.Get(b, bs*n, c.Dim)
		b.Gather(p, pos, keep.Reshape(bs*n))
		b.Add(x, x, p.Reshape(bs, n, c.Dim))
	}
	for _, blk := range e.Blocks {
		x = blk.Forward(b, x)
	}
	return e.Norm.Forward(b, x)
}

// Backward accumulates every encoder parameter gradient from dy [B, K, D]
// (the gradient of Forward's output). There is no image gradient.
// afterBlock, when not nil, is called once block i's parameter gradients
// are final (blocks run last to first), so a data-parallel trainer can start
// reducing them while the rest of backward runs.
func (e *Encoder) Backward(b tensor.Backend, dy *tensor.Tensor, afterBlock func(i int)) {
	if e.forwardOnly {
		panic("nn: Encoder.Backward on a forward-only encoder (ForwardOnly)")
	}
	g := e.gradWS.Get(b, dy.Shape()...)
	b.Fill(g, 0)
	e.Norm.Backward(b, g, dy)
	for i := len(e.Blocks) - 1; i >= 0; i-- {
		e.Blocks[i].Backward(b, g, g)
		if afterBlock != nil {
			afterBlock(i)
		}
	}
	e.Patch.Backward(b, g)
}

// Init initialises the parameters as I-JEPA does: trunc_normal(std, -2, 2)
// for the patch-embedding and Linear weights, zero biases, LayerNorm weight 1
// and bias 0, and attn.proj / mlp.fc2 weights of block i divided by
// sqrt(2*(i+1)). Draws come from rng in declaration order.
func (e *Encoder) Init(b tensor.Backend, rng *tensor.RNG) {
	ps := e.Cfg.InitStd
	if e.Cfg.PatchInitStd > 0 {
		ps = e.Cfg.PatchInitStd
	}
	e.Patch.Proj.init(b, rng, ps)
	for i, blk := range e.Blocks {
		blk.init(b, rng, e.Cfg.InitStd, i+1)
	}
	e.Norm.init(b)
}
