package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"
)

// LoadOptions says where a configuration comes from. Precedence, lowest
// first: Default() <- ConfigFile <- environment <- Sets.
type LoadOptions struct {
	// ConfigFile is a YAML file (optional; empty: defaults only).
	ConfigFile string
	// ConfigYAML is the file's content when it came another way (a worker
	// gets the coordinator's configuration over gRPC); ConfigFile, when set
	// too, only names it in messages.
	ConfigYAML []byte
	// Sets are "key=value" overrides (repeated --set), applied in order, so
	// a later one wins. The value is parsed by the key's type: integers,
	// numbers (1.5e-4), booleans (true/false/1/0/yes/no/on/off), strings
	// (taken as-is) and lists of numbers ("[0.15,0.2]" or "0.15,0.2").
	Sets []string
	// Env reads HJEPA_* variables: HJEPA_ + the key upper-cased with dots
	// replaced by underscores (training.lr -> HJEPA_TRAINING_LR,
	// model.predictor.embed_dim -> HJEPA_MODEL_PREDICTOR_EMBED_DIM; see
	// EnvName). Values are parsed as for Sets. The keys of other projects'
	// configurations that LoadWithNotes accepts have variables named the
	// same way (data.data_path -> HJEPA_DATA_DATA_PATH). Any other HJEPA_*
	// variable is an error unless IgnoreEnv names it.
	Env bool
	// Environ replaces os.Environ() as the environment read when Env is set
	// ("NAME=value" entries).
	Environ []string
	// IgnoreEnv names HJEPA_* variables that belong to the caller rather
	// than to the configuration (e.g. a job token), so they are not
	// reported as unknown keys.
	IgnoreEnv []string
}

// ProgramEnv are the HJEPA_* variables that configure the programs rather
// than the training run (job token, CUDA library paths, the benchmarks'
// Python, the memory of the test builds' emulated GPU); Load never reads
// them as configuration keys.
var ProgramEnv = []string{"HJEPA_JOB_TOKEN", "HJEPA_LIBCUDA", "HJEPA_CUBLAS", "HJEPA_PYTHON", "HJEPA_EMU_MEMORY_BYTES", "HJEPA_EMU_TENANT_BYTES"}

// LoadError lists every bad key and value found while loading, one per
// line, each naming its source (file:line, environment variable or --set).
type LoadError struct {
	Errors []FieldError
}

func (e *LoadError) Error() string { return joinErrors("configuration", e.Errors) }

// Keys lists the key paths (or variable names) the problems are about.
func (e *LoadError) Keys() []string { return fieldKeys(e.Errors) }

// Load builds a Config from the defaults, the file, the environment and the
// --set overrides, in that order of precedence, using viper to layer them.
// It does not validate: call Validate on the result. It is LoadWithNotes
// without the notes.
//
// Errors: a missing or unreadable file, or a YAML syntax error, is returned
// at once and names the file (and the line, when the parser gives one).
// Unknown keys and values of the wrong type from every source are collected
// and returned together as a *LoadError; an unknown key's message names the
// closest valid key.
func Load(opts LoadOptions) (Config, error) {
	c, _, err := LoadWithNotes(opts)
	return c, err
}

