// Package config is hjepa-go's one configuration schema: a tree of structs
// with mapstructure tags (the YAML keys), defaults in Default(), loading with
// viper (file, --set overrides, HJEPA_* environment) and validation that
// reports every problem at once with its key path. Section and key names
// follow the PyTorch H-JEPA configs (model, data, masking, training, loss,
// checkpoint, logging, distributed, evaluation, seed, device).
package config

// Config is the whole run configuration.
type Config struct {
	Model       Model       `mapstructure:"model" yaml:"model" json:"model"`
	Data        Data        `mapstructure:"data" yaml:"data" json:"data"`
	Masking     Masking     `mapstructure:"masking" yaml:"masking" json:"masking"`
	Training    Training    `mapstructure:"training" yaml:"training" json:"training"`
	Loss        Loss        `mapstructure:"loss" yaml:"loss" json:"loss"`
	Checkpoint  Checkpoint  `mapstructure:"checkpoint" yaml:"checkpoint" json:"checkpoint"`
	Logging     Logging     `mapstructure:"logging" yaml:"logging" json:"logging"`
	Distributed Distributed `mapstructure:"distributed" yaml:"distributed" json:"distributed"`
	Evaluation  Evaluation  `mapstructure:"evaluation" yaml:"evaluation" json:"evaluation"`
	// Seed seeds every random stream (init, masks, augmentation, sampler).
	Seed int64 `mapstructure:"seed" yaml:"seed" json:"seed"`
	// Device is auto, cpu, cuda or cuda:K.
	Device string `mapstructure:"device" yaml:"device" json:"device"`
	// Threads is the CPU backend's worker count (0: all cores).
	Threads int `mapstructure:"threads" yaml:"threads" json:"threads"`
	// AllowTF32 lets the CUDA backend's GEMMs round their inputs to TF32 on
	// tensor cores (torch.backends.cuda.matmul.allow_tf32); off: exact FP32.
	AllowTF32 bool `mapstructure:"allow_tf32" yaml:"allow_tf32" json:"allow_tf32"`
}

// Model describes the context/target encoder, predictor, hierarchy and EMA.
type Model struct {
	// EncoderType is a ViT preset: vit_tiny, vit_small, vit_base, vit_large,
	// vit_huge, vit_giant, optionally with _patchP_S (e.g. vit_base_patch16_224);
	// "custom" uses the fields below.
	EncoderType string `mapstructure:"encoder_type" yaml:"encoder_type" json:"encoder_type"`
	// EmbedDim, Depth, NumHeads, PatchSize, MLPRatio override the preset when > 0.
	EmbedDim  int     `mapstructure:"embed_dim" yaml:"embed_dim" json:"embed_dim"`
	Depth     int     `mapstructure:"depth" yaml:"depth" json:"depth"`
	NumHeads  int     `mapstructure:"num_heads" yaml:"num_heads" json:"num_heads"`
	PatchSize int     `mapstructure:"patch_size" yaml:"patch_size" json:"patch_size"`
	MLPRatio  float64 `mapstructure:"mlp_ratio" yaml:"mlp_ratio" json:"mlp_ratio"`
	// NumHierarchies is L, the number of levels (level l pools 2^l x 2^l patches).
	NumHierarchies int       `mapstructure:"num_hierarchies" yaml:"num_hierarchies" json:"num_hierarchies"`
	Predictor      Predictor `mapstructure:"predictor" yaml:"predictor" json:"predictor"`
	EMA            EMA       `mapstructure:"ema" yaml:"ema" json:"ema"`
	InitStd        float64   `mapstructure:"init_std" yaml:"init_std" json:"init_std"`
	// PatchEmbedInit is the patch embedding's initialisation: "fan_in"
	// draws trunc_normal with std 1/sqrt(3*fan_in), the variance of
	// PyTorch's Conv2d default, so image content keeps a share of each token
	// at any patch size (fan_in = channels*patch^2); "trunc_normal" is
	// I-JEPA's trunc_normal(init_std), which with few pixels per patch
	// (patch 2, one channel: fan-in 4) leaves the content ~1% of the tokens'
	// variance and the fixed sin-cos positions the rest.
	PatchEmbedInit string `mapstructure:"patch_embed_init" yaml:"patch_embed_init" json:"patch_embed_init"`
	// PatchEmbedInitStd, when > 0, is the patch embedding's trunc_normal std
	// and overrides patch_embed_init.
	PatchEmbedInitStd float64 `mapstructure:"patch_embed_init_std" yaml:"patch_embed_init_std" json:"patch_embed_init_std"`
	// PredictionHeads gives each level l > 0 a trained head (Linear +
	// LayerNorm) on its pooled predictions; without it they are LayerNorm'd
	// without affine, like the targets. Targets never have parameters.
	PredictionHeads bool `mapstructure:"prediction_heads" yaml:"prediction_heads" json:"prediction_heads"`
}

