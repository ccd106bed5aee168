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
	"github.com/hjepa-go/hjepa/device"
	"github.com/hjepa-go/hjepa/jepa"
	"github.com/hjepa-go/hjepa/optim"
	"github.com/hjepa-go/hjepa/tensor"
)

// The H-JEPA step benchmark times one full training step of the fmnist-tiny
// model as it was first measured (configs/fmnist-tiny.yaml pinned by
// hjepaStepSets to its patch-2 recipe: 28x28x1 images, patch 2, ViT width 192
// depth 6 heads 3, predictor 96x4, 3 levels, batch 64, no VICReg): zero
// grads, target encoder on the whole image, context encoder, predictor, the
// hierarchical smooth-L1 loss against parameter-free targets (LayerNorm
// without affine; at levels l > 0 of the window means on both sides, no
// prediction heads) and its backward, the gradient norm (clip_grad 0 only
// measures it), the AdamW step with its two parameter groups and the EMA
// update of the target encoder. The baseline is the same model and step in
// PyTorch eager (bench/torch_hjepa_step.py, built on the golden fixtures'
// I-JEPA code).
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

// hjepaStepSets pin configs/fmnist-tiny.yaml to the model this benchmark has
// always measured (the preset's patch-2, 3-level recipe of before VICReg's
// views and projector), whatever the preset's recipe is now: every key that
// sets the step's shapes or work. newHJEPAStepSetup refuses what the script
// does not implement (VICReg, its projector, prediction heads).
var hjepaStepSets = []string{
	"model.encoder_type=vit_tiny_patch2_28", "model.patch_size=2", "model.embed_dim=192",
	"model.depth=6", "model.num_heads=3", "model.mlp_ratio=4",
	"model.num_hierarchies=3", "model.prediction_heads=false",
	"model.patch_embed_init=trunc_normal", "model.patch_embed_init_std=0", "model.init_std=0.02",
	"model.predictor.embed_dim=96", "model.predictor.depth=4", "model.predictor.num_heads=3",
	"model.predictor.mlp_ratio=4",
	"data.image_size=28", "data.channels=1", "data.augmentation.views=1",
	"masking.num_masks=4", "masking.mask_scale=[0.15,0.2]", "masking.aspect_ratio=[0.75,1.5]",
	"masking.num_context_masks=1", "masking.context_scale=[0.85,1.0]", "masking.min_keep=10",
	"masking.allow_overlap=false",
	"loss.type=smoothl1", "loss.hierarchy_weights=[1,0.5,0.25]",
	"loss.vicreg.weight=0", "loss.vicreg.projector_dim=0",
	"training.clip_grad=0",
}

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

// hjepaStepSetup is what both sides share: the config, the batch size and
// the masks of every iteration.
type hjepaStepSetup struct {
	cfg       config.Config
	batch     int
	masks     []*jepa.Masks
	masksFile string
}

