package config

import (
	"fmt"
	"math"
	"regexp"
	"strings"
)

// FieldError is one problem with one key.
type FieldError struct {
	// Key is the dotted key path (e.g. "masking.mask_scale"); for an unknown
	// environment variable, the variable's name.
	Key string
	// Source is where the value came from when loading ("configs/x.yaml:12",
	// "--set", "environment variable HJEPA_TRAINING_LR"); empty from Validate.
	Source string
	// Msg says what is wrong and what to do.
	Msg string
}

func (e FieldError) Error() string {
	if e.Source == "" {
		return e.Key + ": " + e.Msg
	}
	return e.Source + ": " + e.Key + ": " + e.Msg
}

// ValidationError lists every problem Validate found, one per line.
type ValidationError struct {
	Errors []FieldError
}

func (e *ValidationError) Error() string { return joinErrors("configuration", e.Errors) }

// Keys lists the key paths the problems are about, in order.
func (e *ValidationError) Keys() []string { return fieldKeys(e.Errors) }

// Has reports whether some problem is about key.
func (e *ValidationError) Has(key string) bool {
	for _, f := range e.Errors {
		if f.Key == key {
			return true
		}
	}
	return false
}

func joinErrors(what string, errs []FieldError) string {
	if len(errs) == 1 {
		return "invalid " + what + ": " + errs[0].Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "invalid %s (%d problems):", what, len(errs))
	for _, e := range errs {
		b.WriteString("\n  ")
		b.WriteString(e.Error())
	}
	return b.String()
}

func fieldKeys(errs []FieldError) []string {
	out := make([]string, len(errs))
	for i, e := range errs {
		out[i] = e.Key
	}
	return out
}

// Enumerations of the string keys.
var (
	Datasets    = []string{"idx", "cifar10", "cifar100", "imagefolder", "synthetic", "webdataset"}
	ShardOrders = []string{"sample", "shard"}
	LossTypes   = []string{"smoothl1", "mse"}
	Optimizers  = []string{"adamw"}
	LRSchedules = []string{"cosine", "constant", "linear"}
	LogLevels   = []string{"debug", "info", "warn", "error"}
)

// deviceRE also accepts cuda-emu, the CUDA backend on the host emulator,
// which only test binaries (-tags cudaemu) open; others say so.
var deviceRE = regexp.MustCompile(`^(auto|cpu|cuda|cuda:[0-9]+|cuda-emu)$`)

// checker collects problems.
type checker struct{ errs []FieldError }

func (c *checker) add(key, format string, args ...any) {
	c.errs = append(c.errs, FieldError{Key: key, Msg: fmt.Sprintf(format, args...)})
}

func (c *checker) positive(key string, v int) {
	if v < 1 {
		c.add(key, "is %d; must be at least 1", v)
	}
}

func (c *checker) nonNegative(key string, v int) {
	if v < 0 {
		c.add(key, "is %d; must be 0 or more", v)
	}
}

func (c *checker) nonNegativeF(key string, v float64) {
	if !(v >= 0) || math.IsInf(v, 0) {
		c.add(key, "is %g; must be a finite number >= 0", v)
	}
}

func (c *checker) positiveF(key string, v float64) {
	if !(v > 0) || math.IsInf(v, 0) {
		c.add(key, "is %g; must be a finite number > 0", v)
	}
}

func (c *checker) unit(key string, v float64) { // [0, 1]
	if !(v >= 0 && v <= 1) {
		c.add(key, "is %g; must be in [0, 1]", v)
	}
}

func (c *checker) oneOf(key, v string, allowed []string) bool {
	for _, a := range allowed {
		if v == a {
			return true
		}
	}
	c.add(key, "is %q; must be one of %s", v, strings.Join(allowed, ", "))
	return false
}

// pair checks a [lo, hi] list: two elements, each inside the interval
// described by in (which returns false for a bad element), lo <= hi.
func (c *checker) pair(key string, v []float64, in func(float64) bool, rangeDesc string) bool {
	if len(v) != 2 {
		c.add(key, "has %d elements; must be [lo, hi] with lo <= hi, each %s", len(v), rangeDesc)
		return false
	}
	ok := true
	for i, x := range v {
		if !in(x) {
			c.add(key, "element %d is %g; each must be %s", i, x, rangeDesc)
			ok = false
		}
	}
	if ok && v[0] > v[1] {
		c.add(key, "is [%g, %g]: lo > hi; write the smaller bound first", v[0], v[1])
		ok = false
	}
	return ok
}