// Predictor is the narrow ViT that predicts target features.
type Predictor struct {
	EmbedDim int     `mapstructure:"embed_dim" yaml:"embed_dim" json:"embed_dim"`
	Depth    int     `mapstructure:"depth" yaml:"depth" json:"depth"`
	NumHeads int     `mapstructure:"num_heads" yaml:"num_heads" json:"num_heads"`
	MLPRatio float64 `mapstructure:"mlp_ratio" yaml:"mlp_ratio" json:"mlp_ratio"`
}

// EMA is the target encoder's momentum schedule: linear from Momentum to
// MomentumEnd over the run (I-JEPA), stepped every iteration.
type EMA struct {
	Momentum    float64 `mapstructure:"momentum" yaml:"momentum" json:"momentum"`
	MomentumEnd float64 `mapstructure:"momentum_end" yaml:"momentum_end" json:"momentum_end"`
}

// Data selects the dataset, its loading and augmentation.
type Data struct {
	// Dataset is idx, cifar10, cifar100, imagefolder, synthetic or
	// webdataset (tar shards).
	Dataset string `mapstructure:"dataset" yaml:"dataset" json:"dataset"`
	// Path is the dataset's directory (idx: the directory holding
	// train-images-idx3-ubyte[.gz] and friends; cifar: the extracted
	// *-batches-bin directory; imagefolder: the train/ tree; webdataset:
	// the shards, e.g. shards/train-{000000..000127}.tar, a glob or a
	// comma-separated list).
	Path string `mapstructure:"path" yaml:"path" json:"path"`
	// ValPath is the validation split; empty picks the dataset's own test split.
	ValPath   string `mapstructure:"val_path" yaml:"val_path" json:"val_path"`
	ImageSize int    `mapstructure:"image_size" yaml:"image_size" json:"image_size"`
	Channels  int    `mapstructure:"channels" yaml:"channels" json:"channels"`
	// BatchSize is per process, as in PyTorch DDP.
	BatchSize int `mapstructure:"batch_size" yaml:"batch_size" json:"batch_size"`
	// NumWorkers decode images (0: one per CPU core); Prefetch batches are
	// prepared ahead of the step.
	NumWorkers   int          `mapstructure:"num_workers" yaml:"num_workers" json:"num_workers"`
	Prefetch     int          `mapstructure:"prefetch" yaml:"prefetch" json:"prefetch"`
	Mean         []float64    `mapstructure:"mean" yaml:"mean" json:"mean"`
	Std          []float64    `mapstructure:"std" yaml:"std" json:"std"`
	Augmentation Augmentation `mapstructure:"augmentation" yaml:"augmentation" json:"augmentation"`
	// SyntheticSize is the number of images of the synthetic dataset.
	SyntheticSize int `mapstructure:"synthetic_size" yaml:"synthetic_size" json:"synthetic_size"`
	// MaxImagePixels is the largest ImageFolder image (width x height)
	// decoded; a file whose header declares more stops the run naming it.
	// 0: the data package's default (64 Mpixel).
	MaxImagePixels int `mapstructure:"max_image_pixels" yaml:"max_image_pixels" json:"max_image_pixels"`
	// ShardShuffle is the training order of webdataset shards: "sample"
	// shuffles samples over all shards exactly as an ImageFolder of the same
	// images; "shard" shuffles the shards each epoch and gives each rank
	// whole shards (needs at least as many shards as ranks).
	ShardShuffle string `mapstructure:"shard_shuffle" yaml:"shard_shuffle" json:"shard_shuffle"`
}