// LoadWithNotes is Load that also returns its notes: every source may use
// the key names of the PyTorch H-JEPA and I-JEPA configurations (see
// foreignKeys). A renamed key is read as ours, and setting it and ours in
// the same source is an error; a key with no counterpart here is ignored
// with a note; one that asks for something hjepa does not do (RoPE, an FPN)
// is a *LoadError problem with the reason. The caller shows the notes as
// warnings.
func LoadWithNotes(opts LoadOptions) (Config, []Note, error) {
	ld := &loader{v: viper.New(), explicit: map[string]string{}}
	for k, x := range Default().flatten() {
		ld.v.SetDefault(k, x)
	}

	if opts.ConfigFile != "" || opts.ConfigYAML != nil {
		f, err := readFile(opts.ConfigFile, opts.ConfigYAML)
		if err != nil {
			return Config{}, nil, err
		}
		ld.problems = append(ld.problems, f.problems...)
		ld.notes = append(ld.notes, f.notes...)
		ld.dialect = f.dialect
		for k, src := range f.sources {
			ld.explicit[k] = src
		}
		if err := ld.v.MergeConfigMap(nest(f.values)); err != nil {
			return Config{}, nil, fmt.Errorf("config file %s: %w", opts.ConfigFile, err)
		}
	}

	if opts.Env {
		environ := opts.Environ
		if environ == nil {
			environ = os.Environ()
		}
		ignore := map[string]bool{}
		for _, n := range slices.Concat(ProgramEnv, opts.IgnoreEnv) {
			ignore[n] = true
		}
		setBy := map[string]string{}
		for _, kv := range environ {
			name, val, _ := strings.Cut(kv, "=")
			if !strings.HasPrefix(name, EnvPrefix) || ignore[name] {
				continue
			}
			key, ok := schema.byEnv[name]
			if !ok {
				if _, fkey, isForeign := foreign.lookupEnv(name); isForeign {
					key, ok = fkey, true
				}
			}
			if !ok {
				msg := "not a configuration variable"
				if k, ok := closestEnv(name); ok {
					msg += fmt.Sprintf("; did you mean %s (key %q)?", EnvName(k), k)
				} else {
					msg += "; run 'hjepa config keys' and use HJEPA_ + the key in upper case with dots as underscores"
				}
				ld.problems = append(ld.problems, FieldError{Key: name, Source: "environment", Msg: msg})
				continue
			}
			ld.text(key, name, val, "environment variable "+name, setBy)
		}
	}

	setBy := map[string]string{}
	for _, s := range opts.Sets {
		key, val, ok := strings.Cut(s, "=")
		key = strings.TrimSpace(key)
		if !ok || key == "" {
			ld.problems = append(ld.problems, FieldError{Key: key, Source: "--set",
				Msg: fmt.Sprintf("%q is not key=value; write e.g. --set training.lr=1e-3", s)})
			continue
		}
		if _, known := schema.byKey[key]; !known {
			if _, isForeign := foreign.lookup(key); !isForeign {
				ld.problems = append(ld.problems, FieldError{Key: key, Source: "--set", Msg: unknownKeyMsg(key)})
				continue
			}
		}
		ld.text(key, key, strings.TrimSpace(val), "--set", setBy)
	}

	if len(ld.problems) > 0 {
		return Config{}, nil, &LoadError{Errors: ld.problems}
	}
	ld.applyDialect()
	var c Config
	if err := ld.v.Unmarshal(&c); err != nil {
		// Every value was parsed to its field's type above, so this is a
		// bug in the loader, not in the user's input.
		return Config{}, nil, fmt.Errorf("config: decode merged settings: %w", err)
	}
	return c, ld.notes, nil
}

// loader is the state of one LoadWithNotes.
type loader struct {
	v        *viper.Viper
	problems []FieldError
	notes    []Note
	// explicit maps every key of ours that a source set to the source of
	// its value (the last one to set it).
	explicit map[string]string
	// dialect: some source used a key only PyTorch H-JEPA has.
	dialect bool
}

