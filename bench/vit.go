package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/hjepa-go/hjepa/nn"
	"github.com/hjepa-go/hjepa/tensor"
)

// The ViT benchmarks time forward + backward (every parameter gradient) of
// one encoder block and of the whole encoder of the Fashion-MNIST tiny config:
// width 192, 3 heads, MLP ratio 4, batch 64, 196 tokens (28x28x1 images,
// patch 2, all patches kept), 6 blocks. Ours runs nn on cpu.New(threads), the
// baseline is the same model in PyTorch eager (bench/torch_vit.py, the golden
// fixtures' I-JEPA code) in a subprocess with torch.set_num_threads(threads).
// Each side reports its fastest timed iteration after warm-up over 1 and 2
// threads and vitRounds interleaved rounds (the minimum is the least disturbed
// by other load on the machine; medians go to stderr).
const (
	vitBatch  = 64
	vitTokens = 196
	vitDim    = 192
	vitHeads  = 3
	vitDepth  = 6
)

var vitThreads = []int{1, 2}

// vitRounds is how many times each (side, threads) pair is measured.
const vitRounds = 2

func init() {
	register(Bench{
		Names: []string{"vit_block_fwdbwd", "vit_encoder_fwdbwd"},
		Run:   runViT,
	})
}

// vitCase is one benchmarked model: its PyTorch name and iteration counts.
type vitCase struct {
	name          string
	what          string // torch_vit.py --what
	warmup, iters int
}

func runViT(want func(string) bool, report func(Result)) error {
	cases := []vitCase{
		{name: "vit_block_fwdbwd", what: "block", warmup: 2, iters: 4},
		{name: "vit_encoder_fwdbwd", what: "encoder", warmup: 1, iters: 2},
	}
	for _, c := range cases {
		if !want(c.name) {
			continue
		}
		// Rounds alternate ours and PyTorch so that a burst of other load on
		// the machine hits both sides alike; each side keeps its best.
		ours, base := math.Inf(1), math.Inf(1)
		for range vitRounds {
			for _, th := range vitThreads {
				ms, err := vitOurs(c, th)
				if err != nil {
					return fmt.Errorf("%s: %w", c.name, err)
				}
				ours = min(ours, ms)
			}
			for _, th := range vitThreads {
				ms, err := vitTorch(c, th)
				if err != nil {
					return fmt.Errorf("%s baseline: %w", c.name, err)
				}
				base = min(base, ms)
			}
		}
		report(Result{Name: c.name, Value: ours, Unit: "ms", Baseline: base})
	}
	return nil
}

// vitOurs times nn's forward+backward on cpu.New(threads) and returns the
// fastest iteration in milliseconds.
func vitOurs(c vitCase, threads int) (float64, error) {
	b := newCPU(threads)
	defer b.Close()
	rng := tensor.NewRNG(1)
	pb := nn.NewBuilder()
	dy := b.New(tensor.Float32, vitBatch, vitTokens, vitDim)
	b.RandNormal(dy, rng, 0, 1)

	var step func()
	var arena *nn.Arena
	var err error
	switch c.what {
	case "block":
		blk := nn.NewBlock(pb.Scope("blocks.0."), vitDim, vitHeads, 4*vitDim, 1e-6)
		if arena, err = pb.Build(b); err != nil {
			return 0, err
		}
		// Values as in torch_vit.py (N(0, 0.02) everywhere); the time does not
		// depend on them.
		b.RandNormal(arena.Values, rng, 0, 0.02)
		x := b.New(tensor.Float32, vitBatch, vitTokens, vitDim)
		dx := b.New(tensor.Float32, vitBatch, vitTokens, vitDim)
		b.RandNormal(x, rng, 0, 1)
		step = func() {
			blk.Forward(b, x)
			blk.Backward(b, dx, dy)
		}
	case "encoder":
		cfg := nn.ViTConfig{ImgSize: 28, PatchSize: 2, InChans: 1, Dim: vitDim, Depth: vitDepth, Heads: vitHeads,
			MLPRatio: 4, Eps: 1e-6, InitStd: 0.02}
		enc, err := nn.NewEncoder(pb, cfg)
		if err != nil {
			return 0, err
		}
		if cfg.NumPatches() != vitTokens {
			return 0, fmt.Errorf("encoder has %d patches, want %d", cfg.NumPatches(), vitTokens)
		}
		if arena, err = pb.Build(b); err != nil {
			return 0, err
		}
		enc.Init(b, rng)
		img := b.New(tensor.Float32, vitBatch, 1, 28, 28)
		b.RandNormal(img, rng, 0, 1)
		step = func() {
			enc.Forward(b, img, nil)
			enc.Backward(b, dy, nil)
		}
	default:
		return 0, fmt.Errorf("unknown case %q", c.what)
	}

	times := make([]float64, 0, c.iters)
	for i := 0; i < c.warmup+c.iters; i++ {
		t0 := time.Now()
		arena.ZeroGrad(b)
		step()
		if err := b.Sync(); err != nil {
			return 0, err
		}
		if i >= c.warmup {
			times = append(times, float64(time.Since(t0).Nanoseconds())/1e6)
		}
	}
	slices.Sort(times)
	fmt.Fprintf(os.Stderr, "vit %s ours threads=%d ms_median=%.1f ms_min=%.1f iters=%d\n",
		c.what, threads, times[len(times)/2], times[0], len(times))
	return times[0], nil
}

// vitTorch runs bench/torch_vit.py and returns its fastest iteration in
// milliseconds.
func vitTorch(c vitCase, threads int) (float64, error) {
	median, best, err := runTorch(filepath.Join("bench", "torch_vit.py"), "--what", c.what, "--threads", strconv.Itoa(threads),
		"--batch", strconv.Itoa(vitBatch), "--dim", strconv.Itoa(vitDim), "--heads", strconv.Itoa(vitHeads),
		"--depth", strconv.Itoa(vitDepth), "--warmup", strconv.Itoa(c.warmup), "--iters", strconv.Itoa(c.iters))
	if err != nil {
		return 0, err
	}
	fmt.Fprintf(os.Stderr, "vit %s torch threads=%d ms_median=%.1f ms_min=%.1f\n", c.what, threads, median, best)
	return best, nil
}