// Augmentation is the training transform (I-JEPA: crop and flip only).
type Augmentation struct {
	RandomCrop     bool      `mapstructure:"random_crop" yaml:"random_crop" json:"random_crop"`
	CropScale      []float64 `mapstructure:"crop_scale" yaml:"crop_scale" json:"crop_scale"`
	CropRatio      []float64 `mapstructure:"crop_ratio" yaml:"crop_ratio" json:"crop_ratio"`
	HorizontalFlip bool      `mapstructure:"horizontal_flip" yaml:"horizontal_flip" json:"horizontal_flip"`
	ColorJitter    float64   `mapstructure:"color_jitter" yaml:"color_jitter" json:"color_jitter"`
	// Views is the number of independently augmented views of each training
	// image (1 or 2). With 2, the JEPA loss sees the first view and VICReg's
	// invariance term compares its mean context embedding with the target
	// encoder's mean embedding of the second (loss.vicreg.invariance_coeff).
	Views int `mapstructure:"views" yaml:"views" json:"views"`
}

// Masking is I-JEPA's multi-block masking.
type Masking struct {
	NumMasks        int       `mapstructure:"num_masks" yaml:"num_masks" json:"num_masks"`
	MaskScale       []float64 `mapstructure:"mask_scale" yaml:"mask_scale" json:"mask_scale"`
	AspectRatio     []float64 `mapstructure:"aspect_ratio" yaml:"aspect_ratio" json:"aspect_ratio"`
	NumContextMasks int       `mapstructure:"num_context_masks" yaml:"num_context_masks" json:"num_context_masks"`
	ContextScale    []float64 `mapstructure:"context_scale" yaml:"context_scale" json:"context_scale"`
	MinKeep         int       `mapstructure:"min_keep" yaml:"min_keep" json:"min_keep"`
	AllowOverlap    bool      `mapstructure:"allow_overlap" yaml:"allow_overlap" json:"allow_overlap"`
}

// Training is the optimisation schedule.
type Training struct {
	Epochs int `mapstructure:"epochs" yaml:"epochs" json:"epochs"`
	// MaxSteps, when > 0, overrides Epochs (quick runs and tests).
	MaxSteps int `mapstructure:"max_steps" yaml:"max_steps" json:"max_steps"`
	// WarmupSteps, when > 0, overrides WarmupEpochs; see Training.Steps for
	// how both combine with MaxSteps.
	WarmupEpochs   float64   `mapstructure:"warmup_epochs" yaml:"warmup_epochs" json:"warmup_epochs"`
	WarmupSteps    int       `mapstructure:"warmup_steps" yaml:"warmup_steps" json:"warmup_steps"`
	LR             float64   `mapstructure:"lr" yaml:"lr" json:"lr"`
	StartLR        float64   `mapstructure:"start_lr" yaml:"start_lr" json:"start_lr"`
	MinLR          float64   `mapstructure:"min_lr" yaml:"min_lr" json:"min_lr"`
	WeightDecay    float64   `mapstructure:"weight_decay" yaml:"weight_decay" json:"weight_decay"`
	WeightDecayEnd float64   `mapstructure:"weight_decay_end" yaml:"weight_decay_end" json:"weight_decay_end"`
	Optimizer      string    `mapstructure:"optimizer" yaml:"optimizer" json:"optimizer"`
	Betas          []float64 `mapstructure:"betas" yaml:"betas" json:"betas"`
	Eps            float64   `mapstructure:"eps" yaml:"eps" json:"eps"`
	LRSchedule     string    `mapstructure:"lr_schedule" yaml:"lr_schedule" json:"lr_schedule"`
	// ClipGrad is the global gradient-norm bound (0: off).
	ClipGrad          float64 `mapstructure:"clip_grad" yaml:"clip_grad" json:"clip_grad"`
	AccumulationSteps int     `mapstructure:"accumulation_steps" yaml:"accumulation_steps" json:"accumulation_steps"`
	// GradExplosion logs an alarm when the gradient norm exceeds it.
	GradExplosion float64 `mapstructure:"grad_explosion" yaml:"grad_explosion" json:"grad_explosion"`
}