// Validate checks ranges, enumerations and cross-field consistency and
// reports every problem at once as a *ValidationError (nil when valid). It
// does no I/O: whether data.path exists is the trainer's resource check.
func (c Config) Validate() error {
	ck := &checker{}
	c.validateModel(ck)
	c.validateData(ck)
	c.validateMasking(ck)
	c.validateTraining(ck)
	c.validateLoss(ck)
	c.validateRest(ck)
	if len(ck.errs) == 0 {
		return nil
	}
	return &ValidationError{Errors: ck.errs}
}

func (c Config) validateModel(ck *checker) {
	m := c.Model
	ck.nonNegative("model.embed_dim", m.EmbedDim)
	ck.nonNegative("model.depth", m.Depth)
	ck.nonNegative("model.num_heads", m.NumHeads)
	ck.nonNegative("model.patch_size", m.PatchSize)
	ck.nonNegativeF("model.mlp_ratio", m.MLPRatio)
	ck.positive("model.num_hierarchies", m.NumHierarchies)
	ck.positiveF("model.init_std", m.InitStd)
	ck.nonNegativeF("model.patch_embed_init_std", m.PatchEmbedInitStd)
	ck.oneOf("model.patch_embed_init", m.PatchEmbedInit, []string{PatchInitFanIn, PatchInitTruncNormal})

	e, err := c.Encoder()
	if err != nil {
		ck.add("model.encoder_type", "%v", err)
	} else if m.EmbedDim >= 0 && m.NumHeads >= 0 && m.PatchSize >= 0 && m.Depth >= 0 && m.MLPRatio >= 0 {
		if e.NumHeads > 0 && e.EmbedDim%e.NumHeads != 0 {
			ck.add("model.num_heads", "%d heads do not divide embed_dim %d; pick a divisor of %d (model.embed_dim or model.num_heads)", e.NumHeads, e.EmbedDim, e.EmbedDim)
		}
		if e.EmbedDim%4 != 0 {
			ck.add("model.embed_dim", "is %d; 2-D sin-cos positions need a multiple of 4", e.EmbedDim)
		}
		if e.PatchSize > 0 && c.Data.ImageSize > 0 {
			if c.Data.ImageSize%e.PatchSize != 0 {
				ck.add("data.image_size", "%d is not divisible by the patch size %d; use a multiple of %d (or change model.patch_size)", c.Data.ImageSize, e.PatchSize, e.PatchSize)
			} else if L := m.NumHierarchies; L >= 1 && L < 31 && 1<<(L-1) > e.Grid() {
				ck.add("model.num_hierarchies", "is %d: level %d pools %dx%d patches but the patch grid is only %dx%d; use at most %d levels",
					L, L-1, 1<<(L-1), 1<<(L-1), e.Grid(), e.Grid(), maxLevels(e.Grid()))
			}
		}
		if e.PresetImageSize > 0 && c.Data.ImageSize > 0 && e.PresetImageSize != c.Data.ImageSize {
			ck.add("model.encoder_type", "%q is for %dx%d images but data.image_size is %d; drop the _%d suffix or make them agree",
				m.EncoderType, e.PresetImageSize, e.PresetImageSize, c.Data.ImageSize, e.PresetImageSize)
		}
	}

	p := m.Predictor
	ck.positive("model.predictor.embed_dim", p.EmbedDim)
	ck.positive("model.predictor.depth", p.Depth)
	ck.positive("model.predictor.num_heads", p.NumHeads)
	ck.positiveF("model.predictor.mlp_ratio", p.MLPRatio)
	if p.EmbedDim > 0 && p.NumHeads > 0 && p.EmbedDim%p.NumHeads != 0 {
		ck.add("model.predictor.num_heads", "%d heads do not divide model.predictor.embed_dim %d; pick a divisor of %d", p.NumHeads, p.EmbedDim, p.EmbedDim)
	}
	if p.EmbedDim > 0 && p.EmbedDim%4 != 0 {
		ck.add("model.predictor.embed_dim", "is %d; 2-D sin-cos positions need a multiple of 4", p.EmbedDim)
	}
	ck.unit("model.ema.momentum", m.EMA.Momentum)
	ck.unit("model.ema.momentum_end", m.EMA.MomentumEnd)
}