// text applies key=val from --set or the environment. key is ours or a
// foreign key; name is how the user wrote it (the variable's name for the
// environment) and setBy maps each key of ours to the name that set it in
// this source, so that an alias and its key both set are an error.
func (ld *loader) text(key, name, val, src string, setBy map[string]string) {
	canonical := key
	var x any
	var note string
	if l, ok := schema.byKey[key]; ok {
		var err error
		if x, err = parseValue(l.kind, val); err != nil {
			ld.problems = append(ld.problems, FieldError{Key: key, Source: src, Msg: err.Error()})
			return
		}
		x, note, _ = aliasValue(key, x)
	} else {
		fk, _ := foreign.lookup(key)
		if fk.from == pytorchHJEPA {
			ld.dialect = true
		}
		c, y, n, err := foreignText(fk, key, val)
		if err != nil {
			ld.problems = append(ld.problems, FieldError{Key: key, Source: src, Msg: err.Error()})
			return
		}
		if c == "" {
			ld.notes = append(ld.notes, Note{Key: key, Source: src, Msg: n})
			return
		}
		canonical, x, note = c, y, n
	}
	if prev, ok := setBy[canonical]; ok && prev != name {
		ld.problems = append(ld.problems, FieldError{Key: key, Source: src,
			Msg: fmt.Sprintf("%s and %s both set %s; keep one of them", prev, name, canonical)})
		return
	}
	setBy[canonical] = name
	if note != "" {
		ld.notes = append(ld.notes, Note{Key: key, Source: src, Msg: note})
	}
	ld.v.Set(canonical, x)
	ld.explicit[canonical] = src
}

// applyDialect applies the rules of pytorchDialect to a configuration that
// used a key only PyTorch H-JEPA has.
func (ld *loader) applyDialect() {
	if !ld.dialect {
		return
	}
	if src, ok := ld.explicit["training.weight_decay"]; ok {
		if _, ok := ld.explicit["training.weight_decay_end"]; !ok {
			ld.v.Set("training.weight_decay_end", ld.v.Get("training.weight_decay"))
			ld.notes = append(ld.notes, Note{Key: "training.weight_decay", Source: src, Msg: dialectWeightDecayNote})
		}
	}
	if src, ok := ld.explicit["loss.normalize_embeddings"]; ok && ld.v.GetBool("loss.normalize_embeddings") {
		ld.notes = append(ld.notes, Note{Key: "loss.normalize_embeddings", Source: src, Msg: dialectNormalizeNote})
	}
}

// fileLayer is what a configuration file sets.
type fileLayer struct {
	values   map[string]any    // key of ours -> value
	sources  map[string]string // key of ours -> "file:line"
	problems []FieldError
	notes    []Note
	dialect  bool // it uses a key only PyTorch H-JEPA has
}

// readFile parses a YAML config file, reporting unknown keys and wrong types
// with their line. The error is non-nil only when the file cannot be read
// or parsed at all.
func readFile(path string, data []byte) (*fileLayer, error) {
	data, err := readBytes(path, data)
	if err != nil {
		return nil, err
	}
	root, err := decodeYAML(path, data)
	if err != nil {
		return nil, err
	}
	if root == nil { // empty file: defaults only
		return &fileLayer{values: map[string]any{}}, nil
	}
	w := &yamlWalker{path: path, layer: fileLayer{values: map[string]any{}, sources: map[string]string{}}, setBy: map[string]string{}}
	w.mapping(root, "")
	if w.stoppedAt != nil {
		return nil, fmt.Errorf("config file %s:%d: the configuration expands to more than %d keys (aliases or merge keys nested in each other?); write the keys out", path, w.stoppedAt.Line, maxYAMLEntries)
	}
	return &w.layer, nil
}

// readBytes returns data, or the file's content when data is nil.
func readBytes(path string, data []byte) ([]byte, error) {
	if data != nil {
		return data, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		switch {
		case errors.Is(err, os.ErrNotExist):
			return nil, fmt.Errorf("config file %s: no such file; check the --config path (presets are in configs/)", path)
		case errors.Is(err, os.ErrPermission):
			return nil, fmt.Errorf("config file %s: permission denied; make it readable (chmod +r) or copy it", path)
		}
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	return data, nil
}

// decodeYAML parses one YAML document and returns its top-level mapping,
// or nil for an empty file.
func decodeYAML(path string, data []byte) (*yaml.Node, error) {
	doc, err := decodeDoc(path, data)
	if err != nil || doc == nil {
		return nil, err
	}
	root := doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return nil, nil
		}
		root = root.Content[0]
	}
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return nil, nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("config file %s:%d: the top level must be a mapping of sections (model:, data:, training:, ...)", path, root.Line)
	}
	return root, nil
}

