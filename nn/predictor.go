package nn

import (
	"fmt"

	"github.com/hjepa-go/hjepa/tensor"
)

// Predictor is I-JEPA's VisionTransformerPredictor: predictor_embed (D->Dp),
// positions at the context indices, one learned mask_token plus the position
// of each target index, predictor_blocks over [context; targets] per image,
// predictor_norm on the target rows and predictor_proj (Dp->D).
type Predictor struct {
	Cfg       PredictorConfig
	Embed     *Linear
	MaskToken *Param // [1, 1, Dp]
	Blocks    []*Block
	Norm      *LayerNorm
	Proj      *Linear

	pos posTable
	// Saved by Forward for Backward.
	bs, bt, nc, nt int
	tokWS          tensor.Workspace // [B*Nc + B'*Nt, Dp]: embedded context, then targets
	posWS          tensor.Workspace // [B*Nc, Dp] context positions
	zWS            tensor.Workspace // [B', Nc+Nt, Dp] concatenated sequence
	ztWS           tensor.Workspace // [B'*Nt, Dp] target rows of the last block
	dnWS, dztWS    tensor.Workspace
	dzWS, dtokWS   tensor.Workspace
	catIdx, outIdx indexBuf
}

// NewPredictor declares predictor_embed.*, mask_token, predictor_blocks.{i}.*,
// predictor_norm.* and predictor_proj.* under pb (I-JEPA's state_dict keys),
// in forward order (mask_token after predictor_embed).
func NewPredictor(pb *Builder, cfg PredictorConfig) (*Predictor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p := &Predictor{Cfg: cfg, pos: posTable{dim: cfg.Dim, grid: cfg.GridSize}}
	p.Embed = NewLinear(pb, "predictor_embed", cfg.EmbedDim, cfg.Dim, true)
	p.MaskToken = pb.Param("mask_token", false, 1, 1, cfg.Dim)
	for i := 0; i < cfg.Depth; i++ {
		p.Blocks = append(p.Blocks, NewBlock(pb.Scope(fmt.Sprintf("predictor_blocks.%d.", i)), cfg.Dim, cfg.Heads, cfg.Hidden(), cfg.Eps))
		p.Blocks[i].shareBackward(p.Blocks[0])
	}
	p.Norm = NewLayerNorm(pb, "predictor_norm", cfg.Dim, cfg.Eps)
	p.Proj = NewLinear(pb, "predictor_proj", cfg.Dim, cfg.EmbedDim, true)
	return p, nil
}

// Positions returns the fixed [Np, Dp] position table on b.
func (p *Predictor) Positions(b tensor.Backend) *tensor.Tensor { return p.pos.get(b) }

// Forward predicts the target tokens. ctx [B, Nc, D] are the context
// encoder's outputs at ctxIdx [B, Nc] (int32 patch indices per image);
// tgtIdx [B', Nt] are the target patch indices. B' may be a multiple M*B:
// then row m*B+i of tgtIdx belongs to image i (I-JEPA's x.repeat(len(masks))
// layout, one predictor pass per target mask). Returns [B', Nt, D].
func (p *Predictor) Forward(b tensor.Backend, ctx, ctxIdx, tgtIdx *tensor.Tensor) *tensor.Tensor {
	c := p.Cfg
	if ctx.Rank() != 3 || ctx.Dim(2) != c.EmbedDim || ctxIdx.Rank() != 2 || ctxIdx.Dim(0) != ctx.Dim(0) || ctxIdx.Dim(1) != ctx.Dim(1) ||
		tgtIdx.Rank() != 2 || tgtIdx.Dim(0)%ctx.Dim(0) != 0 {
		panic(fmt.Sprintf("nn: Predictor: ctx %v, ctxIdx %v, tgtIdx %v; want [B, Nc, %d], [B, Nc], [M*B, Nt]",
			ctx.Shape(), ctxIdx.Shape(), tgtIdx.Shape(), c.EmbedDim))
	}
	bs, nc := ctx.Dim(0), ctx.Dim(1)
	bt, nt := tgtIdx.Dim(0), tgtIdx.Dim(1)
	p.bs, p.bt, p.nc, p.nt = bs, bt, nc, nt
	dp, n := c.Dim, nc+nt
	pos := p.pos.get(b)

	// tok = [embed(ctx) + pos[ctxIdx] (B*Nc rows); mask_token + pos[tgtIdx] (B'*Nt rows)]
	tok := p.tokWS.Get(b, bs*nc+bt*nt, dp)
	ctxTok := tok.View(0, bs*nc, dp)
	p.Embed.ForwardInto(b, ctxTok, ctx)
	cp := p.posWS.Get(b, bs*nc, dp)
	b.Gather(cp, pos, ctxIdx.Reshape(bs*nc))
	b.Add(ctxTok, ctxTok, cp)
	tgtTok := tok.View(bs*nc*dp, bt*nt, dp)
	b.Gather(tgtTok, pos, tgtIdx.Reshape(bt*nt))
	b.AddRowVector(tgtTok, p.MaskToken.W.Reshape(dp))

	// z[i'] = [ctxTok of image i'%B; tgtTok of row i'] via one gather.
	cat := p.catIdx.get(b, [4]int{bs, bt, nc, nt}, func(idx []int32) {
		for i := 0; i < bt; i++ {
			row := idx[i*n:]
			for r := 0; r < nc; r++ {
				row[r] = int32((i%bs)*nc + r)
			}
			for r := 0; r < nt; r++ {
				row[nc+r] = int32(bs*nc + i*nt + r)
			}
		}
	}, bt*n)
	z := p.zWS.Get(b, bt, n, dp)
	b.Gather(z.Reshape(bt*n, dp), tok, cat)
	for _, blk := range p.Blocks {
		z = blk.Forward(b, z)
	}

	// Only the target rows go through predictor_norm and predictor_proj.
	out := p.outIdx.get(b, [4]int{bt, nc, nt, 0}, func(idx []int32) {
		for i := 0; i < bt; i++ {
			for r := 0; r < nt; r++ {
				idx[i*nt+r] = int32(i*n + nc + r)
			}
		}
	}, bt*nt)
	zt := p.ztWS.Get(b, bt, nt, dp)
	b.Gather(zt.Reshape(bt*nt, dp), z.Reshape(bt*n, dp), out)
	return p.Proj.Forward(b, p.Norm.Forward(b, zt))
}