func maxLevels(grid int) int {
	n := 0
	for 1<<n <= grid {
		n++
	}
	return n
}

func (c Config) validateData(ck *checker) {
	d := c.Data
	if ck.oneOf("data.dataset", d.Dataset, Datasets) {
		switch d.Dataset {
		case "synthetic":
			ck.positive("data.synthetic_size", d.SyntheticSize)
		case "webdataset":
			if strings.TrimSpace(d.Path) == "" {
				ck.add("data.path", "is empty; set it to the shards (--set 'data.path=shards/train-{000000..000127}.tar'), or use data.dataset=synthetic")
			}
		default:
			if strings.TrimSpace(d.Path) == "" {
				ck.add("data.path", "is empty; set it to the %s dataset's directory (--set data.path=DIR), or use data.dataset=synthetic", d.Dataset)
			}
		}
		switch d.Dataset {
		case "idx":
			if d.Channels != 1 {
				ck.add("data.channels", "is %d but IDX (MNIST, Fashion-MNIST) images have 1 channel; set 1", d.Channels)
			}
		case "cifar10", "cifar100":
			if d.Channels != 3 {
				ck.add("data.channels", "is %d but CIFAR images have 3 channels; set 3", d.Channels)
			}
		}
	}
	ck.positive("data.image_size", d.ImageSize)
	ck.positive("data.channels", d.Channels)
	ck.positive("data.batch_size", d.BatchSize)
	ck.nonNegative("data.num_workers", d.NumWorkers)
	ck.nonNegative("data.prefetch", d.Prefetch)
	ck.nonNegative("data.synthetic_size", d.SyntheticSize)
	ck.nonNegative("data.max_image_pixels", d.MaxImagePixels)
	ck.oneOf("data.shard_shuffle", d.ShardShuffle, ShardOrders)
	if d.Channels >= 1 {
		if len(d.Mean) != d.Channels {
			ck.add("data.mean", "has %d values; give one per channel (data.channels = %d)", len(d.Mean), d.Channels)
		}
		if len(d.Std) != d.Channels {
			ck.add("data.std", "has %d values; give one per channel (data.channels = %d)", len(d.Std), d.Channels)
		}
	}
	for i, s := range d.Std {
		if !(s > 0) {
			ck.add("data.std", "element %d is %g; every std must be > 0", i, s)
		}
	}
	a := d.Augmentation
	ck.pair("data.augmentation.crop_scale", a.CropScale, func(x float64) bool { return x > 0 && x <= 1 }, "in (0, 1]")
	ck.pair("data.augmentation.crop_ratio", a.CropRatio, func(x float64) bool { return x > 0 && !math.IsInf(x, 0) }, "> 0")
	ck.nonNegativeF("data.augmentation.color_jitter", a.ColorJitter)
	if a.Views != 1 && a.Views != 2 {
		ck.add("data.augmentation.views", "is %d; must be 1 or 2", a.Views)
	}
}