// decodeDoc parses data as exactly one YAML document (nil when empty).
func decodeDoc(path string, data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) { // empty file: defaults only
			return nil, nil
		}
		return nil, fmt.Errorf("config file %s: %v; fix the YAML syntax there", path, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, fmt.Errorf("config file %s: %v; fix the YAML syntax there", path, err)
		}
		return nil, fmt.Errorf("config file %s:%d: a second YAML document (---); put the whole configuration in one document", path, extra.Line)
	}
	return &doc, nil
}

// maxYAMLEntries bounds the key/value pairs the walker visits. Aliases and
// merge keys are not expanded by the parser but by the walk, so a few
// hundred bytes of anchors referring to anchors would otherwise make it
// visit (and report) 2^N keys; a real configuration has a few hundred.
const maxYAMLEntries = 10_000

type yamlWalker struct {
	path      string
	layer     fileLayer
	setBy     map[string]string // key of ours -> the key (as written) that set it
	visits    int
	stoppedAt *yaml.Node // the node where the walk passed maxYAMLEntries
}

// visit counts one key/value pair; false once over the budget.
func (w *yamlWalker) visit(key *yaml.Node) bool {
	if w.visits++; w.visits > maxYAMLEntries {
		if w.stoppedAt == nil {
			w.stoppedAt = key
		}
		return false
	}
	return true
}

func (w *yamlWalker) src(n *yaml.Node) string { return fmt.Sprintf("%s:%d", w.path, n.Line) }

func (w *yamlWalker) fail(n *yaml.Node, key, msg string) {
	w.layer.problems = append(w.layer.problems, FieldError{Key: key, Source: w.src(n), Msg: msg})
}

func (w *yamlWalker) note(n *yaml.Node, key, msg string) {
	w.layer.notes = append(w.layer.notes, Note{Key: key, Source: w.src(n), Msg: msg})
}

// set records the value of canonical, written as key at kn. An alias and
// its key both in the file are an error naming both.
func (w *yamlWalker) set(canonical, key string, x any, kn *yaml.Node) {
	if prev, ok := w.setBy[canonical]; ok && prev != key {
		w.fail(kn, key, fmt.Sprintf("%s (%s) and %s both set %s; keep one of them", prev, w.layer.sources[canonical], key, canonical))
		return
	}
	w.setBy[canonical] = key
	if y, note, ok := aliasValue(canonical, x); ok {
		x = y
		w.note(kn, key, note)
	}
	w.layer.values[canonical] = x
	w.layer.sources[canonical] = w.src(kn)
}

