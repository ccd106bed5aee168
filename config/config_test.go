package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// validDefault is Default with the one thing it lacks, a data path.
func validDefault() Config {
	c := Default()
	c.Data.Path = "/data/imagenet/train"
	return c
}

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaultValidates(t *testing.T) {
	if err := validDefault().Validate(); err != nil {
		t.Fatalf("defaults with a data path: %v", err)
	}
	// Without the path, exactly that is reported.
	err := Default().Validate()
	var ve *ValidationError
	if !errors.As(err, &ve) || !slices.Equal(ve.Keys(), []string{"data.path"}) {
		t.Fatalf("Default().Validate() = %v; want only data.path", err)
	}
	// Load with nothing is Default.
	c, err := Load(LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.flatten(), Default().flatten()) {
		t.Fatalf("Load(empty) differs from Default()")
	}
}

func TestPresetsLoadAndValidate(t *testing.T) {
	files, err := filepath.Glob("../configs/*.yaml")
	if err != nil || len(files) < 4 {
		t.Fatalf("presets: %v %v", files, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			c, err := Load(LoadOptions{ConfigFile: f})
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Validate(); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Encoder(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestPresetShapes(t *testing.T) {
	cases := []struct {
		file                          string
		img, patch, ch, dim, dep, hds int
		predDim, predDepth, batch     int
		dataset                       string
	}{
		{"fmnist-tiny.yaml", 28, 4, 1, 192, 6, 3, 96, 4, 64, "idx"},
		{"fmnist-pretrain.yaml", 28, 4, 1, 192, 6, 3, 96, 4, 64, "idx"},
		{"cifar10-small.yaml", 32, 4, 3, 384, 6, 6, 192, 4, 128, "cifar10"},
		{"default.yaml", 224, 16, 3, 768, 12, 12, 384, 6, 128, "imagefolder"},
		{"in1k-vith14.yaml", 224, 14, 3, 1280, 32, 16, 384, 12, 128, "imagefolder"},
	}
	for _, tc := range cases {
		c, err := Load(LoadOptions{ConfigFile: "../configs/" + tc.file})
		if err != nil {
			t.Fatal(err)
		}
		e, _ := c.Encoder()
		got := []int{e.ImageSize, e.PatchSize, e.Channels, e.EmbedDim, e.Depth, e.NumHeads, c.Model.Predictor.EmbedDim, c.Model.Predictor.Depth, c.Data.BatchSize}
		want := []int{tc.img, tc.patch, tc.ch, tc.dim, tc.dep, tc.hds, tc.predDim, tc.predDepth, tc.batch}
		if !slices.Equal(got, want) || c.Data.Dataset != tc.dataset {
			t.Errorf("%s: shape %v %s; want %v %s", tc.file, got, c.Data.Dataset, want, tc.dataset)
		}
	}
	c, _ := Load(LoadOptions{ConfigFile: "../configs/in1k-vith14.yaml"})
	tr := c.Training
	if tr.LR != 1e-3 || tr.StartLR != 2e-4 || tr.MinLR != 1e-6 || tr.WarmupEpochs != 40 || tr.Epochs != 300 ||
		tr.WeightDecay != 0.04 || tr.WeightDecayEnd != 0.4 || c.Distributed.WorldSize != 16 || c.Loss.Type != "smoothl1" {
		t.Errorf("in1k-vith14 training = %+v", tr)
	}
	c, _ = Load(LoadOptions{ConfigFile: "../configs/fmnist-tiny.yaml"})
	if c.Data.Path != "/usr/share/datasets/fashion-mnist" || !slices.Equal(c.Loss.HierarchyWeights, []float64{1, 0.5}) ||
		c.Data.Augmentation.Views != 2 || c.Evaluation.TrainLimit != 10000 {
		t.Errorf("fmnist-tiny data/loss = %+v %+v", c.Data, c.Loss)
	}
}

func TestEncoderPresets(t *testing.T) {
	cases := []struct {
		typ                    string
		dim, depth, heads, pat int
		mlp                    float64
	}{
		{"vit_tiny", 192, 12, 3, 16, 4},
		{"vit_small", 384, 12, 6, 16, 4},
		{"vit_base_patch16_224", 768, 12, 12, 16, 4},
		{"vit_large_patch16", 1024, 24, 16, 16, 4},
		{"vit_huge_patch14_224", 1280, 32, 16, 14, 4},
		{"vit_giant_patch14", 1408, 40, 16, 14, 48.0 / 11.0},
	}
	for _, tc := range cases {
		c := validDefault()
		c.Model.EncoderType = tc.typ
		e, err := c.Encoder()
		if err != nil {
			t.Fatal(err)
		}
		if e.EmbedDim != tc.dim || e.Depth != tc.depth || e.NumHeads != tc.heads || e.PatchSize != tc.pat || e.MLPRatio != tc.mlp {
			t.Errorf("%s = %+v", tc.typ, e)
		}
	}
	// Overrides win; custom needs every size.
	c := validDefault()
	c.Model.EmbedDim, c.Model.PatchSize, c.Model.MLPRatio = 512, 8, 2
	if e, _ := c.Encoder(); e.EmbedDim != 512 || e.PatchSize != 8 || e.MLPRatio != 2 || e.Depth != 12 || e.Grid() != 28 || e.NumPatches() != 784 {
		t.Errorf("overrides: %+v", e)
	}
	c.Model.EncoderType = "custom"
	c.Model.Depth = 0
	if _, err := c.Encoder(); err == nil || !strings.Contains(err.Error(), "model.depth") {
		t.Errorf("custom without depth: %v", err)
	}
	c.Model.EncoderType = "vit_bse"
	if _, err := c.Encoder(); err == nil || !strings.Contains(err.Error(), "vit_base") {
		t.Errorf("unknown preset: %v", err)
	}
}

func TestSetOverridesEachType(t *testing.T) {
	c, err := Load(LoadOptions{Sets: []string{
		"training.epochs=7",                       // int
		"training.max_steps=1e3",                  // int written as a float
		"seed=-5",                                 // int64
		"training.lr=3e-4",                        // float
		"data.augmentation.horizontal_flip=false", // bool
		"logging.tensorboard=no",                  // bool, YAML 1.1 spelling
		"data.dataset=synthetic",                  // string
		"data.path=/tmp/a=b",                      // string containing '='
		"masking.mask_scale=[0.1, 0.25]",          // list, brackets
		"masking.aspect_ratio=0.5,2",              // list, bare
		"data.mean=[]",                            // empty list
		"device = cuda:1",                         // spaces around '='
	}})
	if err != nil {
		t.Fatal(err)
	}
	if c.Training.Epochs != 7 || c.Training.MaxSteps != 1000 || c.Seed != -5 || c.Training.LR != 3e-4 ||
		c.Data.Augmentation.HorizontalFlip || c.Logging.TensorBoard || c.Data.Dataset != "synthetic" ||
		c.Data.Path != "/tmp/a=b" || !slices.Equal(c.Masking.MaskScale, []float64{0.1, 0.25}) ||
		!slices.Equal(c.Masking.AspectRatio, []float64{0.5, 2}) || len(c.Data.Mean) != 0 || c.Device != "cuda:1" {
		t.Fatalf("overrides not applied: %+v", c)
	}
	// Everything else keeps its default.
	if c.Training.MinLR != 1e-6 || c.Model.Predictor.EmbedDim != 384 {
		t.Fatalf("untouched keys changed")
	}
}

func TestEnvOverride(t *testing.T) {
	t.Setenv("HJEPA_TRAINING_LR", "2e-3")
	t.Setenv("HJEPA_MODEL_PREDICTOR_EMBED_DIM", "192")
	t.Setenv("HJEPA_LOSS_HIERARCHY_WEIGHTS", "1,1,1")
	t.Setenv("HJEPA_JOB_TOKEN", "secret") // the caller's own variable
	c, err := Load(LoadOptions{Env: true, IgnoreEnv: []string{"HJEPA_JOB_TOKEN"}})
	if err != nil {
		t.Fatal(err)
	}
	if c.Training.LR != 2e-3 || c.Model.Predictor.EmbedDim != 192 || !slices.Equal(c.Loss.HierarchyWeights, []float64{1, 1, 1}) {
		t.Fatalf("env not applied: lr %g pred %d w %v", c.Training.LR, c.Model.Predictor.EmbedDim, c.Loss.HierarchyWeights)
	}
	// Without Env the environment is ignored.
	c, err = Load(LoadOptions{})
	if err != nil || c.Training.LR != 1.5e-4 {
		t.Fatalf("Env false: lr %g err %v", c.Training.LR, err)
	}
	// Environ replaces the process environment.
	c, err = Load(LoadOptions{Env: true, Environ: []string{"HJEPA_SEED=7", "PATH=/bin"}})
	if err != nil || c.Seed != 7 || c.Training.LR != 1.5e-4 {
		t.Fatalf("Environ: seed %d lr %g err %v", c.Seed, c.Training.LR, err)
	}
}

func TestPrecedence(t *testing.T) {
	file := writeFile(t, "p.yaml", "training:\n  lr: 1.0e-3\n  min_lr: 1.0e-5\n  epochs: 50\nseed: 1\n")
	c, err := Load(LoadOptions{
		ConfigFile: file,
		Env:        true,
		Environ:    []string{"HJEPA_TRAINING_LR=2e-3", "HJEPA_TRAINING_EPOCHS=60"},
		Sets:       []string{"training.lr=3e-3", "training.lr=4e-3"},
	})
	if err != nil {
		t.Fatal(err)
	}
	// lr: default < file < env < set (last set wins); epochs: env over file;
	// min_lr and seed: file over default; eps: default.
	if c.Training.LR != 4e-3 || c.Training.Epochs != 60 || c.Training.MinLR != 1e-5 || c.Seed != 1 || c.Training.Eps != 1e-8 {
		t.Fatalf("precedence: %+v seed %d", c.Training, c.Seed)
	}
}

func TestUnknownKeySuggestions(t *testing.T) {
	cases := []struct {
		name    string
		opts    func(t *testing.T) LoadOptions
		wantKey string // in the message
		suggest string
		source  string
	}{
		{"file typo", func(t *testing.T) LoadOptions {
			return LoadOptions{ConfigFile: writeFile(t, "x.yaml", "training:\n  lr: 1e-3\n  lrr: 2e-3\n")}
		}, "training.lrr", "training.lr", "x.yaml:3"},
		{"file wrong section", func(t *testing.T) LoadOptions {
			return LoadOptions{ConfigFile: writeFile(t, "x.yaml", "training:\n  batch_size: 32\n")}
		}, "training.batch_size", "data.batch_size", "x.yaml:2"},
		{"file other project's name", func(t *testing.T) LoadOptions {
			// I-JEPA's root_path is joined with image_folder: a hint, not an alias.
			return LoadOptions{ConfigFile: writeFile(t, "x.yaml", "data:\n  root_path: /x\n")}
		}, "data.root_path", "data.path", "x.yaml:2"},
		{"file unknown section", func(t *testing.T) LoadOptions {
			return LoadOptions{ConfigFile: writeFile(t, "x.yaml", "modle:\n  depth: 3\n")}
		}, "modle.depth", "model.depth", "x.yaml:2"},
		{"set typo", func(t *testing.T) LoadOptions {
			return LoadOptions{Sets: []string{"masking.mask_scal=[0.1,0.2]"}}
		}, "masking.mask_scal", "masking.mask_scale", "--set"},
		{"set case", func(t *testing.T) LoadOptions {
			return LoadOptions{Sets: []string{"Training.LR=1"}}
		}, "Training.LR", "training.lr", "--set"},
		{"env typo", func(t *testing.T) LoadOptions {
			return LoadOptions{Env: true, Environ: []string{"HJEPA_TRAINING_LRR=1e-3"}}
		}, "HJEPA_TRAINING_LRR", "training.lr", "environment"},
		{"env typo deep", func(t *testing.T) LoadOptions {
			return LoadOptions{Env: true, Environ: []string{"HJEPA_MODEL_PREDICTOR_EMBEDDIM=1"}}
		}, "HJEPA_MODEL_PREDICTOR_EMBEDDIM", "model.predictor.embed_dim", "environment"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(tc.opts(t))
			var le *LoadError
			if !errors.As(err, &le) {
				t.Fatalf("err = %v; want *LoadError", err)
			}
			msg := err.Error()
			for _, want := range []string{tc.wantKey, `"` + tc.suggest + `"`, tc.source} {
				if !strings.Contains(msg, want) {
					t.Errorf("%q lacks %q", msg, want)
				}
			}
		})
	}
}

func TestNoFarFetchedSuggestion(t *testing.T) {
	_, err := Load(LoadOptions{Sets: []string{"training.foo=1"}})
	if err == nil || strings.Contains(err.Error(), "did you mean") || !strings.Contains(err.Error(), "valid keys in training: ") {
		t.Fatalf("got %v", err)
	}
}

func TestBadInput(t *testing.T) {
	type tc struct {
		name string
		opts func(t *testing.T) LoadOptions
		// want are substrings of the error; the first is the key path or file.
		want []string
	}
	yamlFile := func(body string) func(t *testing.T) LoadOptions {
		return func(t *testing.T) LoadOptions { return LoadOptions{ConfigFile: writeFile(t, "bad.yaml", body)} }
	}
	sets := func(s ...string) func(t *testing.T) LoadOptions {
		return func(t *testing.T) LoadOptions { return LoadOptions{Sets: s} }
	}
	cases := []tc{
		{"missing file", func(t *testing.T) LoadOptions {
			return LoadOptions{ConfigFile: filepath.Join(t.TempDir(), "nope.yaml")}
		}, []string{"nope.yaml", "no such file"}},
		{"file is a directory", func(t *testing.T) LoadOptions {
			return LoadOptions{ConfigFile: t.TempDir()}
		}, []string{"config file"}},
		{"yaml syntax", yamlFile("training:\n  lr: [1, 2\n  epochs: 3\n"), []string{"bad.yaml", "line"}},
		{"yaml tab indent", yamlFile("training:\n\tlr: 1\n"), []string{"bad.yaml", "line 2"}},
		{"top level list", yamlFile("- a\n- b\n"), []string{"bad.yaml:1", "mapping"}},
		{"two documents", yamlFile("seed: 1\n---\nseed: 2\n"), []string{"bad.yaml:", "second YAML document"}},
		{"wrong type float in file", yamlFile("training:\n  lr: fast\n"), []string{"training.lr", `"fast"`, "a number", "bad.yaml:2"}},
		{"wrong type int in file", yamlFile("data:\n  batch_size: 64.5\n"), []string{"data.batch_size", `"64.5"`, "an integer"}},
		{"wrong type list in file", yamlFile("masking:\n  mask_scale: [0.1, big]\n"), []string{"masking.mask_scale", "element 1", "list of numbers"}},
		{"list for scalar in file", yamlFile("seed: [1, 2]\n"), []string{"seed", "a list", "an integer"}},
		{"section as scalar", yamlFile("model: vit_base\n"), []string{"model", "section"}},
		{"duplicate key", yamlFile("seed: 1\nseed: 2\n"), []string{"seed", "duplicate", "bad.yaml:2"}},
		{"wrong type bool set", sets("logging.plots=maybe"), []string{"logging.plots", `"maybe"`, "a boolean"}},
		{"wrong type int set", sets("data.batch_size=big"), []string{"data.batch_size", `"big"`, "an integer"}},
		{"nan set", sets("training.lr=NaN"), []string{"training.lr", `"NaN"`, "a number"}},
		{"bad list set", sets("training.betas=[0.9,0.999"), []string{"training.betas", "list of numbers"}},
		{"set without =", sets("training.lr"), []string{"--set", "key=value"}},
		{"invalid UTF-8 string set", sets("logging.experiment_name=a\xffb"), []string{"logging.experiment_name", "not valid UTF-8"}},
		{"set a section", sets("model=3"), []string{"model", "section"}},
		{"wrong type env", func(t *testing.T) LoadOptions {
			return LoadOptions{Env: true, Environ: []string{"HJEPA_DATA_BATCH_SIZE=lots"}}
		}, []string{"data.batch_size", "HJEPA_DATA_BATCH_SIZE", `"lots"`, "an integer"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Load(c.opts(t))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestUnreadableFile(t *testing.T) {
	p := writeFile(t, "secret.yaml", "seed: 1\n")
	if err := os.Chmod(p, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := os.ReadFile(p); err == nil {
		t.Skip("chmod 000 does not stop this user (root) from reading")
	}
	_, err := Load(LoadOptions{ConfigFile: p})
	if err == nil || !strings.Contains(err.Error(), "secret.yaml") || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("got %v", err)
	}
}

func TestLoadReportsAllProblems(t *testing.T) {
	file := writeFile(t, "x.yaml", "training:\n  lrr: 1\n  epochs: many\n")
	_, err := Load(LoadOptions{ConfigFile: file, Sets: []string{"seed=x", "nope.key=1"}})
	var le *LoadError
	if !errors.As(err, &le) || len(le.Errors) != 4 {
		t.Fatalf("want 4 problems, got %v", err)
	}
	if !slices.Equal(le.Keys(), []string{"training.lrr", "training.epochs", "seed", "nope.key"}) {
		t.Fatalf("keys %v", le.Keys())
	}
	if n := strings.Count(err.Error(), "\n"); n != 4 {
		t.Fatalf("want one line per problem:\n%v", err)
	}
}

func TestValidateBadValues(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(c *Config)
		key    string
		want   string // in that key's message
	}{
		{"image not divisible", func(c *Config) { c.Data.ImageSize = 225 }, "data.image_size", "not divisible by the patch size 16"},
		{"heads do not divide dim", func(c *Config) { c.Model.NumHeads = 7 }, "model.num_heads", "do not divide"},
		{"dim not multiple of 4", func(c *Config) { c.Model.EmbedDim, c.Model.NumHeads = 198, 3 }, "model.embed_dim", "multiple of 4"},
		{"predictor heads", func(c *Config) { c.Model.Predictor.NumHeads = 5 }, "model.predictor.num_heads", "do not divide"},
		{"hierarchy weights length", func(c *Config) { c.Loss.HierarchyWeights = []float64{1, 0.5} }, "loss.hierarchy_weights", "has 2 weights"},
		{"negative weight", func(c *Config) { c.Loss.HierarchyWeights[1] = -1 }, "loss.hierarchy_weights", ">= 0"},
		{"too many levels", func(c *Config) { c.Model.NumHierarchies, c.Loss.HierarchyWeights = 5, []float64{1, 1, 1, 1, 1} }, "model.num_hierarchies", "patch grid is only 14x14"},
		{"mask scale above 1", func(c *Config) { c.Masking.MaskScale = []float64{0.15, 1.2} }, "masking.mask_scale", "(0, 1)"},
		{"mask scale zero", func(c *Config) { c.Masking.MaskScale = []float64{0, 0.2} }, "masking.mask_scale", "(0, 1)"},
		{"mask scale lo > hi", func(c *Config) { c.Masking.MaskScale = []float64{0.3, 0.2} }, "masking.mask_scale", "lo > hi"},
		{"mask scale one value", func(c *Config) { c.Masking.MaskScale = []float64{0.2} }, "masking.mask_scale", "has 1 elements"},
		{"aspect negative", func(c *Config) { c.Masking.AspectRatio = []float64{-1, 1.5} }, "masking.aspect_ratio", "> 0"},
		{"aspect lo > hi", func(c *Config) { c.Masking.AspectRatio = []float64{2, 1} }, "masking.aspect_ratio", "lo > hi"},
		{"context scale", func(c *Config) { c.Masking.ContextScale = []float64{0.85, 1.5} }, "masking.context_scale", "(0, 1]"},
		{"blocks too small for top level", func(c *Config) { c.Masking.MaskScale = []float64{0.01, 0.02} }, "masking.mask_scale", "too small for level 2"},
		{"min_keep above patches", func(c *Config) { c.Masking.MinKeep = 500 }, "masking.min_keep", "only 196 patches"},
		{"lr zero", func(c *Config) { c.Training.LR = 0 }, "training.lr", "> 0"},
		{"betas", func(c *Config) { c.Training.Betas = []float64{0.9, 1} }, "training.betas", "[0, 1)"},
		{"eps", func(c *Config) { c.Training.Eps = 0 }, "training.eps", "> 0"},
		{"momentum", func(c *Config) { c.Model.EMA.Momentum = 1.5 }, "model.ema.momentum", "[0, 1]"},
		{"warmup too long", func(c *Config) { c.Training.WarmupEpochs = 300 }, "training.warmup_epochs", "shorter than the run"},
		{"warmup steps too long", func(c *Config) { c.Training.MaxSteps, c.Training.WarmupSteps = 100, 100 }, "training.warmup_steps", "shorter than the run"},
		{"min_lr above lr", func(c *Config) { c.Training.MinLR = 1 }, "training.min_lr", "min_lr <= lr"},
		{"batch size", func(c *Config) { c.Data.BatchSize = 0 }, "data.batch_size", "at least 1"},
		{"dataset enum", func(c *Config) { c.Data.Dataset = "imagenet" }, "data.dataset", "idx, cifar10, cifar100, imagefolder, synthetic"},
		{"path required", func(c *Config) { c.Data.Path = "" }, "data.path", "synthetic"},
		{"idx channels", func(c *Config) { c.Data.Dataset = "idx" }, "data.channels", "1 channel"},
		{"mean per channel", func(c *Config) { c.Data.Mean = []float64{0.5} }, "data.mean", "one per channel"},
		{"std zero", func(c *Config) { c.Data.Std = []float64{0.2, 0, 0.2} }, "data.std", "> 0"},
		{"loss enum", func(c *Config) { c.Loss.Type = "l1" }, "loss.type", "smoothl1, mse"},
		{"optimizer enum", func(c *Config) { c.Training.Optimizer = "sgd" }, "training.optimizer", "adamw"},
		{"schedule enum", func(c *Config) { c.Training.LRSchedule = "step" }, "training.lr_schedule", "cosine, constant, linear"},
		{"device", func(c *Config) { c.Device = "gpu" }, "device", "cuda:K"},
		{"device index", func(c *Config) { c.Device = "cuda:x" }, "device", "cuda:K"},
		{"encoder type", func(c *Config) { c.Model.EncoderType = "resnet50" }, "model.encoder_type", "vit_base"},
		{"encoder size suffix", func(c *Config) { c.Data.ImageSize = 96 }, "model.encoder_type", "drop the _224 suffix"},
		{"crop scale", func(c *Config) { c.Data.Augmentation.CropScale = []float64{0.3, 1.1} }, "data.augmentation.crop_scale", "(0, 1]"},
		{"vicreg weight", func(c *Config) { c.Loss.VICReg.Weight = -1 }, "loss.vicreg.weight", ">= 0"},
		{"vicreg tokens", func(c *Config) { c.Loss.VICReg.TokensPerImage = -2 }, "loss.vicreg.tokens_per_image", "0 or more"},
		{"patch init std", func(c *Config) { c.Model.PatchEmbedInitStd = -0.1 }, "model.patch_embed_init_std", ">= 0"},
		{"probe l2", func(c *Config) { c.Evaluation.ProbeL2 = -0.5 }, "evaluation.probe_l2", "-1 to select it"},
		{"invariance with tokens", func(c *Config) { c.Loss.VICReg.InvarianceCoeff = 1; c.Loss.VICReg.TokensPerImage = 4 }, "loss.vicreg.invariance_coeff", "tokens_per_image 0"},
		{"context masks", func(c *Config) { c.Masking.NumContextMasks = 2 }, "masking.num_context_masks", "only 1"},
		{"log level", func(c *Config) { c.Logging.Level = "verbose" }, "logging.level", "debug, info"},
		{"collapse rank", func(c *Config) { c.Evaluation.CollapseRank = 2 }, "evaluation.collapse_rank", "[0, 1]"},
		{"world size", func(c *Config) { c.Distributed.WorldSize = 0 }, "distributed.world_size", "at least 1"},
		{"threads", func(c *Config) { c.Threads = -1 }, "threads", "0 or more"},
		{"accumulation", func(c *Config) { c.Training.AccumulationSteps = 0 }, "training.accumulation_steps", "at least 1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := validDefault()
			c.Loss.HierarchyWeights = slices.Clone(c.Loss.HierarchyWeights)
			tc.mutate(&c)
			err := c.Validate()
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Validate() = %v; want *ValidationError", err)
			}
			for _, fe := range ve.Errors {
				if fe.Key == tc.key && strings.Contains(fe.Msg, tc.want) {
					if !strings.Contains(err.Error(), tc.key+": ") {
						t.Errorf("message lacks the key path: %v", err)
					}
					return
				}
			}
			t.Errorf("no %s error containing %q in:\n%v", tc.key, tc.want, err)
		})
	}
}

func TestValidateFromSetOverrides(t *testing.T) {
	// The path a user takes: --set a bad value, then validate.
	c, err := Load(LoadOptions{ConfigFile: "../configs/fmnist-tiny.yaml", Sets: []string{"data.image_size=29"}})
	if err != nil {
		t.Fatal(err)
	}
	err = c.Validate()
	if err == nil || !strings.Contains(err.Error(), "data.image_size: 29 is not divisible by the patch size 4") {
		t.Fatalf("got %v", err)
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	c := validDefault()
	c.Training.LR = -1
	c.Data.BatchSize = 0
	c.Masking.MaskScale = []float64{0.5, 0.2}
	c.Loss.Type = "huber"
	c.Loss.HierarchyWeights = []float64{1}
	c.Device = "tpu"
	err := c.Validate()
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("%v", err)
	}
	for _, k := range []string{"training.lr", "data.batch_size", "masking.mask_scale", "loss.type", "loss.hierarchy_weights", "device"} {
		if !ve.Has(k) {
			t.Errorf("missing %s in:\n%v", k, err)
		}
	}
	if lines := strings.Count(err.Error(), "\n"); lines != len(ve.Errors) {
		t.Errorf("want a header and one line per problem, got:\n%v", err)
	}
}

func TestDigest(t *testing.T) {
	a, b := validDefault(), validDefault()
	if a.Digest() != b.Digest() || len(a.Digest()) != 64 {
		t.Fatal("digest not stable")
	}
	// A list written as [] and one left nil are the same configuration.
	a.Data.Mean, b.Data.Mean = nil, []float64{}
	if a.Digest() != b.Digest() {
		t.Fatal("nil vs empty list changed the digest")
	}
	b = validDefault()
	b.Training.LR = 1.6e-4
	if b.Digest() == validDefault().Digest() {
		t.Fatal("digest insensitive to lr")
	}
	b = validDefault()
	b.Loss.HierarchyWeights = []float64{1, 0.5, 0.2}
	if b.Digest() == validDefault().Digest() {
		t.Fatal("digest insensitive to a list element")
	}
	// Process-local keys do not count.
	b = validDefault()
	b.Device, b.Threads, b.Data.Path = "cuda:3", 8, "/mnt/other"
	if b.Digest() != validDefault().Digest() {
		t.Fatal("digest depends on process-local keys")
	}
	// Loading the same file twice gives the same digest.
	x, _ := Load(LoadOptions{ConfigFile: "../configs/default.yaml"})
	y, _ := Load(LoadOptions{ConfigFile: "../configs/default.yaml"})
	if x.Digest() != y.Digest() {
		t.Fatal("digest differs between loads")
	}
}

func TestYAMLRoundTrip(t *testing.T) {
	for _, f := range []string{"../configs/fmnist-tiny.yaml", "../configs/in1k-vith14.yaml"} {
		c, err := Load(LoadOptions{ConfigFile: f})
		if err != nil {
			t.Fatal(err)
		}
		out, err := c.YAML()
		if err != nil {
			t.Fatal(err)
		}
		p := writeFile(t, "show.yaml", string(out))
		d, err := Load(LoadOptions{ConfigFile: p})
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if c.Digest() != d.Digest() || !reflect.DeepEqual(c.flatten(), d.flatten()) {
			t.Fatalf("round trip changed the config:\n%s", out)
		}
		if !strings.Contains(string(out), "hierarchy_weights: [1, 0.5") {
			t.Errorf("lists not inline:\n%s", out)
		}
	}
}

func TestKeys(t *testing.T) {
	keys := Keys()
	if !slices.IsSorted(keys) {
		t.Fatal("keys not sorted")
	}
	for _, k := range []string{"training.lr", "training.max_steps", "data.batch_size", "data.path", "data.dataset",
		"checkpoint.every_steps", "logging.every_steps", "model.predictor.embed_dim", "model.ema.momentum",
		"data.augmentation.crop_scale", "loss.vicreg.weight", "seed", "device", "threads"} {
		if !slices.Contains(keys, k) {
			t.Errorf("missing key %s", k)
		}
	}
	// Every key is settable with --set and readable with Get.
	c := validDefault()
	for _, k := range keys {
		if _, ok := c.Get(k); !ok {
			t.Errorf("Get(%s) failed", k)
		}
	}
	if _, ok := c.Get("model"); ok {
		t.Error("Get(section) succeeded")
	}
}

func TestEnvNamesUnique(t *testing.T) {
	seen := map[string]string{}
	for _, k := range Keys() {
		n := EnvName(k)
		if o, dup := seen[n]; dup {
			t.Errorf("%s and %s share %s", o, k, n)
		}
		seen[n] = k
	}
	if EnvName("model.predictor.embed_dim") != "HJEPA_MODEL_PREDICTOR_EMBED_DIM" {
		t.Error(EnvName("model.predictor.embed_dim"))
	}
}

func TestTrainingSteps(t *testing.T) {
	cases := []struct {
		tr            Training
		perEpoch      int
		total, warmup int
	}{
		{Training{Epochs: 300, WarmupEpochs: 40}, 100, 30000, 4000},
		{Training{Epochs: 300, WarmupEpochs: 40, MaxSteps: 300}, 100, 300, 40},
		{Training{Epochs: 300, WarmupEpochs: 40, MaxSteps: 300, WarmupSteps: 10}, 100, 300, 10},
		{Training{Epochs: 10, WarmupEpochs: 0.5}, 937, 9370, 469},
		{Training{Epochs: 2, WarmupSteps: 500}, 100, 200, 199},
	}
	for _, tc := range cases {
		if total, warmup := tc.tr.Steps(tc.perEpoch); total != tc.total || warmup != tc.warmup {
			t.Errorf("%+v.Steps(%d) = %d, %d; want %d, %d", tc.tr, tc.perEpoch, total, warmup, tc.total, tc.warmup)
		}
	}
}

func TestEditDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		d    int
	}{{"", "", 0}, {"lr", "lrr", 1}, {"kitten", "sitting", 3}, {"abc", "", 3}} {
		if got := editDistance(tc.a, tc.b); got != tc.d {
			t.Errorf("editDistance(%q,%q) = %d; want %d", tc.a, tc.b, got, tc.d)
		}
	}
}

// TestYAMLBytesLoad: the YAML a coordinator sends loads back, on a worker,
// into a configuration with the same digest.
func TestYAMLBytesLoad(t *testing.T) {
	c, err := Load(LoadOptions{ConfigFile: "../configs/fmnist-tiny.yaml", Sets: []string{"training.lr=3e-4", "data.batch_size=8"}})
	if err != nil {
		t.Fatal(err)
	}
	y, err := c.YAML()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Load(LoadOptions{ConfigFile: "coordinator", ConfigYAML: y})
	if err != nil {
		t.Fatal(err)
	}
	if back.Digest() != c.Digest() || string(back.CanonicalJSON()) != string(c.CanonicalJSON()) {
		t.Fatalf("round trip changed the configuration:\n%s\n%s", c.CanonicalJSON(), back.CanonicalJSON())
	}
}
