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
	// EnvName). Values are parsed as for Sets. Any other HJEPA_* variable is
	// an error unless IgnoreEnv names it.
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
var ProgramEnv = []string{"HJEPA_JOB_TOKEN", "HJEPA_LIBCUDA", "HJEPA_CUBLAS", "HJEPA_PYTHON", "HJEPA_EMU_MEMORY_BYTES"}

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
// It does not validate: call Validate on the result.
//
// Errors: a missing or unreadable file, or a YAML syntax error, is returned
// at once and names the file (and the line, when the parser gives one).
// Unknown keys and values of the wrong type from every source are collected
// and returned together as a *LoadError; an unknown key's message names the
// closest valid key.
func Load(opts LoadOptions) (Config, error) {
	v := viper.New()
	for k, x := range Default().flatten() {
		v.SetDefault(k, x)
	}
	var problems []FieldError

	if opts.ConfigFile != "" || opts.ConfigYAML != nil {
		fileValues, fileProblems, err := readFile(opts.ConfigFile, opts.ConfigYAML)
		if err != nil {
			return Config{}, err
		}
		problems = append(problems, fileProblems...)
		if err := v.MergeConfigMap(nest(fileValues)); err != nil {
			return Config{}, fmt.Errorf("config file %s: %w", opts.ConfigFile, err)
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
		for _, kv := range environ {
			name, val, _ := strings.Cut(kv, "=")
			if !strings.HasPrefix(name, EnvPrefix) || ignore[name] {
				continue
			}
			src := "environment variable " + name
			key, ok := schema.byEnv[name]
			if !ok {
				msg := "not a configuration variable"
				if k, ok := closestEnv(name); ok {
					msg += fmt.Sprintf("; did you mean %s (key %q)?", EnvName(k), k)
				} else {
					msg += "; run 'hjepa config keys' and use HJEPA_ + the key in upper case with dots as underscores"
				}
				problems = append(problems, FieldError{Key: name, Source: "environment", Msg: msg})
				continue
			}
			x, err := parseValue(schema.byKey[key].kind, val)
			if err != nil {
				problems = append(problems, FieldError{Key: key, Source: src, Msg: err.Error()})
				continue
			}
			v.Set(key, x)
		}
	}

	for _, s := range opts.Sets {
		key, val, ok := strings.Cut(s, "=")
		key = strings.TrimSpace(key)
		if !ok || key == "" {
			problems = append(problems, FieldError{Key: key, Source: "--set",
				Msg: fmt.Sprintf("%q is not key=value; write e.g. --set training.lr=1e-3", s)})
			continue
		}
		l, known := schema.byKey[key]
		if !known {
			problems = append(problems, FieldError{Key: key, Source: "--set", Msg: unknownKeyMsg(key)})
			continue
		}
		x, err := parseValue(l.kind, strings.TrimSpace(val))
		if err != nil {
			problems = append(problems, FieldError{Key: key, Source: "--set", Msg: err.Error()})
			continue
		}
		v.Set(key, x)
	}

	if len(problems) > 0 {
		return Config{}, &LoadError{Errors: problems}
	}
	var c Config
	if err := v.Unmarshal(&c); err != nil {
		// Every value was parsed to its field's type above, so this is a
		// bug in the loader, not in the user's input.
		return Config{}, fmt.Errorf("config: decode merged settings: %w", err)
	}
	return c, nil
}

// readFile parses a YAML config file into key -> typed value, reporting
// unknown keys and wrong types with their line. The error is non-nil only
// when the file cannot be read or parsed at all.
func readFile(path string, data []byte) (map[string]any, []FieldError, error) {
	if data != nil {
		return parseYAML(path, data)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		switch {
		case errors.Is(err, os.ErrNotExist):
			return nil, nil, fmt.Errorf("config file %s: no such file; check the --config path (presets are in configs/)", path)
		case errors.Is(err, os.ErrPermission):
			return nil, nil, fmt.Errorf("config file %s: permission denied; make it readable (chmod +r) or copy it", path)
		}
		return nil, nil, fmt.Errorf("config file %s: %w", path, err)
	}
	return parseYAML(path, data)
}

func parseYAML(path string, data []byte) (map[string]any, []FieldError, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) { // empty file: defaults only
			return map[string]any{}, nil, nil
		}
		return nil, nil, fmt.Errorf("config file %s: %v; fix the YAML syntax there", path, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, nil, fmt.Errorf("config file %s: %v; fix the YAML syntax there", path, err)
		}
		return nil, nil, fmt.Errorf("config file %s:%d: a second YAML document (---); put the whole configuration in one document", path, extra.Line)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return map[string]any{}, nil, nil
		}
		root = root.Content[0]
	}
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return map[string]any{}, nil, nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, nil, fmt.Errorf("config file %s:%d: the top level must be a mapping of sections (model:, data:, training:, ...)", path, root.Line)
	}
	w := &yamlWalker{path: path, values: map[string]any{}}
	w.mapping(root, "")
	if w.stoppedAt != nil {
		return nil, nil, fmt.Errorf("config file %s:%d: the configuration expands to more than %d keys (aliases or merge keys nested in each other?); write the keys out", path, w.stoppedAt.Line, maxYAMLEntries)
	}
	return w.values, w.problems, nil
}

// maxYAMLEntries bounds the key/value pairs the walker visits. Aliases and
// merge keys are not expanded by the parser but by the walk, so a few
// hundred bytes of anchors referring to anchors would otherwise make it
// visit (and report) 2^N keys; a real configuration has a few hundred.
const maxYAMLEntries = 10_000

type yamlWalker struct {
	path      string
	values    map[string]any
	problems  []FieldError
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

func (w *yamlWalker) fail(n *yaml.Node, key, msg string) {
	w.problems = append(w.problems, FieldError{Key: key, Source: fmt.Sprintf("%s:%d", w.path, n.Line), Msg: msg})
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
		w.values[key] = x
	}
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