// Backward overwrites dctx [B, Nc, D] (nil skips it) from dy [B', Nt, D] and
// accumulates every predictor parameter gradient, mask_token included.
func (p *Predictor) Backward(b tensor.Backend, dctx, dy *tensor.Tensor) {
	bs, bt, nc, nt, dp := p.bs, p.bt, p.nc, p.nt, p.Cfg.Dim
	n := nc + nt
	dn := p.dnWS.Get(b, bt, nt, dp)
	p.Proj.Backward(b, dn, dy)
	dzt := p.dztWS.Get(b, bt*nt, dp)
	b.Fill(dzt, 0)
	p.Norm.Backward(b, dzt, dn)
	dz := p.dzWS.Get(b, bt, n, dp)
	b.Fill(dz, 0)
	b.ScatterAdd(dz.Reshape(bt*n, dp), dzt, p.outIdx.t)
	for i := len(p.Blocks) - 1; i >= 0; i-- {
		p.Blocks[i].Backward(b, dz, dz)
	}
	dtok := p.dtokWS.Get(b, bs*nc+bt*nt, dp)
	b.Fill(dtok, 0)
	b.ScatterAdd(dtok, dz.Reshape(bt*n, dp), p.catIdx.t)
	b.SumRows(p.MaskToken.G.Reshape(dp), dtok.View(bs*nc*dp, bt*nt, dp))
	dctxTok := dtok.View(0, bs*nc, dp)
	p.Embed.Backward(b, dctx, dctxTok)
}

// Init initialises the predictor as I-JEPA does: trunc_normal(std) for the
// mask token and every Linear weight, zero biases, LayerNorm 1/0, and
// attn.proj / mlp.fc2 of predictor block i divided by sqrt(2*(i+1)).
func (p *Predictor) Init(b tensor.Backend, rng *tensor.RNG) {
	std := p.Cfg.InitStd
	p.Embed.init(b, rng, std)
	b.TruncNormal(p.MaskToken.W, rng, 0, std, -2, 2)
	for i, blk := range p.Blocks {
		blk.init(b, rng, std, i+1)
	}
	p.Norm.init(b)
	p.Proj.init(b, rng, std)
}

// indexBuf is an int32 index tensor that depends only on shapes: rebuilt on
// the host and uploaded when the key changes, reused otherwise.
type indexBuf struct {
	key  [4]int
	host []int32
	t    *tensor.Tensor
	cap  int
}

func (ib *indexBuf) get(b tensor.Backend, key [4]int, fill func([]int32), n int) *tensor.Tensor {
	if ib.t != nil && ib.key == key {
		return ib.t
	}
	if n > ib.cap || ib.t == nil {
		ib.host = make([]int32, n)
		ib.t = b.New(tensor.Int32, n)
		ib.cap = n
	}
	ib.host = ib.host[:n]
	fill(ib.host)
	t := ib.t
	if t.Numel() != n {
		t = tensor.NewView(t.Storage(), t.Offset(), n)
	}
	b.UploadInt32(t, ib.host)
	ib.t, ib.key = t, key
	return t
}