func runHJEPAStep(want func(string) bool, report func(Result)) error {
	if !want(hjepaStepName) {
		return nil
	}
	s, err := newHJEPAStepSetup(filepath.Join("configs", "fmnist-tiny.yaml"), hjepaStepSets, hjepaStepBatch)
	if err != nil {
		return err
	}
	defer os.Remove(s.masksFile)
	ours, base := math.Inf(1), math.Inf(1)
	for range hjepaStepRounds {
		for _, th := range vitThreads {
			b := newCPU(th)
			ms, err := hjepaStepOurs(s, b, fmt.Sprintf("threads=%d", th))
			b.Close()
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

// newHJEPAStepSetup loads a config (a path from the repository root, with
// --set overrides), checks that it is a step the script implements, draws the
// masks of every iteration for batch images as the trainer does and writes
// them for the script.
func newHJEPAStepSetup(configRel string, sets []string, batch int) (*hjepaStepSetup, error) {
	path, err := benchRepoFile(configRel)
	if err != nil {
		return nil, err
	}
	cfg, err := config.Load(config.LoadOptions{ConfigFile: path, Sets: sets})
	if err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	// bench/torch_hjepa_step.py: smooth-L1 against parameter-free targets
	// and levels, no VICReg, no projector.
	if l, m := cfg.Loss, cfg.Model; l.Type != "smoothl1" || l.VICReg.Weight != 0 || l.VICReg.ProjectorDim != 0 || m.PredictionHeads {
		return nil, fmt.Errorf("%s: the baseline script implements smooth-L1 without VICReg, projector or prediction heads; got loss.type=%s, loss.vicreg.weight=%g, loss.vicreg.projector_dim=%d, model.prediction_heads=%v",
			configRel, l.Type, l.VICReg.Weight, l.VICReg.ProjectorDim, m.PredictionHeads)
	}
	mc, err := jepa.NewModelConfig(cfg)
	if err != nil {
		return nil, err
	}
	masker, err := jepa.NewMultiBlockMasker(jepa.NewMaskConfig(cfg, mc), hjepaStepSeed)
	if err != nil {
		return nil, err
	}
	s := &hjepaStepSetup{cfg: cfg, batch: batch}
	var out []hjepaStepMasks
	for i := range hjepaStepIters {
		m := masker.Sample(int64(i), batch)
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

// hjepaStepOurs times the trainer's step on b and returns the fastest
// iteration in milliseconds; label goes into the stderr summary.
func hjepaStepOurs(s *hjepaStepSetup, b tensor.Backend, label string) (float64, error) {
	cfg := s.cfg
	mc, err := jepa.NewModelConfig(cfg)
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
	img := b.New(tensor.Float32, s.batch, e.InChans, e.ImgSize, e.ImgSize)
	b.RandNormal(img, rng, 0, 1)
	loss := jepa.NewLossConfig(cfg)
	t := cfg.Training
	opt := optim.NewAdamW(b, m.Params, float32(t.Betas[0]), float32(t.Betas[1]), float32(t.Eps))
	lr, wd, ema := t.LR, t.WeightDecay, float32(cfg.Model.EMA.Momentum)

	times := make([]float64, 0, hjepaStepIters)
	for i := range 2 * len(s.masks) {
		masks := s.masks[i%len(s.masks)]
		t0 := time.Now()
		m.Params.ZeroGrad(b)
		if _, err := m.ForwardBackward(b, img, masks, loss, jepa.StepOptions{Backward: true}); err != nil {
			if derr := device.Err(b); derr != nil {
				return 0, derr // the cause of the NaN loss
			}
			return 0, err
		}
		optim.ClipGradNorm(b, m.Params.Grads, t.ClipGrad)
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
	fmt.Fprintf(os.Stderr, "hjepa_step ours %s ms_median=%.1f ms_min=%.1f iters=%d\n",
		label, times[len(times)/2], times[0], len(times))
	return times[0], nil
}

// hjepaStepTorch runs bench/torch_hjepa_step.py on the same masks under
// Debian's CPU PyTorch and returns its fastest step in milliseconds.
func hjepaStepTorch(s *hjepaStepSetup, threads int) (float64, error) {
	median, best, err := runTorch(filepath.Join("bench", "torch_hjepa_step.py"), hjepaStepTorchArgs(s, "--threads", strconv.Itoa(threads))...)
	if err != nil {
		return 0, err
	}
	fmt.Fprintf(os.Stderr, "hjepa_step torch threads=%d ms_median=%.1f ms_min=%.1f\n", threads, median, best)
	return best, nil
}

// hjepaStepTorchArgs are the script's arguments describing s's model, masks
// and hyperparameters, followed by extra.
func hjepaStepTorchArgs(s *hjepaStepSetup, extra ...string) []string {
	c := s.cfg
	t := c.Training
	mc, _ := jepa.NewModelConfig(c) // checked in newHJEPAStepSetup
	e, p := mc.Encoder, mc.Predictor
	itoa := strconv.Itoa
	ftoa := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
	args := []string{"--masks", s.masksFile,
		"--img-size", itoa(e.ImgSize), "--patch", itoa(e.PatchSize), "--channels", itoa(e.InChans),
		"--dim", itoa(e.Dim), "--depth", itoa(e.Depth), "--heads", itoa(e.Heads),
		"--pred-dim", itoa(p.Dim), "--pred-depth", itoa(p.Depth), "--pred-heads", itoa(p.Heads),
		"--lr", ftoa(t.LR), "--wd", ftoa(t.WeightDecay), "--ema", ftoa(c.Model.EMA.Momentum),
		"--clip-grad", ftoa(t.ClipGrad), "--weights"}
	for _, w := range c.Loss.HierarchyWeights {
		args = append(args, ftoa(w))
	}
	return append(args, extra...)
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
