package config

// Default returns every default of the schema. Where the PyTorch H-JEPA
// configs/default.yaml has a key, the value follows it, except where I-JEPA
// (Assran et al. 2023, facebookresearch/ijepa), which H-JEPA builds on, is
// the better-founded choice; those places say so. Default alone does not
// validate: data.path has no sensible default and must be set (or
// data.dataset set to synthetic).
func Default() Config {
	return Config{
		Model: Model{
			// ViT-B/16 at 224, as the PyTorch default.yaml.
			EncoderType: "vit_base_patch16_224",
			// 0: take the value from the encoder_type preset.
			EmbedDim:  0,
			Depth:     0,
			NumHeads:  0,
			PatchSize: 0,
			MLPRatio:  0,
			// Levels pool 1x1, 2x2 and 4x4 patches.
			NumHierarchies: 3,
			Predictor: Predictor{
				// I-JEPA's predictor width (the PyTorch H-JEPA config leaves
				// it unset); 384/12 = 32 per head.
				EmbedDim: 384,
				Depth:    6,
				NumHeads: 12,
				MLPRatio: 4,
			},
			// Linear 0.996 -> 1.0 over the run (I-JEPA ipe_scale 1.0).
			EMA: EMA{Momentum: 0.996, MomentumEnd: 1.0},
			// trunc_normal std of I-JEPA's init.
			InitStd: 0.02,
			// See Model.PatchEmbedInit and docs/learning.md.
			PatchEmbedInit: PatchInitFanIn,
		},
		Data: Data{
			// The PyTorch default is "imagenet"; here that is an ImageFolder
			// tree (train/<class>/*.JPEG).
			Dataset: "imagefolder",
			// No default: a run must say where its data is.
			Path:      "",
			ValPath:   "",
			ImageSize: 224,
			Channels:  3,
			BatchSize: 128,
			// 0: one decoding goroutine per CPU core (GOMAXPROCS).
			NumWorkers: 0,
			// Batches decoded ahead of the training step.
			Prefetch: 2,
			// ImageNet statistics (torchvision), one entry per channel.
			Mean: []float64{0.485, 0.456, 0.406},
			Std:  []float64{0.229, 0.224, 0.225},
			Augmentation: Augmentation{
				RandomCrop: true,
				// I-JEPA's RandomResizedCrop scale; torchvision's ratio.
				CropScale:      []float64{0.3, 1.0},
				CropRatio:      []float64{3.0 / 4.0, 4.0 / 3.0},
				HorizontalFlip: true,
				// 0: off, as I-JEPA (the PyTorch config also set it to 0).
				ColorJitter: 0,
				// One view, as I-JEPA.
				Views: 1,
			},
			// Images of the synthetic dataset (only used when dataset is
			// synthetic): enough for a few batches of a smoke test.
			SyntheticSize: 1024,
			// 64 Mpixel (8192x8192), data.DefaultMaxImagePixels: above any
			// ImageNet photo; about 1 GiB to decode one image at the limit.
			MaxImagePixels: 1 << 26,
			// WebDataset shards in the same order as an ImageFolder of the
			// same images.
			ShardShuffle: "sample",
		},
		Masking: Masking{
			// I-JEPA multi-block: 4 targets of 15-20% of the patches each,
			// aspect 0.75-1.5; one context block of 85-100% minus the targets.
			NumMasks:        4,
			MaskScale:       []float64{0.15, 0.2},
			AspectRatio:     []float64{0.75, 1.5},
			NumContextMasks: 1,
			ContextScale:    []float64{0.85, 1.0},
			MinKeep:         4,
			AllowOverlap:    false,
		},
		Training: Training{
			Epochs:   300,
			MaxSteps: 0,
			// Linear warmup from start_lr to lr, then cosine to min_lr.
			WarmupEpochs: 40,
			WarmupSteps:  0,
			LR:           1.5e-4,
			StartLR:      0,
			MinLR:        1e-6,
			// I-JEPA's cosine weight-decay schedule 0.04 -> 0.4 (the PyTorch
			// H-JEPA config had a constant 0.05).
			WeightDecay:    0.04,
			WeightDecayEnd: 0.4,
			Optimizer:      "adamw",
			// torch.optim.AdamW's defaults, as I-JEPA.
			Betas:      []float64{0.9, 0.999},
			Eps:        1e-8,
			LRSchedule: "cosine",
			// 0: no clipping, as I-JEPA.
			ClipGrad:          0,
			AccumulationSteps: 1,
			// Alarm (a log line, not a stop) when the global gradient norm
			// exceeds it; ViT gradient norms are O(1) under pre-norm.
			GradExplosion: 100,
		},
		Loss: Loss{
			// I-JEPA's smooth-L1 (the PyTorch H-JEPA config had mse).
			Type:                "smoothl1",
			HierarchyWeights:    []float64{1.0, 0.5, 0.25},
			NormalizeEmbeddings: true,
			// VICReg off; when on, the coefficients of Bardes et al.
			// (variance 25, covariance 1).
			VICReg: VICReg{Weight: 0, VarianceCoeff: 25, CovarianceCoeff: 1, StdTarget: 1},
		},
		Checkpoint: Checkpoint{
			Dir:           "",
			SaveFrequency: 10,
			// 0: no step-based checkpoints.
			EverySteps: 0,
			KeepLast:   3,
			// checkpoint_best only.
			KeepBestN: 1,
		},
		Logging: Logging{
			ExperimentName: "hjepa_default",
			Dir:            "",
			EverySteps:     10,
			Level:          "info",
			TensorBoard:    true,
			Plots:          true,
			// Drawn only when stdout is a terminal.
			Progress: true,
		},
		Distributed: Distributed{
			Enabled:   false,
			WorldSize: 1,
			// PyTorch DDP's bucket_cap_mb and its first, small bucket.
			BucketMiB:      25,
			FirstBucketMiB: 1,
			MaxRestarts:    3,
		},
		Evaluation: Evaluation{
			EvalFrequency: 1,
			EverySteps:    0,
			// 50 batches (6,400 images at batch 128) keep validation cheap
			// next to an ImageNet epoch; 0 uses the whole split.
			ValBatches: 50,
			// Collapse alarms, relative to the run's own history (see
			// Evaluation): RankMe below a fifth of its peak, or the features'
			// spread across images below a tenth of the initialisation's.
			CollapseStd:  0.1,
			CollapseRank: 0.2,
			KNNK:         20,
			KNNTemp:      0.07,
			// L2 penalty λ of the probe (mean cross-entropy + λ/2·||W||²) on
			// standardised features: -1 selects it from 1e-1..1e-6 by the
			// accuracy on a held-out tenth of the training images, then
			// refits on all of them (a fixed 1e-4 under-regularises a 5k
			// probe: 79.8% against 82.4% selected, same features).
			ProbeL2:      -1,
			ProbeMaxIter: 1000,
			TrainLimit:   0,
			TestLimit:    0,
		},
		Seed:    42,
		Device:  "auto",
		Threads: 0,
	}
}