// Loss is the hierarchical prediction loss plus optional VICReg.
type Loss struct {
	// Type is smoothl1 or mse.
	Type             string    `mapstructure:"type" yaml:"type" json:"type"`
	HierarchyWeights []float64 `mapstructure:"hierarchy_weights" yaml:"hierarchy_weights" json:"hierarchy_weights"`
	// NormalizeEmbeddings LayerNorms (no affine) the target tokens and, at
	// levels > 0, both sides' window means, as I-JEPA's F.layer_norm; false
	// compares the raw target-encoder output (jepa.LossConfig.RawTargets).
	NormalizeEmbeddings bool   `mapstructure:"normalize_embeddings" yaml:"normalize_embeddings" json:"normalize_embeddings"`
	VICReg              VICReg `mapstructure:"vicreg" yaml:"vicreg" json:"vicreg"`
}

// VICReg is the variance/covariance regulariser (Bardes et al.).
type VICReg struct {
	Weight          float64 `mapstructure:"weight" yaml:"weight" json:"weight"`
	VarianceCoeff   float64 `mapstructure:"variance_coeff" yaml:"variance_coeff" json:"variance_coeff"`
	CovarianceCoeff float64 `mapstructure:"covariance_coeff" yaml:"covariance_coeff" json:"covariance_coeff"`
	// StdTarget is the std the variance hinge holds every dimension above
	// (VICReg's gamma, 1 there). Pooled LayerNorm'd ViT features start with
	// a per-dimension std near 0.2, so a target near that keeps them from
	// shrinking without pushing them to whiten.
	StdTarget float64 `mapstructure:"std_target" yaml:"std_target" json:"std_target"`
	// TokensPerImage chooses the samples: 0 takes one per image (the mean of
	// its context embeddings); K > 0 takes K context token embeddings per
	// image, evenly spaced along its context list.
	TokensPerImage int `mapstructure:"tokens_per_image" yaml:"tokens_per_image" json:"tokens_per_image"`
	// InvarianceCoeff weighs VICReg's invariance term (mean squared
	// difference) between each image's mean context embedding and the EMA
	// target encoder's mean embedding of the whole image (0: off; needs
	// tokens_per_image 0).
	InvarianceCoeff float64 `mapstructure:"invariance_coeff" yaml:"invariance_coeff" json:"invariance_coeff"`
	// ProjectorDim > 0 puts VICReg on a trained expander (Linear(D, P),
	// GELU, Linear(P, P) without bias) of the pooled embeddings, as the official VICReg,
	// instead of on the encoder's features themselves (0).
	ProjectorDim int `mapstructure:"projector_dim" yaml:"projector_dim" json:"projector_dim"`
}

// Checkpoint says where and when checkpoints are written.
type Checkpoint struct {
	// Dir defaults to <out>/checkpoints.
	Dir           string `mapstructure:"dir" yaml:"dir" json:"dir"`
	SaveFrequency int    `mapstructure:"save_frequency" yaml:"save_frequency" json:"save_frequency"` // epochs
	EverySteps    int    `mapstructure:"every_steps" yaml:"every_steps" json:"every_steps"`
	KeepLast      int    `mapstructure:"keep_last" yaml:"keep_last" json:"keep_last"`
	KeepBestN     int    `mapstructure:"keep_best_n" yaml:"keep_best_n" json:"keep_best_n"`
}