// mapping walks a mapping node whose keys are under prefix.
func (w *yamlWalker) mapping(n *yaml.Node, prefix string) {
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, vn := n.Content[i], resolveAlias(n.Content[i+1])
		if !w.visit(kn) {
			return
		}
		name := kn.Value
		if name == "<<" && kn.Tag == "!!merge" { // YAML merge key: <<: *anchor
			merged := []*yaml.Node{vn}
			if vn.Kind == yaml.SequenceNode {
				merged = vn.Content
			}
			for _, m := range merged {
				if m = resolveAlias(m); m.Kind == yaml.MappingNode {
					w.mapping(m, prefix)
				}
			}
			continue
		}
		key := name
		if prefix != "" {
			key = prefix + "." + name
		}
		if seen[name] {
			w.fail(kn, key, "duplicate key; keep one of them")
			continue
		}
		seen[name] = true
		if schema.sections[key] {
			switch {
			case vn.Kind == yaml.MappingNode:
				w.mapping(vn, key)
			case vn.Kind == yaml.ScalarNode && vn.Tag == "!!null":
				// "section:" with nothing under it: nothing to set.
			default:
				w.fail(vn, key, fmt.Sprintf("is a section; expected a mapping of its keys (e.g. %s), not %s", sectionExample(key), nodeDesc(vn)))
			}
			continue
		}
		if fk, ok := foreign.byKey[key]; ok {
			w.foreign(kn, vn, key, fk)
			continue
		}
		// PyTorch H-JEPA writes logging.tensorboard as a section
		// ({enabled: true}); I-JEPA has sections of its own (mask, meta).
		if foreign.prefixes[key] && vn.Kind == yaml.MappingNode {
			w.mapping(vn, key)
			continue
		}
		l, ok := schema.byKey[key]
		if !ok {
			w.unknown(kn, vn, key)
			continue
		}
		x, err := nodeValue(l.kind, vn)
		if err != nil {
			w.fail(vn, key, err.Error())
			continue
		}
		w.set(key, key, x, kn)
	}
}

// foreign handles a key of another project's configuration (fk).
func (w *yamlWalker) foreign(kn, vn *yaml.Node, key string, fk *foreignKey) {
	if fk.from == pytorchHJEPA {
		w.layer.dialect = true
	}
	switch {
	case fk.canonical != "":
		x, err := nodeValue(schema.byKey[fk.canonical].kind, vn)
		if err != nil {
			w.fail(vn, key, err.Error())
			return
		}
		w.set(fk.canonical, key, x, kn)
	case fk.section:
		if sw := switchNode(fk, vn); sw != nil && fk.refuse != "" && nodeOn(sw) {
			w.fail(sw, key+"."+fk.switchKey, fmt.Sprintf("%s is refused: %s", sw.Value, fk.refuse))
			return
		}
		w.note(kn, key, fk.note)
	case fk.refuse != "" && nodeOn(vn):
		w.fail(vn, key, fmt.Sprintf("%s is refused: %s", nodeText(vn), fk.refuse))
	default:
		w.note(kn, key, fk.note)
	}
}

// switchNode is the value of a foreign section's switch key, or nil.
func switchNode(fk *foreignKey, vn *yaml.Node) *yaml.Node {
	if fk.switchKey == "" || vn.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(vn.Content); i += 2 {
		if vn.Content[i].Value == fk.switchKey {
			return resolveAlias(vn.Content[i+1])
		}
	}
	return nil
}

// nodeOn reports whether a value turns a feature on (see valueOn); a
// non-empty list or mapping does.
func nodeOn(n *yaml.Node) bool {
	switch n.Kind {
	case yaml.ScalarNode:
		return n.Tag != "!!null" && valueOn(n.Value)
	case yaml.SequenceNode, yaml.MappingNode:
		return len(n.Content) > 0
	}
	return true
}

// nodeText is a value for a message: a scalar as written, else its kind.
func nodeText(n *yaml.Node) string {
	if n.Kind == yaml.ScalarNode {
		return n.Value
	}
	return nodeDesc(n)
}

// unknown reports an unknown key; under an unknown section (modle:) it
// reports each key inside, so that each gets its own suggestion
// (modle.depth -> model.depth).
func (w *yamlWalker) unknown(kn, vn *yaml.Node, key string) {
	if !w.visit(kn) {
		return
	}
	if vn.Kind != yaml.MappingNode || len(vn.Content) == 0 {
		w.fail(kn, key, unknownKeyMsg(key))
		return
	}
	for i := 0; i+1 < len(vn.Content); i += 2 {
		w.unknown(vn.Content[i], resolveAlias(vn.Content[i+1]), key+"."+vn.Content[i].Value)
	}
}

