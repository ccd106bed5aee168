package config

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// The fuzz targets below feed outside bytes to Load: a YAML file, --set
// values and HJEPA_* variables. Properties: no panic; an error is a
// *LoadError whose problems name their key and source, or (file-level
// errors) names the file; Validate on what loads returns nil or a
// *ValidationError; and a configuration that loads re-marshals with YAML()
// and reloads to the same configuration.

const fuzzFile = "fuzz.yaml"

// FuzzLoadYAML: config.Load of a YAML file's bytes.
func FuzzLoadYAML(f *testing.F) {
	// Small seeds: the fuzzer minimises every input that finds new
	// coverage, and with the multi-kilobyte presets (which
	// TestPresetsLoadAndValidate loads) that took the whole -fuzztime.
	for _, s := range []string{
		"model:\n  encoder_type: vit_tiny_patch4_28\n  num_hierarchies: 2\n  predictor: {embed_dim: 32, depth: 2, num_heads: 2}\n" +
			"data: {dataset: synthetic, image_size: 28, channels: 1, batch_size: 8, mean: [0.5], std: [0.25]}\n" +
			"masking: {num_masks: 2, mask_scale: [0.1, 0.2], min_keep: 2}\n" +
			"training: {epochs: 1, max_steps: 3, warmup_steps: 1, lr: 1e-3, betas: [0.9, 0.95]}\n" +
			"loss: {type: mse, hierarchy_weights: [1, 0.5], vicreg: {weight: 0.1}}\n" +
			"checkpoint: {every_steps: 2}\nlogging: {level: warn, plots: false}\nevaluation: {knn_k: 5}\n" +
			"distributed: {enabled: false}\nseed: 7\ndevice: cpu\n",
		"", "~\n", "---\n", "seed: 1\n---\nseed: 2\n", "- a\n",
		"model:\n  encoder_type: vit_tiny_patch4_28\n  predictor: {depth: 2}\ndata: {dataset: synthetic, image_size: 28, channels: 1}\n",
		"training:\n  lr: 1e-3\n  betas: [0.9, 0.95]\n  epochs: 1e2\n",
		"modle:\n  depth: 3\ntraining: {batch_size: 2}\n",
		"seed: 1\nseed: 2\nmodel: vit\n",
		"base: &b {lr: 1, epochs: 2}\ntraining:\n  <<: *b\n  min_lr: 0\n",
		"training: &t {lr: 1}\nz: &z {<<: [*t, *t]}\nmodel: {<<: *z}\n",
		"device: !!binary aGVsbG8=\nlogging: {experiment_name: \"\\xff\"}\n",
		"data:\n  mean: [*x]\n",
		"masking: {mask_scale: [0.1, [0.2]]}\n",
		"data: {path: null, mean: null, batch_size: ~, random_crop: yes}\n",
		"seed: 9223372036854775807\nthreads: -9007199254740993\n",
		aliasBomb(12),
		pytorchSeed,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Load(LoadOptions{ConfigFile: fuzzFile, ConfigYAML: data})
		checkLoad(t, "file", c, err, func(fe FieldError) bool {
			return strings.HasPrefix(fe.Source, fuzzFile+":")
		})
	})
}

// pytorchSeed uses the other projects' keys (foreignKeys) of every kind.
const pytorchSeed = "# PyTorch\nmodel:\n  ema: {momentum_warmup_epochs: 30}\n  rope: {use_rope: false, theta: 1.0e4}\n  use_flash_attention: true\n" +
	"data:\n  dataset: imagenet\n  data_path: /d # root\n  pin_memory: true\nlogging:\n  log_dir: l\n  wandb: {enabled: true, tags: [a]}\n  tensorboard:\n    enabled: false\n" +
	"training: {weight_decay: 0.05, use_amp: true}\ncheckpoint: {checkpoint_dir: c, resume: null}\nmask: {num_pred_masks: 2}\nmeta: {pred_depth: 3}\n"

// FuzzMigrate: a file Load accepts migrates to a file that loads, without
// notes, to the same configuration.
func FuzzMigrate(f *testing.F) {
	for _, s := range []string{pytorchSeed, "", "seed: 1\n", "data:\n  data_path: /a\ntraining:\n  <<: {lr: 1, weight_decay: 0.1}\n",
		"logging:\n  tensorboard: {enabled: true}\n  wandb:\n# c\n", "mask: &m {num_pred_masks: 2}\nmasking: {min_keep: 3}\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		want, _, err := LoadWithNotes(LoadOptions{ConfigFile: fuzzFile, ConfigYAML: data})
		if err != nil {
			return
		}
		out, err := Migrate(fuzzFile, data)
		if err != nil {
			t.Fatalf("Load accepts the file but Migrate fails: %v", err)
		}
		got, notes, err := LoadWithNotes(LoadOptions{ConfigFile: "migrated.yaml", ConfigYAML: out})
		if err != nil || len(notes) > 0 {
			t.Fatalf("migrated file: notes %v err %v\n%s", notes, err, out)
		}
		fw, fg := want.flatten(), got.flatten()
		for _, k := range Keys() {
			if !reflect.DeepEqual(fw[k], fg[k]) {
				t.Fatalf("migration changed %s from %#v to %#v\n%s", k, fw[k], fg[k], out)
			}
		}
	})
}