func (c Config) validateMasking(ck *checker) {
	m := c.Masking
	ck.positive("masking.num_masks", m.NumMasks)
	if m.NumContextMasks != 1 {
		ck.add("masking.num_context_masks", "is %d; only 1 context block is supported (I-JEPA's setting)", m.NumContextMasks)
	}
	ck.positive("masking.min_keep", m.MinKeep)
	scaleOK := ck.pair("masking.mask_scale", m.MaskScale, func(x float64) bool { return x > 0 && x < 1 }, "a fraction of the image in (0, 1)")
	arOK := ck.pair("masking.aspect_ratio", m.AspectRatio, func(x float64) bool { return x > 0 && !math.IsInf(x, 0) }, "> 0")
	ck.pair("masking.context_scale", m.ContextScale, func(x float64) bool { return x > 0 && x <= 1 }, "a fraction of the image in (0, 1]")

	e, err := c.Encoder()
	if err != nil || e.PatchSize <= 0 || c.Data.ImageSize <= 0 || c.Data.ImageSize%e.PatchSize != 0 {
		return // reported by validateModel
	}
	grid, n := e.Grid(), e.NumPatches()
	if m.MinKeep > n {
		ck.add("masking.min_keep", "is %d but an image has only %d patches (%dx%d); lower it", m.MinKeep, n, grid, grid)
	}
	// The top level must fit in the largest target block, or it never has a
	// window: I-JEPA sizes a block as round(sqrt(s·N·ar)) x round(sqrt(s·N/ar)).
	if L := c.Model.NumHierarchies; scaleOK && arOK && L >= 1 && L < 31 && 1<<(L-1) <= grid {
		ar := math.Min(math.Max(1, m.AspectRatio[0]), m.AspectRatio[1])
		s := m.MaskScale[1] * float64(n)
		h := min(int(math.Round(math.Sqrt(s*ar))), grid-1)
		w := min(int(math.Round(math.Sqrt(s/ar))), grid-1)
		if win := 1 << (L - 1); min(h, w) < win {
			ck.add("masking.mask_scale", "upper bound %g gives target blocks of at most %dx%d patches, too small for level %d's %dx%d windows; raise it or lower model.num_hierarchies",
				m.MaskScale[1], h, w, L-1, win, win)
		}
	}
}

func (c Config) validateTraining(ck *checker) {
	t := c.Training
	ck.nonNegative("training.max_steps", t.MaxSteps)
	if t.MaxSteps == 0 {
		ck.positive("training.epochs", t.Epochs)
	} else {
		ck.nonNegative("training.epochs", t.Epochs)
	}
	ck.nonNegativeF("training.warmup_epochs", t.WarmupEpochs)
	ck.nonNegative("training.warmup_steps", t.WarmupSteps)
	switch {
	case t.WarmupSteps > 0 && t.MaxSteps > 0 && t.WarmupSteps >= t.MaxSteps:
		ck.add("training.warmup_steps", "is %d but the run is %d steps (training.max_steps); make the warmup shorter than the run", t.WarmupSteps, t.MaxSteps)
	case t.WarmupSteps == 0 && t.Epochs > 0 && t.WarmupEpochs >= float64(t.Epochs):
		ck.add("training.warmup_epochs", "is %g but the run is %d epochs (training.epochs); make the warmup shorter than the run", t.WarmupEpochs, t.Epochs)
	}
	ck.positiveF("training.lr", t.LR)
	ck.nonNegativeF("training.start_lr", t.StartLR)
	ck.nonNegativeF("training.min_lr", t.MinLR)
	if t.MinLR > t.LR && t.LR > 0 {
		ck.add("training.min_lr", "is %g, above training.lr %g; the schedule decays from lr to min_lr, so set min_lr <= lr", t.MinLR, t.LR)
	}
	ck.nonNegativeF("training.weight_decay", t.WeightDecay)
	ck.nonNegativeF("training.weight_decay_end", t.WeightDecayEnd)
	ck.oneOf("training.optimizer", t.Optimizer, Optimizers)
	// (beta1, beta2) are not a range, so no lo <= hi rule.
	if len(t.Betas) != 2 {
		ck.add("training.betas", "has %d elements; must be [beta1, beta2], e.g. [0.9, 0.999]", len(t.Betas))
	}
	for i, b := range t.Betas {
		if !(b >= 0 && b < 1) {
			ck.add("training.betas", "element %d is %g; each beta must be in [0, 1)", i, b)
		}
	}
	ck.positiveF("training.eps", t.Eps)
	ck.oneOf("training.lr_schedule", t.LRSchedule, LRSchedules)
	ck.nonNegativeF("training.clip_grad", t.ClipGrad)
	ck.positive("training.accumulation_steps", t.AccumulationSteps)
	ck.nonNegativeF("training.grad_explosion", t.GradExplosion)
}

