package config

import (
	"fmt"
	"strings"
)

// Keys of other projects' configurations.
//
// The PyTorch H-JEPA project, whose configs/default.yaml this schema
// follows, names some settings differently (data.data_path for data.path),
// and has settings with no counterpart here (data.pin_memory, W&B). I-JEPA
// (facebookresearch/ijepa) has its own names for the same settings. Load
// accepts such files: a renamed key is read as ours (an alias); a key that
// changes nothing here is accepted with a Note; a key that asks for
// something hjepa does not do (model.rope.use_rope: true) is refused with
// the reason. Migrate rewrites such a file in this schema's names.

// Note is something Load accepted but the caller should tell the user: a key
// with no counterpart here, ignored, or a key or value read with a meaning
// that differs from its author's project. A note never stops a run.
type Note struct {
	// Key is the key as written (data.pin_memory, logging.wandb).
	Key string
	// Source is where it came from, as FieldError.Source.
	Source string
	// Msg says what hjepa does with it and why.
	Msg string
}

func (n Note) String() string {
	if n.Source == "" {
		return n.Key + ": " + n.Msg
	}
	return n.Source + ": " + n.Key + ": " + n.Msg
}

// project is where a foreign key comes from.
type project int

const (
	pytorchHJEPA project = iota + 1 // the PyTorch H-JEPA project's configs/*.yaml
	ijepa                           // facebookresearch/ijepa configs/*.yaml
)

func (p project) String() string {
	if p == ijepa {
		return "I-JEPA"
	}
	return "PyTorch H-JEPA"
}

// foreignKey is one key (or section) of another project's configuration.
type foreignKey struct {
	key  string
	from project
	// section: key is a section and the entry covers every key under it,
	// with one note for all of them.
	section bool
	// canonical is the key of this schema it is read as (an alias, same
	// meaning and type); empty when it has no counterpart here.
	canonical string
	// note says why a key without counterpart is ignored.
	note string
	// refuse, when set, is why the key is refused when its value turns the
	// feature on (true, a non-zero number, a non-empty string); off, it is
	// ignored with the note. For a section, switchKey (a key under it) is
	// the one that turns it on.
	refuse    string
	switchKey string
}

