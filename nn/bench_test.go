package nn

import (
	"testing"

	"github.com/hjepa-go/hjepa/tensor"
	"github.com/hjepa-go/hjepa/tensor/cpu"
)

// BenchmarkEncoderPredictorStep times one forward+backward of a small ViT
// encoder (with kept patches) and predictor on cpu.New(0).
func BenchmarkEncoderPredictorStep(bm *testing.B) {
	b := cpu.New(0)
	cfg := ViTConfig{ImgSize: 32, PatchSize: 4, InChans: 3, Dim: 192, Depth: 4, Heads: 3, MLPRatio: 4, Eps: 1e-6, InitStd: 0.02}
	pcfg := PredictorConfig{GridSize: 8, EmbedDim: 192, Dim: 96, Depth: 2, Heads: 3, MLPRatio: 4, Eps: 1e-6, InitStd: 0.02}
	pb := NewBuilder()
	enc, _ := NewEncoder(pb.Scope("encoder."), cfg)
	pred, _ := NewPredictor(pb.Scope("predictor."), pcfg)
	a, err := pb.Build(b)
	if err != nil {
		bm.Fatal(err)
	}
	rng := tensor.NewRNG(1)
	enc.Init(b, rng)
	pred.Init(b, rng)
	const bs, nc, nt = 16, 40, 12
	img := b.New(tensor.Float32, bs, 3, 32, 32)
	b.RandNormal(img, rng, 0, 1)
	ci, ti := make([][]int, bs), make([][]int, bs)
	for i := range ci {
		for k := 0; k < nc; k++ {
			ci[i] = append(ci[i], (k*3+i)%64)
		}
		for k := 0; k < nt; k++ {
			ti[i] = append(ti[i], (k*5+i+1)%64)
		}
	}
	ctxIdx, tgtIdx := uploadIdx(b, ci), uploadIdx(b, ti)
	dy := b.New(tensor.Float32, bs, nt, cfg.Dim)
	b.RandNormal(dy, rng, 0, 1)
	dctx := b.New(tensor.Float32, bs, nc, cfg.Dim)
	bm.ResetTimer()
	for range bm.N {
		a.ZeroGrad(b)
		ctx := enc.Forward(b, img, ctxIdx)
		pred.Forward(b, ctx, ctxIdx, tgtIdx)
		pred.Backward(b, dctx, dy)
		enc.Backward(b, dctx, nil)
	}
	if err := b.Sync(); err != nil {
		bm.Fatal(err)
	}
}
