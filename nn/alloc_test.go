package nn

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/hjepa-go/hjepa/tensor"
	"github.com/hjepa-go/hjepa/tensor/cpu"
)

// countingBackend counts device allocations.
type countingBackend struct {
	tensor.Backend
	allocs int
	bytes  int64 // float32 elements x 4
}

func (c *countingBackend) New(dt tensor.DType, shape ...int) *tensor.Tensor {
	c.allocs++
	n := int64(4)
	for _, d := range shape {
		n *= int64(d)
	}
	c.bytes += n
	return c.Backend.New(dt, shape...)
}

// TestSteadyStateAllocatesNothing runs encoder (with keep) + predictor
// forward/backward twice with the same shapes, then with smaller shapes: only
// the first step may allocate device memory.
func TestSteadyStateAllocatesNothing(t *testing.T) {
	cb := &countingBackend{Backend: cpu.New(2)}
	var b tensor.Backend = cb
	cfg := testEncoderConfig()
	pcfg := testPredictorConfig()
	pcfg.EmbedDim = cfg.Dim
	pb := NewBuilder()
	enc, _ := NewEncoder(pb.Scope("encoder."), cfg)
	pred, _ := NewPredictor(pb.Scope("predictor."), pcfg)
	a, err := pb.Build(b)
	if err != nil {
		t.Fatal(err)
	}
	rng := tensor.NewRNG(1)
	enc.Init(b, rng)
	pred.Init(b, rng)
	img := b.New(tensor.Float32, 2, 3, 12, 12)
	b.RandNormal(img, rng, 0, 1)
	ctxIdx := uploadIdx(b, [][]int{{0, 4, 8, 2}, {1, 3, 5, 7}})
	tgtIdx := uploadIdx(b, [][]int{{5, 1, 6}, {0, 8, 2}, {3, 7, 2}, {6, 4, 5}})
	ctxIdxSmall := uploadIdx(b, [][]int{{0, 4, 8}, {1, 3, 5}})
	tgtIdxSmall := uploadIdx(b, [][]int{{5, 1}, {0, 8}})
	dctx := b.New(tensor.Float32, 2, 4, cfg.Dim)
	dy := b.New(tensor.Float32, 4, 3, cfg.Dim)
	b.Fill(dy, 0.1)
	step := func(ci, ti *tensor.Tensor) {
		a.ZeroGrad(b)
		nc := ci.Dim(1)
		ctx := enc.Forward(b, img, ci)
		out := pred.Forward(b, ctx, ci, ti)
		d := dy.View(0, out.Shape()...)
		dc := dctx.View(0, 2, nc, cfg.Dim)
		pred.Backward(b, dc, d)
		enc.Backward(b, dc, nil)
	}
	step(ctxIdx, tgtIdx)
	first := cb.allocs
	step(ctxIdx, tgtIdx)
	step(ctxIdxSmall, tgtIdxSmall)
	step(ctxIdx, tgtIdx)
	if cb.allocs != first {
		t.Errorf("steady-state steps allocated %d device tensors", cb.allocs-first)
	}
	if first == 0 {
		t.Error("counting backend saw no allocation at all")
	}
}

func TestConfigValidateNamesFields(t *testing.T) {
	c := ViTConfig{ImgSize: 30, PatchSize: 16, InChans: 0, Dim: 30, Depth: 0, Heads: 4, MLPRatio: 0, Eps: 0, InitStd: 0.02}
	err := c.Validate()
	for _, f := range []string{"vit.patch_size", "vit.in_chans", "vit.dim", "vit.depth", "vit.heads", "vit.mlp_ratio", "vit.eps"} {
		if err == nil || !strings.Contains(err.Error(), f) {
			t.Errorf("Validate() = %v, want a mention of %s", err, f)
		}
	}
	if strings.Contains(err.Error(), "init_std") {
		t.Errorf("valid init_std reported: %v", err)
	}
	p := PredictorConfig{GridSize: 0, EmbedDim: 8, Dim: 8, Depth: 1, Heads: 3, MLPRatio: 4, Eps: 1e-6, InitStd: 0.02}
	err = p.Validate()
	for _, f := range []string{"predictor.grid_size", "predictor.heads"} {
		if err == nil || !strings.Contains(err.Error(), f) {
			t.Errorf("Validate() = %v, want a mention of %s", err, f)
		}
	}
	if _, err := NewEncoder(NewBuilder(), c); err == nil || errors.Unwrap(err) == nil && !strings.Contains(err.Error(), "vit.") {
		t.Errorf("NewEncoder with invalid config: %v", err)
	}
}

// A forward-only encoder (the EMA target) computes bit for bit what the
// same encoder computes with its activations kept, allocates a fraction of
// the bytes (one block's buffers, not Depth blocks'), and refuses Backward.
func TestForwardOnlyEncoder(t *testing.T) {
	cfg := testEncoderConfig()
	cfg.Depth = 4
	var outs [2][]float32
	var bytes [2]int64
	for i, forwardOnly := range []bool{false, true} {
		cb := &countingBackend{Backend: cpu.New(2)}
		var b tensor.Backend = cb
		pb := NewBuilder()
		enc, err := NewEncoder(pb.Scope("encoder."), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pb.Build(b); err != nil {
			t.Fatal(err)
		}
		if forwardOnly {
			enc.ForwardOnly()
		}
		rng := tensor.NewRNG(7)
		enc.Init(b, rng)
		img := b.New(tensor.Float32, 3, cfg.InChans, cfg.ImgSize, cfg.ImgSize)
		b.RandNormal(img, rng, 0, 1)
		before := cb.bytes
		enc.Forward(b, img, nil)
		y := enc.Forward(b, img, nil) // a second pass over the same buffers
		bytes[i] = cb.bytes - before
		outs[i] = make([]float32, y.Numel())
		b.Download(outs[i], y)
	}
	for k := range outs[0] {
		if math.Float32bits(outs[0][k]) != math.Float32bits(outs[1][k]) {
			t.Fatalf("element %d: %v kept, %v forward-only", k, outs[0][k], outs[1][k])
		}
	}
	if bytes[1]*2 > bytes[0] {
		t.Errorf("forward-only allocated %d bytes, with activations kept %d: want well under half", bytes[1], bytes[0])
	}
	t.Logf("forward bytes: %d kept, %d forward-only (depth %d)", bytes[0], bytes[1], cfg.Depth)
	defer func() {
		if recover() == nil {
			t.Error("Backward on a forward-only encoder did not panic")
		}
	}()
	pb := NewBuilder()
	enc, _ := NewEncoder(pb.Scope("encoder."), cfg)
	enc.ForwardOnly()
	enc.Backward(cpu.New(1), nil, nil)
}