// foreignKeys lists every key of the other projects' configurations that
// Load accepts. A key of theirs that is not here is an unknown key (with a
// hint from foreignHints where one helps).
var foreignKeys = []foreignKey{
	// The PyTorch H-JEPA configs/default.yaml: renamed, same meaning.
	{key: "data.data_path", from: pytorchHJEPA, canonical: "data.path"},
	{key: "checkpoint.checkpoint_dir", from: pytorchHJEPA, canonical: "checkpoint.dir"},
	{key: "logging.log_dir", from: pytorchHJEPA, canonical: "logging.dir"},
	{key: "logging.log_frequency", from: pytorchHJEPA, canonical: "logging.every_steps"},
	{key: "logging.tensorboard.enabled", from: pytorchHJEPA, canonical: "logging.tensorboard"},

	// The PyTorch H-JEPA configs/default.yaml: no counterpart. Only keys
	// whose every value trains the same model, or whose effect is named in
	// the note, are ignored; the others are refused when on.
	{key: "model.ema.momentum_warmup_epochs", from: pytorchHJEPA,
		note: "ignored: hjepa ramps the EMA momentum linearly from model.ema.momentum to momentum_end over the whole run (I-JEPA); PyTorch H-JEPA holds momentum for momentum_warmup_epochs, then ramps over the rest, so the target encoder moves slightly differently early on"},
	{key: "model.rope", from: pytorchHJEPA, section: true, switchKey: "use_rope",
		note:   "ignored: use_rope is off, and positions are I-JEPA's fixed 2-D sin-cos embeddings, as with RoPE off",
		refuse: "RoPE is not implemented: positions are I-JEPA's fixed 2-D sin-cos embeddings; set use_rope: false (or remove model.rope) to train with those"},
	{key: "model.use_flash_attention", from: pytorchHJEPA,
		note: "ignored: attention here is exact softmax(QK^T/sqrt(d))V, which flash attention also computes; it changes speed and memory, not the result"},
	{key: "model.fpn", from: pytorchHJEPA, section: true, switchKey: "use_fpn",
		note:   "ignored: use_fpn is off, and the hierarchy levels are average-pooled windows of the encoder's tokens, as with the FPN off",
		refuse: "a feature pyramid network is not implemented: the hierarchy levels are average-pooled windows of the encoder's tokens; set use_fpn: false (or remove model.fpn) to train with those"},
	{key: "data.pin_memory", from: pytorchHJEPA,
		note: "ignored: a PyTorch DataLoader setting (page-locked host buffers); hjepa's loader has no such option and batches are the same"},
	{key: "training.use_amp", from: pytorchHJEPA,
		note: "ignored: hjepa trains in float32 (no float16/bfloat16 autocast), which is at least as precise as mixed precision, using more memory and time; on CUDA, allow_tf32: true gives the tensor-core speed-up"},
	{key: "training.use_gradient_checkpointing", from: pytorchHJEPA,
		note: "ignored: activations are always kept for the backward pass; recomputing them would save memory, not change the result"},
	{key: "checkpoint.resume", from: pytorchHJEPA,
		note:   "ignored: null, nothing to resume",
		refuse: "resuming is not a configuration key here: run 'hjepa train --out DIR --resume' to continue from DIR's latest checkpoint; set checkpoint.resume: null"},
	{key: "logging.wandb", from: pytorchHJEPA, section: true,
		note: "ignored: hjepa does not call Weights & Biases itself; metrics go to <out>/metrics.jsonl and, with logging.tensorboard, to TensorBoard event files, which 'wandb sync --sync-tensorboard <out>/logs/tensorboard' uploads"},
	{key: "distributed.backend", from: pytorchHJEPA,
		note: "ignored: hjepa's processes all-reduce over their own gRPC ring, so there is no NCCL or Gloo backend to choose"},
	{key: "evaluation.linear_probe", from: pytorchHJEPA, section: true,
		note: "ignored: the linear probe is 'hjepa eval' on a checkpoint, a full-batch L2-regularised logistic regression (evaluation.probe_l2, probe_max_iter, train_limit); an SGD probe's enabled, dataset, batch_size, epochs and lr have no counterpart"},

	// I-JEPA configs: renamed, same meaning. root_path, color_jitter_strength
	// and optimization.ema are not here: see foreignHints.
	{key: "data.crop_size", from: ijepa, canonical: "data.image_size"},
	{key: "data.crop_scale", from: ijepa, canonical: "data.augmentation.crop_scale"},
	{key: "data.use_horizontal_flip", from: ijepa, canonical: "data.augmentation.horizontal_flip"},
	{key: "mask.num_pred_masks", from: ijepa, canonical: "masking.num_masks"},
	{key: "mask.pred_mask_scale", from: ijepa, canonical: "masking.mask_scale"},
	{key: "mask.num_enc_masks", from: ijepa, canonical: "masking.num_context_masks"},
	{key: "mask.enc_mask_scale", from: ijepa, canonical: "masking.context_scale"},
	{key: "mask.patch_size", from: ijepa, canonical: "model.patch_size"},
	{key: "meta.model_name", from: ijepa, canonical: "model.encoder_type"},
	{key: "meta.pred_depth", from: ijepa, canonical: "model.predictor.depth"},
	{key: "meta.pred_emb_dim", from: ijepa, canonical: "model.predictor.embed_dim"},
	{key: "optimization.final_lr", from: ijepa, canonical: "training.min_lr"},
	{key: "optimization.final_weight_decay", from: ijepa, canonical: "training.weight_decay_end"},
	{key: "optimization.warmup", from: ijepa, canonical: "training.warmup_epochs"},
}

// valueAlias is another project's name for a value of one of our string
// keys, and what reading it as ours means.
type valueAlias struct {
	to, note string
}

// valueAliases maps key -> lower-cased foreign value -> our value.
var valueAliases = map[string]map[string]valueAlias{
	"data.dataset": {
		"imagenet": {"imagefolder", "\"imagenet\" read as \"imagefolder\": data.path is the ImageNet root holding train/ and val/ class folders, as in PyTorch H-JEPA"},
	},
	"loss.type": {
		"huber": {"smoothl1", "\"huber\" read as \"smoothl1\": Huber with delta 1 (PyTorch H-JEPA's) is smooth-L1 with beta 1"},
	},
}

// aliasValue translates another project's value of key, when it is one.
func aliasValue(key string, x any) (any, string, bool) {
	s, ok := x.(string)
	if !ok {
		return x, "", false
	}
	a, ok := valueAliases[key][strings.ToLower(s)]
	if !ok {
		return x, "", false
	}
	return a.to, a.note, true
}

// foreignIndex is foreignKeys indexed once, at package init.
type foreignIndex struct {
	byKey map[string]*foreignKey
	// prefixes are the proper prefixes of foreign keys that are not sections
	// of ours (mask, meta, optimization) or are keys of ours
	// (logging.tensorboard, which PyTorch writes as a section).
	prefixes map[string]bool
	byEnv    map[string]*foreignKey // HJEPA_DATA_DATA_PATH -> data.data_path
	// sectionEnv maps HJEPA_LOGGING_WANDB_ -> logging.wandb.
	sectionEnv map[string]*foreignKey
}

var foreign = buildForeign()