// Logging configures the console, the files and TensorBoard.
type Logging struct {
	ExperimentName string `mapstructure:"experiment_name" yaml:"experiment_name" json:"experiment_name"`
	// Dir defaults to <out>/logs.
	Dir         string `mapstructure:"dir" yaml:"dir" json:"dir"`
	EverySteps  int    `mapstructure:"every_steps" yaml:"every_steps" json:"every_steps"`
	Level       string `mapstructure:"level" yaml:"level" json:"level"`
	TensorBoard bool   `mapstructure:"tensorboard" yaml:"tensorboard" json:"tensorboard"`
	Plots       bool   `mapstructure:"plots" yaml:"plots" json:"plots"`
	// GradNormsEvery > 0 measures, every that many steps, the gradient norm
	// of the JEPA loss and of the VICReg term apart (two extra
	// forward/backward passes on the step's batch, this replica's alone),
	// logged as grad_norm_jepa and grad_norm_vicreg.
	GradNormsEvery int  `mapstructure:"grad_norms_every" yaml:"grad_norms_every" json:"grad_norms_every"`
	Progress       bool `mapstructure:"progress" yaml:"progress" json:"progress"`
}

// Distributed configures the multi-process runtime (issue 4).
type Distributed struct {
	Enabled   bool `mapstructure:"enabled" yaml:"enabled" json:"enabled"`
	WorldSize int  `mapstructure:"world_size" yaml:"world_size" json:"world_size"`
	// BucketMiB and FirstBucketMiB size the gradient all-reduce buckets.
	BucketMiB      float64 `mapstructure:"bucket_mib" yaml:"bucket_mib" json:"bucket_mib"`
	FirstBucketMiB float64 `mapstructure:"first_bucket_mib" yaml:"first_bucket_mib" json:"first_bucket_mib"`
	MaxRestarts    int     `mapstructure:"max_restarts" yaml:"max_restarts" json:"max_restarts"`
}

// Evaluation configures validation and the collapse monitors.
type Evaluation struct {
	EvalFrequency int `mapstructure:"eval_frequency" yaml:"eval_frequency" json:"eval_frequency"` // epochs
	EverySteps    int `mapstructure:"every_steps" yaml:"every_steps" json:"every_steps"`
	// ValBatches bounds the validation pass (0: the whole split).
	ValBatches int `mapstructure:"val_batches" yaml:"val_batches" json:"val_batches"`
	// The collapse alarm compares each validation with the run's own
	// history: CollapseRank alarms when the centred RankMe of pooled target
	// features falls below that fraction of its peak in the run,
	// CollapseStd when their mean per-dimension std falls below that
	// fraction of its value at initialisation (0: that alarm is off).
	CollapseStd  float64 `mapstructure:"collapse_std" yaml:"collapse_std" json:"collapse_std"`
	CollapseRank float64 `mapstructure:"collapse_rank" yaml:"collapse_rank" json:"collapse_rank"`
	KNNK         int     `mapstructure:"knn_k" yaml:"knn_k" json:"knn_k"`
	KNNTemp      float64 `mapstructure:"knn_temperature" yaml:"knn_temperature" json:"knn_temperature"`
	// ProbeL2 is the probe's L2 penalty; -1 selects it from
	// 1e-1..1e-6 by accuracy on a held-out tenth of the training images.
	ProbeL2      float64 `mapstructure:"probe_l2" yaml:"probe_l2" json:"probe_l2"`
	ProbeMaxIter int     `mapstructure:"probe_max_iter" yaml:"probe_max_iter" json:"probe_max_iter"`
	// TrainLimit/TestLimit bound the images used by the probe (0: all).
	TrainLimit int `mapstructure:"train_limit" yaml:"train_limit" json:"train_limit"`
	TestLimit  int `mapstructure:"test_limit" yaml:"test_limit" json:"test_limit"`
}
