package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"time"

	"github.com/hjepa-go/hjepa/config"
	"github.com/hjepa-go/hjepa/jepa"
	"github.com/hjepa-go/hjepa/tensor"
	"github.com/hjepa-go/hjepa/tensor/cpu"
	"github.com/hjepa-go/hjepa/train"
)

// The H-JEPA step benchmark times one full training step of the fmnist-tiny
// config (configs/fmnist-tiny.yaml: 28x28x1 images, patch 2, ViT width 192
// depth 6 heads 3, predictor 96x4, 3 levels, batch 64): zero grads, target
// encoder on the whole image, context encoder, predictor, the hierarchical
// smooth-L1 loss and its backward, the gradient norm (clip_grad 0 only
// measures it), the AdamW step with its two parameter groups and the EMA
// update of the target encoder and heads. The baseline is the same model and
// step in PyTorch eager (bench/torch_hjepa_step.py, built on the golden
// fixtures' I-JEPA code).
//
// Both sides time the same masks: hjepaStepIters sets drawn here by jepa's
// MultiBlockMasker (outside the timed region) and handed to the script in a
// JSON file. Each side first runs one untimed step per mask set, then times
// one step per set: our grow-only step buffers are then as large as these
// masks need, as they are in a run after its first steps (a step whose
// context is longer than any before pays for the reallocation, seconds of
// page faults). Images are random and uploaded once. Each side reports its
// fastest timed step over 1 and 2 threads and hjepaStepRounds interleaved
// rounds; medians go to stderr.
const (
	hjepaStepName   = "hjepa_step_fmnist_tiny"
	hjepaStepBatch  = 64
	hjepaStepIters  = 4 // mask sets; each is stepped once untimed, then once timed
	hjepaStepRounds = 2
	hjepaStepSeed   = 42
)

func init() {
	register(Bench{Names: []string{hjepaStepName}, Run: runHJEPAStep})
}

// hjepaStepMasks is one iteration's masks as the script reads them.
type hjepaStepMasks struct {
	B, Nc, Nt      int
	BlockH, BlockW int
	Context        []int32 // [B, Nc]
	Targets        []int32 // [NumTargets*B, Nt], row m*B+i = block m of image i
}

// hjepaStepSetup is what both sides share: the config and the masks of
// every iteration.
type hjepaStepSetup struct {
	cfg       config.Config
	masks     []*jepa.Masks
	masksFile string
}

func runHJEPAStep(want func(string) bool, report func(Result)) error {
	if !want(hjepaStepName) {
		return nil
	}
	s, err := newHJEPAStepSetup()
	if err != nil {
		return err
	}
	defer os.Remove(s.masksFile)
	ours, base := math.Inf(1), math.Inf(1)
	for range hjepaStepRounds {
		for _, th := range vitThreads {
			ms, err := hjepaStepOurs(s, th)
			if err != nil {
				return fmt.Errorf("%s: %w", hjepaStepName, err)
			}
			ours = min(ours, ms)
		}
		for _, th := range vitThreads {
			ms, err := hjepaStepTorch(s, th)
			if err != nil {
				return fmt.Errorf("%s baseline: %w", hjepaStepName, err)
			}
			base = min(base, ms)
		}
	}
	report(Result{Name: hjepaStepName, Value: ours, Unit: "ms", Baseline: base})
	return nil
}

// newHJEPAStepSetup loads configs/fmnist-tiny.yaml, draws the masks of every
// iteration as the trainer does and writes them for the script.
func newHJEPAStepSetup() (*hjepaStepSetup, error) {
	path, err := benchRepoFile(filepath.Join("configs", "fmnist-tiny.yaml"))
	if err != nil {
		return nil, err
	}
	cfg, err := config.Load(config.LoadOptions{ConfigFile: path})
	if err != nil {
		return nil, err
	}
	mc, err := train.ModelConfig(cfg)
	if err != nil {
		return nil, err
	}
	masker, err := jepa.NewMultiBlockMasker(train.MaskConfig(cfg, mc), hjepaStepSeed)
	if err != nil {
		return nil, err
	}
	s := &hjepaStepSetup{cfg: cfg}
	var out []hjepaStepMasks
	for i := range hjepaStepIters {
		m := masker.Sample(int64(i), hjepaStepBatch)
		s.masks = append(s.masks, m)
		out = append(out, hjepaStepMasks{B: m.B, Nc: m.Nc, Nt: m.Nt, BlockH: m.BlockH, BlockW: m.BlockW,
			Context: m.Context, Targets: m.Targets})
	}
	f, err := os.CreateTemp("", "hjepa-step-masks-*.json")
	if err != nil {
		return nil, err
	}
	s.masksFile = f.Name()
	err = json.NewEncoder(f).Encode(out)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(s.masksFile)
		return nil, fmt.Errorf("write masks %s: %w", s.masksFile, err)
	}
	return s, nil
}

