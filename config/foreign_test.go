package config

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// pytorchFixture is the PyTorch H-JEPA project's configs/default.yaml.
const pytorchFixture = "testdata/pytorch-hjepa-default.yaml"

func noteKeys(notes []Note) []string {
	out := make([]string, len(notes))
	for i, n := range notes {
		out[i] = n.Key
	}
	return out
}

// sameConfig fails unless a and b agree on every key.
func sameConfig(t *testing.T, what string, a, b Config) {
	t.Helper()
	fa, fb := a.flatten(), b.flatten()
	for _, k := range Keys() {
		if !reflect.DeepEqual(fa[k], fb[k]) {
			t.Errorf("%s: %s is %#v, want %#v", what, k, fb[k], fa[k])
		}
	}
}

// TestPyTorchFixtureLoadsWithNotes: the PyTorch H-JEPA default.yaml loads and
// validates; what has no meaning here gives one note per key (or section),
// and nothing else does.
func TestPyTorchFixtureLoadsWithNotes(t *testing.T) {
	c, notes, err := LoadWithNotes(LoadOptions{ConfigFile: pytorchFixture})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"model.ema.momentum_warmup_epochs", "model.rope", "model.use_flash_attention", "model.fpn",
		"data.dataset", "data.pin_memory", "training.use_amp", "training.use_gradient_checkpointing",
		"checkpoint.resume", "logging.wandb", "distributed.backend", "evaluation.linear_probe",
		"training.weight_decay", "loss.normalize_embeddings",
	}
	if got := noteKeys(notes); !slices.Equal(got, want) {
		t.Fatalf("notes on %q,\nwant %q", got, want)
	}
	for _, n := range notes {
		if !strings.HasPrefix(n.Source, pytorchFixture+":") || n.Msg == "" {
			t.Errorf("note %+v names no line or says nothing", n)
		}
	}
	// The renamed keys took their values.
	if c.Data.Path != "/path/to/dataset" || c.Data.Dataset != "imagefolder" || c.Checkpoint.Dir != "results/checkpoints" ||
		c.Logging.Dir != "results/logs" || c.Logging.EverySteps != 100 || !c.Logging.TensorBoard ||
		c.Training.WeightDecay != 0.05 || c.Training.WeightDecayEnd != 0.05 {
		t.Fatalf("aliases not applied: data %+v checkpoint %+v logging %+v training %+v", c.Data, c.Checkpoint, c.Logging, c.Training)
	}
	// configs/default.yaml is our translation of the same file: the same run
	// (the digest leaves out paths, device and loader workers).
	ours, err := Load(LoadOptions{ConfigFile: "../configs/default.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	if ours.Digest() != c.Digest() {
		ours.Data.Path, ours.Data.ValPath, ours.Device = c.Data.Path, c.Data.ValPath, c.Device
		ours.Checkpoint.Dir, ours.Logging.Dir = c.Checkpoint.Dir, c.Logging.Dir
		sameConfig(t, "PyTorch default.yaml against configs/default.yaml", ours, c)
	}
}