func (c Config) validateLoss(ck *checker) {
	l := c.Loss
	ck.oneOf("loss.type", l.Type, LossTypes)
	if L := c.Model.NumHierarchies; L >= 1 && len(l.HierarchyWeights) != L {
		ck.add("loss.hierarchy_weights", "has %d weights but model.num_hierarchies is %d; give one weight per level", len(l.HierarchyWeights), L)
	}
	sum := 0.0
	for i, w := range l.HierarchyWeights {
		if !(w >= 0) || math.IsInf(w, 0) {
			ck.add("loss.hierarchy_weights", "element %d is %g; weights must be finite and >= 0", i, w)
		}
		sum += w
	}
	if len(l.HierarchyWeights) > 0 && !(sum > 0) {
		ck.add("loss.hierarchy_weights", "are all 0; at least one level must have a positive weight")
	}
	ck.nonNegativeF("loss.vicreg.weight", l.VICReg.Weight)
	ck.nonNegativeF("loss.vicreg.variance_coeff", l.VICReg.VarianceCoeff)
	ck.nonNegativeF("loss.vicreg.covariance_coeff", l.VICReg.CovarianceCoeff)
	ck.positiveF("loss.vicreg.std_target", l.VICReg.StdTarget)
	ck.nonNegative("loss.vicreg.tokens_per_image", l.VICReg.TokensPerImage)
	ck.nonNegativeF("loss.vicreg.invariance_coeff", l.VICReg.InvarianceCoeff)
	ck.nonNegative("loss.vicreg.projector_dim", l.VICReg.ProjectorDim)
	if l.VICReg.InvarianceCoeff > 0 && l.VICReg.TokensPerImage > 0 {
		ck.add("loss.vicreg.invariance_coeff", "needs loss.vicreg.tokens_per_image 0 (it compares per-image mean embeddings); set one of them to 0")
	}
	if c.Data.Augmentation.Views == 2 && !(l.VICReg.Weight > 0 && l.VICReg.InvarianceCoeff > 0) {
		ck.add("data.augmentation.views", "is 2 but only VICReg's invariance term uses the second view; set loss.vicreg.weight and loss.vicreg.invariance_coeff > 0, or views to 1")
	}
}

func (c Config) validateRest(ck *checker) {
	ck.nonNegative("logging.grad_norms_every", c.Logging.GradNormsEvery)
	if g, e := c.Logging.GradNormsEvery, c.Logging.EverySteps; g > 0 && e > 0 && g%e != 0 {
		ck.add("logging.grad_norms_every", "is %d; must be a multiple of logging.every_steps (%d), so the norms are logged with their step", g, e)
	}
	k := c.Checkpoint
	ck.nonNegative("checkpoint.save_frequency", k.SaveFrequency)
	ck.nonNegative("checkpoint.every_steps", k.EverySteps)
	ck.nonNegative("checkpoint.keep_last", k.KeepLast)
	ck.nonNegative("checkpoint.keep_best_n", k.KeepBestN)

	g := c.Logging
	ck.positive("logging.every_steps", g.EverySteps)
	ck.oneOf("logging.level", g.Level, LogLevels)

	d := c.Distributed
	ck.positive("distributed.world_size", d.WorldSize)
	ck.positiveF("distributed.bucket_mib", d.BucketMiB)
	ck.positiveF("distributed.first_bucket_mib", d.FirstBucketMiB)
	ck.nonNegative("distributed.max_restarts", d.MaxRestarts)

	e := c.Evaluation
	ck.nonNegative("evaluation.eval_frequency", e.EvalFrequency)
	ck.nonNegative("evaluation.every_steps", e.EverySteps)
	ck.nonNegative("evaluation.val_batches", e.ValBatches)
	ck.unit("evaluation.collapse_std", e.CollapseStd)
	ck.unit("evaluation.collapse_rank", e.CollapseRank)
	ck.positive("evaluation.knn_k", e.KNNK)
	ck.positiveF("evaluation.knn_temperature", e.KNNTemp)
	if e.ProbeL2 < 0 && e.ProbeL2 != -1 {
		ck.add("evaluation.probe_l2", "is %v; use a penalty >= 0, or -1 to select it on a held-out tenth of the training images", e.ProbeL2)
	}
	ck.positive("evaluation.probe_max_iter", e.ProbeMaxIter)
	ck.nonNegative("evaluation.train_limit", e.TrainLimit)
	ck.nonNegative("evaluation.test_limit", e.TestLimit)

	if !deviceRE.MatchString(c.Device) {
		ck.add("device", "is %q; must be auto, cpu, cuda or cuda:K (K = GPU index)", c.Device)
	}
	ck.nonNegative("threads", c.Threads)
}