// hjepaStepOurs times the trainer's step on cpu.New(threads) and returns the
// fastest iteration in milliseconds.
func hjepaStepOurs(s *hjepaStepSetup, threads int) (float64, error) {
	b := cpu.New(threads)
	defer b.Close()
	cfg := s.cfg
	mc, err := train.ModelConfig(cfg)
	if err != nil {
		return 0, err
	}
	m, err := jepa.NewModel(b, mc)
	if err != nil {
		return 0, err
	}
	rng := tensor.NewRNG(uint64(cfg.Seed))
	m.Init(b, rng)
	e := mc.Encoder
	img := b.New(tensor.Float32, hjepaStepBatch, e.InChans, e.ImgSize, e.ImgSize)
	b.RandNormal(img, rng, 0, 1)
	loss := train.LossConfig(cfg)
	t := cfg.Training
	opt := train.NewAdamW(b, m.Params, float32(t.Betas[0]), float32(t.Betas[1]), float32(t.Eps))
	lr, wd, ema := t.LR, t.WeightDecay, float32(cfg.Model.EMA.Momentum)

	times := make([]float64, 0, hjepaStepIters)
	for i := range 2 * len(s.masks) {
		masks := s.masks[i%len(s.masks)]
		t0 := time.Now()
		m.Params.ZeroGrad(b)
		if _, err := m.ForwardBackward(b, img, masks, loss, true); err != nil {
			return 0, err
		}
		train.ClipGradNorm(b, m.Params.Grads, t.ClipGrad)
		opt.Step(b, m.Params, lr, wd)
		m.UpdateTarget(b, ema)
		if err := b.Sync(); err != nil {
			return 0, err
		}
		if i >= len(s.masks) {
			times = append(times, float64(time.Since(t0).Nanoseconds())/1e6)
		}
	}
	slices.Sort(times)
	fmt.Fprintf(os.Stderr, "hjepa_step ours threads=%d ms_median=%.1f ms_min=%.1f iters=%d\n",
		threads, times[len(times)/2], times[0], len(times))
	return times[0], nil
}

// hjepaStepTorch runs bench/torch_hjepa_step.py on the same masks and
// returns its fastest step in milliseconds.
func hjepaStepTorch(s *hjepaStepSetup, threads int) (float64, error) {
	c := s.cfg
	t := c.Training
	median, best, err := runTorch(filepath.Join("bench", "torch_hjepa_step.py"), "--threads", strconv.Itoa(threads),
		"--masks", s.masksFile,
		"--lr", strconv.FormatFloat(t.LR, 'g', -1, 64), "--wd", strconv.FormatFloat(t.WeightDecay, 'g', -1, 64),
		"--ema", strconv.FormatFloat(c.Model.EMA.Momentum, 'g', -1, 64))
	if err != nil {
		return 0, err
	}
	fmt.Fprintf(os.Stderr, "hjepa_step torch threads=%d ms_median=%.1f ms_min=%.1f\n", threads, median, best)
	return best, nil
}

// benchRepoFile finds rel (a path from the repository root) relative to this
// source file's directory (go run from anywhere in the checkout) or to the
// working directory.
func benchRepoFile(rel string) (string, error) {
	var candidates []string
	if _, file, _, ok := runtime.Caller(0); ok {
		candidates = append(candidates, filepath.Join(filepath.Dir(file), "..", rel))
	}
	candidates = append(candidates, rel)
	for _, p := range candidates {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found (looked in %v); run from the repository root", rel, candidates)
}