// FuzzLoadSet: config.Load of --set values (one per line of the input).
func FuzzLoadSet(f *testing.F) {
	for _, s := range []string{
		"training.lr=1e-3", "training.lr", "=3", " data.batch_size = 8 ", "data.batch_size=64.0",
		"data.batch_size=1e300", "training.betas=[0.9,0.999]", "training.betas=0.9, 0.999",
		"training.betas=[", "training.betas=[]", "logging.plots=on", "model=3", "Training.LR=1",
		"data.path=/x\nmodel.encoder_type=custom\nmodel.embed_dim=8", "device=cuda:1", "seed=-1",
		"logging.experiment_name=\xff\xfe", "logging.experiment_name=null", "data.path=- a", "training.lr=0x1p-3",
		"data.data_path=/x\nlogging.wandb.tags=a", "model.fpn.use_fpn=0", "checkpoint.resume=r.pth", "data.dataset=IMAGENET",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := Load(LoadOptions{Sets: strings.Split(s, "\n")})
		checkLoad(t, "--set", c, err, func(fe FieldError) bool { return fe.Source == "--set" })
	})
}

// FuzzLoadEnv: config.Load of an environment (one NAME=value per line).
func FuzzLoadEnv(f *testing.F) {
	for _, s := range []string{
		"HJEPA_TRAINING_LR=1e-3", "HJEPA_TRAINING_LR", "HJEPA_=1", "HJEPA_TRAINNG_LR=1", "PATH=/bin\nHOME=/root",
		"HJEPA_DATA_MEAN=[0.5]\nHJEPA_DATA_STD=0.25", "HJEPA_JOB_TOKEN=secret", "HJEPA_DATA_BATCH_SIZE=lots",
		"HJEPA_LOGGING_EXPERIMENT_NAME=\x80", "HJEPA_MODEL_PREDICTOR_EMBED_DIM=64\nHJEPA_MODEL_PREDICTOR_EMBED_DIM=32",
		"hjepa_seed=1", "HJEPA_SEED==3", "HJEPA_DATA_DATA_PATH=/x\nHJEPA_DATA_PATH=/y", "HJEPA_LOGGING_WANDB_=1", "HJEPA_MODEL_ROPE_USE_ROPE=yes",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := Load(LoadOptions{Env: true, Environ: strings.Split(s, "\n")})
		checkLoad(t, "environment", c, err, func(fe FieldError) bool {
			return fe.Source == "environment" || strings.HasPrefix(fe.Source, "environment variable "+EnvPrefix)
		})
	})
}

// checkLoad checks the properties common to every source.
func checkLoad(t *testing.T, what string, c Config, err error, goodSource func(FieldError) bool) {
	t.Helper()
	if err != nil {
		var le *LoadError
		if !errors.As(err, &le) {
			if what != "file" || !strings.Contains(err.Error(), fuzzFile) {
				t.Fatalf("%s: error %q is neither a *LoadError nor names the file", what, err)
			}
			return
		}
		if len(le.Errors) == 0 {
			t.Fatalf("%s: empty *LoadError", what)
		}
		for _, fe := range le.Errors {
			if !goodSource(fe) || fe.Msg == "" {
				t.Fatalf("%s: problem %+v does not name its source or says nothing", what, fe)
			}
			// The key may be empty where the input's key is ("=3",
			// ": 3" in the file); the source then locates it.
			if what == "environment" && fe.Key == "" {
				t.Fatalf("%s: problem %+v names no variable", what, fe)
			}
		}
		return
	}
	if verr := c.Validate(); verr != nil {
		var ve *ValidationError
		if !errors.As(verr, &ve) || len(ve.Errors) == 0 {
			t.Fatalf("%s: Validate returned %T %v", what, verr, verr)
		}
		for _, fe := range ve.Errors {
			if _, ok := c.Get(fe.Key); !ok && !schema.sections[fe.Key] {
				t.Fatalf("%s: validation problem %+v names no key", what, fe)
			}
		}
	}
	y, err := c.YAML()
	if err != nil {
		t.Fatalf("%s: YAML: %v", what, err)
	}
	back, err := Load(LoadOptions{ConfigFile: "show.yaml", ConfigYAML: y})
	if err != nil {
		t.Fatalf("%s: YAML() output does not load: %v\n%s", what, err, y)
	}
	want, got := c.flatten(), back.flatten()
	for _, k := range Keys() {
		if !reflect.DeepEqual(want[k], got[k]) {
			t.Fatalf("%s: YAML round trip changed %s from %#v to %#v\n%s", what, k, want[k], got[k], y)
		}
	}
	if c.Digest() != back.Digest() {
		t.Fatalf("%s: YAML round trip changed the digest", what)
	}
}

// aliasBomb is a YAML file whose aliases expand to 2^levels keys.
func aliasBomb(levels int) string {
	var b strings.Builder
	b.WriteString("x0: &a0 {lr: 1}\n")
	for i := 1; i <= levels; i++ {
		fmt.Fprintf(&b, "x%d: &a%d {p: *a%d, q: *a%d}\n", i, i, i-1, i-1)
	}
	return b.String()
}

// TestAliasExpansionBounded: aliases that refer to aliases cannot make Load
// walk (and report) exponentially many keys.
func TestAliasExpansionBounded(t *testing.T) {
	_, err := Load(LoadOptions{ConfigFile: fuzzFile, ConfigYAML: []byte(aliasBomb(40))})
	if err == nil || !strings.Contains(err.Error(), "expands to more than") || !strings.Contains(err.Error(), fuzzFile) {
		t.Fatalf("error %v, want the expansion limit naming the file", err)
	}
	merge := "training: &t0 {lr: 1}\n"
	for i := 1; i <= 40; i++ {
		merge += fmt.Sprintf("z%d: &t%d {<<: [*t%d, *t%d]}\n", i, i, i-1, i-1)
	}
	merge += "model: {<<: *t40}\n"
	if _, err := Load(LoadOptions{ConfigFile: fuzzFile, ConfigYAML: []byte(merge)}); err == nil || !strings.Contains(err.Error(), "expands to more than") {
		t.Fatalf("merge keys: error %v, want the expansion limit", err)
	}
}