// TestMigratePyTorchFixture: migrate's output loads without notes to the
// configuration the PyTorch file loads to, and keeps no foreign key.
func TestMigratePyTorchFixture(t *testing.T) {
	want, _, err := LoadWithNotes(LoadOptions{ConfigFile: pytorchFixture})
	if err != nil {
		t.Fatal(err)
	}
	out, err := Migrate(pytorchFixture, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, notes, err := LoadWithNotes(LoadOptions{ConfigFile: "migrated.yaml", ConfigYAML: out})
	if err != nil {
		t.Fatalf("migrated file does not load: %v\n%s", err, out)
	}
	if len(notes) > 0 {
		t.Fatalf("migrated file gives notes %v\n%s", notes, out)
	}
	if err := got.Validate(); err != nil {
		t.Fatal(err)
	}
	sameConfig(t, "migrated", want, got)
	for _, s := range []string{
		"path: \"/path/to/dataset\" # was data.data_path",
		"tensorboard: true # was logging.tensorboard.enabled",
		"# dropped logging.wandb: {enabled: true, project: h-jepa",
		"# dropped data.pin_memory: true (PyTorch H-JEPA)",
		"weight_decay_end: 0.05",
	} {
		if !strings.Contains(string(out), s) {
			t.Errorf("migrated file lacks %q:\n%s", s, out)
		}
	}
	// A dropped key's own comment goes with it.
	if strings.Contains(string(out), "# Weights & Biases settings") {
		t.Errorf("the dropped wandb section's comment survived:\n%s", out)
	}
	// A file of ours migrates to itself, key for key.
	again, err := Migrate("migrated.yaml", out)
	if err != nil {
		t.Fatal(err)
	}
	back, notes, err := LoadWithNotes(LoadOptions{ConfigFile: "again.yaml", ConfigYAML: again})
	if err != nil || len(notes) > 0 {
		t.Fatalf("second migration: %v %v", err, notes)
	}
	sameConfig(t, "migrated twice", want, back)
}

// aliasCase is an alias and a value of its type unlike the default.
type aliasCase struct {
	alias, canonical string
	text             string // the value as --set / HJEPA_* text and in YAML
	want             any
}

func aliasCases() []aliasCase {
	var out []aliasCase
	for _, fk := range foreignKeys {
		if fk.canonical == "" {
			continue
		}
		c := aliasCase{alias: fk.key, canonical: fk.canonical}
		switch schema.byKey[fk.canonical].kind {
		case kindInt:
			c.text, c.want = "12345", 12345
		case kindFloat:
			c.text, c.want = "0.125", 0.125
		case kindBool:
			def, _ := Default().Get(fk.canonical)
			c.want = !def.(bool)
			c.text = fmt.Sprint(c.want)
		case kindString:
			c.text, c.want = "some_value", "some_value"
		case kindFloatList:
			c.text, c.want = "[0.25, 0.5]", []float64{0.25, 0.5}
		}
		out = append(out, c)
	}
	return out
}

// nestedYAML writes key: value with key's sections as nested mappings.
func nestedYAML(key, value string) string {
	parts := strings.Split(key, ".")
	var b strings.Builder
	for i, p := range parts {
		b.WriteString(strings.Repeat("  ", i) + p + ":")
		if i == len(parts)-1 {
			b.WriteString(" " + value)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// TestAliases: every alias sets its key, from the file, --set and HJEPA_*.
func TestAliases(t *testing.T) {
	// The mapping itself, for the keys the PyTorch and I-JEPA files use.
	want := map[string]string{
		"data.data_path":                  "data.path",
		"checkpoint.checkpoint_dir":       "checkpoint.dir",
		"logging.log_dir":                 "logging.dir",
		"logging.log_frequency":           "logging.every_steps",
		"logging.tensorboard.enabled":     "logging.tensorboard",
		"data.crop_size":                  "data.image_size",
		"data.crop_scale":                 "data.augmentation.crop_scale",
		"data.use_horizontal_flip":        "data.augmentation.horizontal_flip",
		"mask.num_pred_masks":             "masking.num_masks",
		"mask.pred_mask_scale":            "masking.mask_scale",
		"mask.num_enc_masks":              "masking.num_context_masks",
		"mask.enc_mask_scale":             "masking.context_scale",
		"mask.patch_size":                 "model.patch_size",
		"meta.model_name":                 "model.encoder_type",
		"meta.pred_depth":                 "model.predictor.depth",
		"meta.pred_emb_dim":               "model.predictor.embed_dim",
		"optimization.final_lr":           "training.min_lr",
		"optimization.final_weight_decay": "training.weight_decay_end",
		"optimization.warmup":             "training.warmup_epochs",
	}
	cases := aliasCases()
	if len(cases) != len(want) {
		t.Errorf("%d aliases, want %d", len(cases), len(want))
	}
	for _, tc := range cases {
		if want[tc.alias] != tc.canonical {
			t.Errorf("%s is read as %s, want %q", tc.alias, tc.canonical, want[tc.alias])
		}
		for _, src := range []struct {
			name string
			opts LoadOptions
		}{
			{"file", LoadOptions{ConfigFile: "a.yaml", ConfigYAML: []byte(nestedYAML(tc.alias, tc.text))}},
			{"--set", LoadOptions{Sets: []string{tc.alias + "=" + tc.text}}},
			{"env", LoadOptions{Env: true, Environ: []string{EnvName(tc.alias) + "=" + tc.text}}},
		} {
			c, notes, err := LoadWithNotes(src.opts)
			if err != nil {
				t.Errorf("%s %s: %v", src.name, tc.alias, err)
				continue
			}
			if got, _ := c.Get(tc.canonical); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("%s %s: %s = %#v, want %#v", src.name, tc.alias, tc.canonical, got, tc.want)
			}
			if len(notes) > 0 {
				t.Errorf("%s %s: notes %v for a plain rename", src.name, tc.alias, notes)
			}
		}
	}
}

// TestAliasAndKeyConflict: an alias and its key set in one source is an
// error naming both; a later source overriding an alias is not.
func TestAliasAndKeyConflict(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts LoadOptions
	}{
		{"file", LoadOptions{ConfigFile: "c.yaml", ConfigYAML: []byte("data:\n  path: /a\n  data_path: /b\n")}},
		{"file other order", LoadOptions{ConfigFile: "c.yaml", ConfigYAML: []byte("data:\n  data_path: /b\n  path: /a\n")}},
		{"file nested", LoadOptions{ConfigFile: "c.yaml", ConfigYAML: []byte("logging:\n  tensorboard:\n    enabled: true\n  log_dir: /l\n  dir: /m\n")}},
		{"--set", LoadOptions{Sets: []string{"data.path=/a", "data.data_path=/b"}}},
		{"env", LoadOptions{Env: true, Environ: []string{"HJEPA_DATA_PATH=/a", "HJEPA_DATA_DATA_PATH=/b"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(tc.opts)
			var le *LoadError
			if !errors.As(err, &le) {
				t.Fatalf("err = %v; want a *LoadError", err)
			}
			msg := err.Error()
			alias, key := "data.data_path", "data.path"
			if tc.name == "env" {
				alias, key = "HJEPA_DATA_DATA_PATH", "HJEPA_DATA_PATH"
			}
			if tc.name == "file nested" {
				alias, key = "logging.log_dir", "logging.dir"
			}
			for _, s := range []string{alias, key, "both set", "keep one"} {
				if !strings.Contains(msg, s) {
					t.Errorf("%q lacks %q", msg, s)
				}
			}
		})
	}
	c, err := Load(LoadOptions{ConfigFile: "c.yaml", ConfigYAML: []byte("data:\n  data_path: /file\n"), Sets: []string{"data.path=/set"}})
	if err != nil || c.Data.Path != "/set" {
		t.Fatalf("--set over the file's alias: path %q err %v", c.Data.Path, err)
	}
}

// TestRefusedKeys: a key asking for what hjepa does not do is refused with
// the reason; off, it is accepted with a note.
func TestRefusedKeys(t *testing.T) {
	for _, tc := range []struct {
		key, on, off, reason string
	}{
		{"model.rope.use_rope", "true", "false", "RoPE is not implemented"},
		{"model.fpn.use_fpn", "true", "false", "feature pyramid network is not implemented"},
		{"checkpoint.resume", "results/checkpoints/latest.pth", "null", "hjepa train --out DIR --resume"},
	} {
		sources := func(v string) map[string]LoadOptions {
			return map[string]LoadOptions{
				"file":  {ConfigFile: "r.yaml", ConfigYAML: []byte(nestedYAML(tc.key, v))},
				"--set": {Sets: []string{tc.key + "=" + v}},
				"env":   {Env: true, Environ: []string{EnvName(tc.key) + "=" + v}},
			}
		}
		for name, opts := range sources(tc.on) {
			_, err := Load(opts)
			var le *LoadError
			if !errors.As(err, &le) || !le.hasKey(tc.key) || !strings.Contains(err.Error(), tc.reason) {
				t.Errorf("%s %s=%s: err %v; want a refusal naming the key and %q", name, tc.key, tc.on, err, tc.reason)
			}
		}
		for name, opts := range sources(tc.off) {
			_, notes, err := LoadWithNotes(opts)
			if err != nil || len(notes) != 1 {
				t.Errorf("%s %s=%s: notes %v err %v; want one note", name, tc.key, tc.off, notes, err)
			}
		}
	}
	if _, err := Migrate("r.yaml", []byte("model:\n  rope:\n    use_rope: true\n")); err == nil || !strings.Contains(err.Error(), "RoPE") {
		t.Fatalf("migrate of a refused key: %v", err)
	}
}

func (e *LoadError) hasKey(key string) bool { return slices.Contains(e.Keys(), key) }

// TestIgnoredKeysOneNoteEach: a key without counterpart gives one note, a
// whole section (logging.wandb) one note for all its keys, from any source.
func TestIgnoredKeysOneNoteEach(t *testing.T) {
	c, notes, err := LoadWithNotes(LoadOptions{ConfigFile: "i.yaml", ConfigYAML: []byte(
		"data:\n  pin_memory: true\nlogging:\n  wandb:\n    enabled: true\n    project: p\n    entity: null\n    tags: [a, b]\n" +
			"training:\n  use_amp: true\ndistributed:\n  backend: gloo\n")})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := noteKeys(notes), []string{"data.pin_memory", "logging.wandb", "training.use_amp", "distributed.backend"}; !slices.Equal(got, want) {
		t.Fatalf("notes on %q, want %q", got, want)
	}
	def := Default()
	sameConfig(t, "ignored keys", def, c)
	_, notes, err = LoadWithNotes(LoadOptions{Sets: []string{"logging.wandb.project=p", "model.use_flash_attention=true"},
		Env: true, Environ: []string{"HJEPA_LOGGING_WANDB_ENABLED=true"}})
	if err != nil || len(notes) != 3 {
		t.Fatalf("notes %v err %v; want 3", notes, err)
	}
}

// TestWandbHint: logging.wandb is a PyTorch section (a note), and an
// unknown subsection never makes the hint jump to another section
// (logging.wandb.enabled once suggested distributed.enabled).
func TestWandbHint(t *testing.T) {
	_, notes, err := LoadWithNotes(LoadOptions{ConfigFile: "w.yaml", ConfigYAML: []byte("logging:\n  wandb:\n    enabled: true\n")})
	if err != nil || len(notes) != 1 || notes[0].Key != "logging.wandb" {
		t.Fatalf("notes %v err %v", notes, err)
	}
	for _, tc := range []struct{ key, want, not string }{
		{"logging.mlflow.enabled", `logging has no section "mlflow"; valid keys in logging: `, "distributed.enabled"},
		{"evaluation.probe.batch_size", `evaluation has no section "probe"`, "data.batch_size"},
		{"mlflow.enabled", "hjepa config keys", "distributed.enabled"},
		{"model.predicter.depth", `did you mean "model.predictor.depth"`, ""},
		{"modle.depth", `did you mean "model.depth"`, ""},
		{"training.batch_size", `did you mean "data.batch_size"`, ""},
	} {
		_, err := Load(LoadOptions{Sets: []string{tc.key + "=1"}})
		if err == nil || !strings.Contains(err.Error(), tc.want) || (tc.not != "" && strings.Contains(err.Error(), tc.not)) {
			t.Errorf("%s: %v; want %q and not %q", tc.key, err, tc.want, tc.not)
		}
	}
}

// TestPyTorchDialect: the rules for shared keys apply only to a file that
// uses a PyTorch-only key.
func TestPyTorchDialect(t *testing.T) {
	ours, notes, err := LoadWithNotes(LoadOptions{ConfigFile: "o.yaml", ConfigYAML: []byte("training:\n  weight_decay: 0.05\nloss:\n  normalize_embeddings: true\n")})
	if err != nil || len(notes) > 0 || ours.Training.WeightDecayEnd != Default().Training.WeightDecayEnd {
		t.Fatalf("our file: weight_decay_end %g notes %v err %v", ours.Training.WeightDecayEnd, notes, err)
	}
	pt, notes, err := LoadWithNotes(LoadOptions{ConfigFile: "p.yaml", ConfigYAML: []byte("data:\n  data_path: /d\ntraining:\n  weight_decay: 0.05\n"),
		Sets: []string{"training.weight_decay=0.07"}})
	if err != nil || pt.Training.WeightDecayEnd != 0.07 || !slices.Equal(noteKeys(notes), []string{"training.weight_decay"}) {
		t.Fatalf("PyTorch file: weight_decay_end %g notes %v err %v", pt.Training.WeightDecayEnd, notes, err)
	}
	pt, _, err = LoadWithNotes(LoadOptions{ConfigFile: "p.yaml", ConfigYAML: []byte("data:\n  data_path: /d\ntraining:\n  weight_decay: 0.05\n  weight_decay_end: 0.2\n")})
	if err != nil || pt.Training.WeightDecayEnd != 0.2 {
		t.Fatalf("explicit weight_decay_end: %g %v", pt.Training.WeightDecayEnd, err)
	}
}

// TestValueAliases: another project's name for a value is read as ours,
// with a note.
func TestValueAliases(t *testing.T) {
	c, notes, err := LoadWithNotes(LoadOptions{Sets: []string{"data.dataset=ImageNet", "loss.type=huber"}})
	if err != nil || c.Data.Dataset != "imagefolder" || c.Loss.Type != "smoothl1" || len(notes) != 2 {
		t.Fatalf("dataset %q loss %q notes %v err %v", c.Data.Dataset, c.Loss.Type, notes, err)
	}
}

// TestIJEPASections: I-JEPA's sections (mask, meta, optimization) load and
// migrate into ours.
func TestIJEPASections(t *testing.T) {
	src := []byte("# I-JEPA names\nmeta:\n  model_name: vit_small\n  pred_depth: 4\nmask:\n  # targets\n  num_pred_masks: 3\n  pred_mask_scale: [0.1, 0.2]\n" +
		"data:\n  crop_size: 224\n  use_horizontal_flip: false\noptimization:\n  warmup: 5\n  final_lr: 1.0e-6\n")
	c, notes, err := LoadWithNotes(LoadOptions{ConfigFile: "ij.yaml", ConfigYAML: src})
	if err != nil || len(notes) > 0 {
		t.Fatalf("notes %v err %v", notes, err)
	}
	if c.Model.EncoderType != "vit_small" || c.Model.Predictor.Depth != 4 || c.Masking.NumMasks != 3 ||
		c.Data.Augmentation.HorizontalFlip || c.Training.WarmupEpochs != 5 || c.Training.MinLR != 1e-6 {
		t.Fatalf("I-JEPA keys not applied: %+v", c)
	}
	out, err := Migrate("ij.yaml", src)
	if err != nil {
		t.Fatal(err)
	}
	got, notes, err := LoadWithNotes(LoadOptions{ConfigFile: "m.yaml", ConfigYAML: out})
	if err != nil || len(notes) > 0 {
		t.Fatalf("migrated: notes %v err %v\n%s", notes, err, out)
	}
	sameConfig(t, "migrated I-JEPA", c, got)
	for _, s := range []string{"masking:\n  # targets\n  num_masks: 3 # was mask.num_pred_masks", "predictor:\n    depth: 4 # was meta.pred_depth"} {
		if !strings.Contains(string(out), s) {
			t.Errorf("migrated file lacks %q:\n%s", s, out)
		}
	}
}

// TestForeignEnvNames: every foreign key's HJEPA_* name finds it.
func TestForeignEnvNames(t *testing.T) {
	for _, fk := range foreignKeys {
		name := EnvName(fk.key)
		if fk.section {
			name += "_X"
		}
		got, _, ok := foreign.lookupEnv(name)
		if !ok || got.key != fk.key {
			t.Errorf("%s: found %v", name, got)
		}
	}
}