func buildForeign() *foreignIndex {
	f := &foreignIndex{
		byKey:      map[string]*foreignKey{},
		prefixes:   map[string]bool{},
		byEnv:      map[string]*foreignKey{},
		sectionEnv: map[string]*foreignKey{},
	}
	for i := range foreignKeys {
		fk := &foreignKeys[i]
		if _, ours := schema.byKey[fk.key]; ours || schema.sections[fk.key] {
			panic(fmt.Sprintf("config: foreign key %q is a key of this schema", fk.key))
		}
		if fk.canonical != "" && schema.byKey[fk.canonical] == nil {
			panic(fmt.Sprintf("config: foreign key %q: no key %q", fk.key, fk.canonical))
		}
		f.byKey[fk.key] = fk
		for p := fk.key; strings.Contains(p, "."); {
			p = p[:strings.LastIndex(p, ".")]
			if !schema.sections[p] {
				f.prefixes[p] = true
			}
		}
		env := EnvName(fk.key)
		if fk.section {
			env += "_"
			for other := range schema.byEnv {
				if strings.HasPrefix(other, env) {
					panic(fmt.Sprintf("config: foreign section %q covers %s", fk.key, other))
				}
			}
			f.sectionEnv[env] = fk
			continue
		}
		if other, dup := schema.byEnv[env]; dup {
			panic(fmt.Sprintf("config: foreign key %q and key %q both map to %s", fk.key, other, env))
		}
		f.byEnv[env] = fk
	}
	return f
}

// lookup finds the foreign entry for key: the key itself or a foreign
// section above it (logging.wandb.project -> logging.wandb).
func (f *foreignIndex) lookup(key string) (*foreignKey, bool) {
	for k := key; ; {
		if fk, ok := f.byKey[k]; ok && (k == key || fk.section) {
			return fk, true
		}
		i := strings.LastIndex(k, ".")
		if i < 0 {
			return nil, false
		}
		k = k[:i]
	}
}

// lookupEnv finds the foreign entry for an HJEPA_* name and the key it
// stands for (under a section, the switch key when the name is its).
func (f *foreignIndex) lookupEnv(name string) (*foreignKey, string, bool) {
	if fk, ok := f.byEnv[name]; ok {
		return fk, fk.key, true
	}
	for prefix, fk := range f.sectionEnv {
		if rest, ok := strings.CutPrefix(name, prefix); ok {
			return fk, fk.key + "." + strings.ToLower(rest), true
		}
	}
	return nil, "", false
}

// valueOn reports whether a value as text turns a feature on: not false,
// 0, null or empty.
func valueOn(s string) bool {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "false", "0", "no", "off", "f", "n", "null", "~", "none":
		return false
	}
	if f, err := parseFloat(s); err == nil {
		return f != 0
	}
	return true
}

// foreignText resolves a foreign key given as text (--set, HJEPA_*). It
// returns the key of ours and the value it sets (canonical "" when it sets
// nothing), or a note, or the reason it is refused.
func foreignText(fk *foreignKey, key, val string) (canonical string, x any, note string, err error) {
	switch {
	case fk.canonical != "":
		x, err := parseValue(schema.byKey[fk.canonical].kind, val)
		if err != nil {
			return "", nil, "", err
		}
		x, note, _ := aliasValue(fk.canonical, x)
		return fk.canonical, x, note, nil
	case fk.refuse != "" && valueOn(val) && (!fk.section || key == fk.key+"."+fk.switchKey):
		return "", nil, "", fmt.Errorf("%s is refused: %s", val, fk.refuse)
	}
	return "", nil, fk.note, nil
}

// foreignHints are other projects' keys that have no single counterpart
// here, mapped to the key their user most likely needs, for the
// unknown-key message only: I-JEPA's data path is root_path joined with
// image_folder; its color_jitter_strength only applies with
// use_color_distortion; its ema is a [start, end] pair (model.ema.momentum
// and momentum_end).
var foreignHints = map[string]string{
	"data.root_path":             "data.path",
	"data.color_jitter_strength": "data.augmentation.color_jitter",
	"optimization.ema":           "model.ema.momentum",
}

// pytorchDialect holds the rules for keys that both schemas share but the
// PyTorch H-JEPA project reads differently. They apply when the
// configuration uses at least one key only that project has (every one of
// its configs sets data.data_path), so that a file of ours keeps our
// meaning.
//
// weight_decay: PyTorch H-JEPA holds it constant; here it is the start of a
// cosine schedule to weight_decay_end (default 0.4). Unless
// weight_decay_end is given, it is set to weight_decay.
//
// normalize_embeddings: PyTorch H-JEPA L2-normalises predictions and
// targets; here it LayerNorms the targets (I-JEPA). Same intent, another
// loss scale: a note.
const (
	dialectWeightDecayNote = "PyTorch H-JEPA holds weight decay constant; training.weight_decay_end set to the same value to match (here weight decay follows a cosine schedule from weight_decay to weight_decay_end)"
	dialectNormalizeNote   = "true LayerNorms the targets here (I-JEPA); PyTorch H-JEPA L2-normalises predictions and targets instead, which puts the loss on another scale"
)