func resolveAlias(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func nodeDesc(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return fmt.Sprintf("%q", n.Value)
}

// nodeValue converts a YAML value node to the Go type of kind.
func nodeValue(kind valueKind, n *yaml.Node) (any, error) {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return zeroValue(kind), nil
		}
		if kind == kindString {
			return n.Value, nil
		}
		return parseValue(kind, n.Value)
	case yaml.SequenceNode:
		if kind != kindFloatList {
			return nil, fmt.Errorf("cannot use a list: expected %s", kind.describe())
		}
		out := make([]float64, 0, len(n.Content))
		for i, e := range n.Content {
			e = resolveAlias(e)
			if e.Kind != yaml.ScalarNode {
				return nil, fmt.Errorf("element %d is %s: expected %s", i, nodeDesc(e), kind.describe())
			}
			f, err := parseFloat(e.Value)
			if err != nil {
				return nil, fmt.Errorf("element %d: cannot use %q: expected %s", i, e.Value, kind.describe())
			}
			out = append(out, f)
		}
		return out, nil
	}
	return nil, fmt.Errorf("cannot use %s: expected %s", nodeDesc(n), kind.describe())
}

func zeroValue(kind valueKind) any {
	switch kind {
	case kindInt:
		return 0
	case kindFloat:
		return 0.0
	case kindBool:
		return false
	case kindString:
		return ""
	}
	return []float64{}
}

// parseValue parses a string (from --set, the environment or a YAML scalar)
// as kind. Its error names the value and the expected type; the caller adds
// the key and the source.
func parseValue(kind valueKind, s string) (any, error) {
	bad := func() error { return fmt.Errorf("cannot use %q: expected %s", s, kind.describe()) }
	switch kind {
	case kindInt:
		if i, err := strconv.ParseInt(s, 10, 64); err == nil {
			return int(i), nil
		}
		// 1e4 and 64.0 are integers too; 64.5 is not.
		f, err := parseFloat(s)
		if err != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
			return nil, bad()
		}
		return int(f), nil
	case kindFloat:
		f, err := parseFloat(s)
		if err != nil {
			return nil, bad()
		}
		return f, nil
	case kindBool:
		switch strings.ToLower(s) {
		case "true", "1", "yes", "on", "t", "y":
			return true, nil
		case "false", "0", "no", "off", "f", "n":
			return false, nil
		}
		return nil, bad()
	case kindString:
		// YAML() would write such a string as !!binary (base64), which
		// reads back as its base64 text; no path or name needs it.
		if !utf8.ValidString(s) {
			return nil, fmt.Errorf("cannot use %q: not valid UTF-8", s)
		}
		return s, nil
	case kindFloatList:
		body := strings.TrimSpace(s)
		if strings.HasPrefix(body, "[") != strings.HasSuffix(body, "]") {
			return nil, bad()
		}
		body = strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(body, "["), "]"))
		out := []float64{}
		if body == "" {
			return out, nil
		}
		for _, part := range strings.Split(body, ",") {
			f, err := parseFloat(strings.TrimSpace(part))
			if err != nil {
				return nil, bad()
			}
			out = append(out, f)
		}
		return out, nil
	}
	return nil, bad()
}

// parseFloat accepts finite decimal numbers only (no NaN, Inf or hex).
func parseFloat(s string) (float64, error) {
	s = strings.TrimSpace(s)
	if s == "" || strings.ContainsAny(s, "xXpP_") {
		return 0, errors.New("not a number")
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, errors.New("not a finite number")
	}
	return f, nil
}

// nest turns {"a.b": x} into {"a": {"b": x}} for viper's config layer.
func nest(flat map[string]any) map[string]any {
	out := map[string]any{}
	for k, x := range flat {
		parts := strings.Split(k, ".")
		m := out
		for _, p := range parts[:len(parts)-1] {
			sub, ok := m[p].(map[string]any)
			if !ok {
				sub = map[string]any{}
				m[p] = sub
			}
			m = sub
		}
		m[parts[len(parts)-1]] = x
	}
	return out
}
