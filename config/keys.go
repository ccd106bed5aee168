package config

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
)

// valueKind is the type a key's value must have, as the loader parses it.
type valueKind int

const (
	kindInt valueKind = iota
	kindFloat
	kindBool
	kindString
	kindFloatList
)

// describe names the kind for error messages ("expected a number").
func (k valueKind) describe() string {
	switch k {
	case kindInt:
		return "an integer"
	case kindFloat:
		return "a number"
	case kindBool:
		return "a boolean (true or false)"
	case kindString:
		return "a string"
	case kindFloatList:
		return "a list of numbers, e.g. [0.15,0.2] or 0.15,0.2"
	}
	return "?"
}

// leaf is one settable key of the schema.
type leaf struct {
	key   string // dotted path, e.g. "model.predictor.embed_dim"
	kind  valueKind
	index []int // reflect field index path from Config
}

// schemaIndex is the schema flattened once, at package init.
type schemaIndex struct {
	leaves   []leaf           // sorted by key
	byKey    map[string]*leaf // key -> leaf
	sections map[string]bool  // "model", "model.predictor", ...
	byEnv    map[string]string
}

var schema = buildSchema()

func buildSchema() *schemaIndex {
	s := &schemaIndex{
		byKey:    map[string]*leaf{},
		sections: map[string]bool{},
		byEnv:    map[string]string{},
	}
	walkSchema(reflect.TypeFor[Config](), "", nil, s)
	sort.Slice(s.leaves, func(i, j int) bool { return s.leaves[i].key < s.leaves[j].key })
	for i := range s.leaves {
		l := &s.leaves[i]
		s.byKey[l.key] = l
		env := EnvName(l.key)
		if other, dup := s.byEnv[env]; dup {
			// A schema change made two keys share an environment name;
			// TestEnvNamesUnique catches it, this stops a silent mix-up.
			panic(fmt.Sprintf("config: keys %q and %q both map to %s", other, l.key, env))
		}
		s.byEnv[env] = l.key
	}
	return s
}

func walkSchema(t reflect.Type, prefix string, index []int, s *schemaIndex) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("mapstructure"), ",")[0]
		if tag == "" || tag == "-" {
			continue
		}
		key := tag
		if prefix != "" {
			key = prefix + "." + tag
		}
		idx := append(append([]int(nil), index...), i)
		if f.Type.Kind() == reflect.Struct {
			s.sections[key] = true
			walkSchema(f.Type, key, idx, s)
			continue
		}
		var k valueKind
		switch f.Type.Kind() {
		case reflect.Int, reflect.Int64, reflect.Int32:
			k = kindInt
		case reflect.Float64:
			k = kindFloat
		case reflect.Bool:
			k = kindBool
		case reflect.String:
			k = kindString
		case reflect.Slice:
			if f.Type.Elem().Kind() != reflect.Float64 {
				panic(fmt.Sprintf("config: field %s: unsupported slice type %s", key, f.Type))
			}
			k = kindFloatList
		default:
			panic(fmt.Sprintf("config: field %s: unsupported type %s", key, f.Type))
		}
		s.leaves = append(s.leaves, leaf{key: key, kind: k, index: idx})
	}
}

// Keys lists every valid key path, sorted (for shell completion, `hjepa
// config keys` and the closest-key suggestion).
func Keys() []string {
	out := make([]string, len(schema.leaves))
	for i, l := range schema.leaves {
		out[i] = l.key
	}
	return out
}

// Keys lists every valid key path, sorted; the same as the package's Keys.
func (c Config) Keys() []string { return Keys() }

// Get returns the value at a key path (int, int64, float64, bool, string or
// []float64) and whether the key exists.
func (c Config) Get(key string) (any, bool) {
	l, ok := schema.byKey[key]
	if !ok {
		return nil, false
	}
	return reflect.ValueOf(c).FieldByIndex(l.index).Interface(), true
}

// flatten maps every key to its value in c. Nil lists become empty lists so
// that a list left out and a list written as [] look the same.
func (c Config) flatten() map[string]any {
	v := reflect.ValueOf(c)
	out := make(map[string]any, len(schema.leaves))
	for _, l := range schema.leaves {
		x := v.FieldByIndex(l.index).Interface()
		if fl, ok := x.([]float64); ok && fl == nil {
			x = []float64{}
		}
		out[l.key] = x
	}
	return out
}

// EnvName is the environment variable that sets a key: HJEPA_ followed by
// the key upper-cased with dots replaced by underscores, e.g. training.lr ->
// HJEPA_TRAINING_LR and model.predictor.embed_dim ->
// HJEPA_MODEL_PREDICTOR_EMBED_DIM. The schema guarantees that no two keys
// share a name.
func EnvName(key string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// EnvPrefix starts every configuration environment variable.
const EnvPrefix = "HJEPA_"

// closestKey suggests the valid key a user most likely meant by an unknown
// one: a hint for another project's key first (foreignHints), then, when
// the key's section exists, a key with the same last segment in another
// section (training.batch_size -> data.batch_size), then the nearest key by
// edit distance if it is near enough to be a typo. When the section itself
// is unknown (logging.wandb.enabled, modle.depth), the section is the
// problem, so only a typo of the whole path is suggested, and only among
// the keys of the deepest section that exists (never distributed.enabled
// for logging.wandb.enabled).
func closestKey(unknown string) (string, bool) {
	lower := strings.ToLower(unknown)
	if k, ok := foreignHints[lower]; ok {
		return k, true
	}
	if _, ok := schema.byKey[lower]; ok { // a case slip: Training.LR
		return lower, true
	}
	last := lower[strings.LastIndex(lower, ".")+1:]
	parent := ""
	if i := strings.LastIndex(lower, "."); i >= 0 {
		parent = lower[:i]
	}
	best, bestD := "", -1
	scope := "" // suggest only keys under scope ("": any key)
	if parent == "" || schema.sections[parent] {
		for _, l := range schema.leaves {
			if l.key[strings.LastIndex(l.key, ".")+1:] != last {
				continue
			}
			if d := editDistance(lower, l.key); bestD < 0 || d < bestD {
				best, bestD = l.key, d
			}
		}
		if bestD >= 0 {
			return best, true
		}
	} else {
		scope = deepestSection(parent)
	}
	for _, l := range schema.leaves {
		if scope != "" && !strings.HasPrefix(l.key, scope+".") {
			continue
		}
		if d := editDistance(lower, l.key); bestD < 0 || d < bestD {
			best, bestD = l.key, d
		}
	}
	// Near enough to be a typo: within a third of the whole path and half of
	// the last segment (so training.foo suggests nothing, not training.eps).
	if bestD >= 0 && bestD <= max(1, min(len(lower)/3, (len(last)+1)/2)) {
		return best, true
	}
	return "", false
}

// deepestSection is the longest prefix of key (itself included) that is a
// section of the schema, or "".
func deepestSection(key string) string {
	for sec := key; ; {
		if schema.sections[sec] {
			return sec
		}
		i := strings.LastIndex(sec, ".")
		if i < 0 {
			return ""
		}
		sec = sec[:i]
	}
}

// closestEnv is closestKey for an unknown HJEPA_* variable name.
func closestEnv(name string) (string, bool) {
	best, bestD := "", -1
	for env, key := range schema.byEnv {
		if d := editDistance(name, env); bestD < 0 || d < bestD || (d == bestD && key < best) {
			best, bestD = key, d
		}
	}
	if bestD >= 0 && bestD <= max(2, len(name)/3) {
		return best, true
	}
	return "", false
}

// unknownKeyMsg is the message for a key that is not in the schema.
func unknownKeyMsg(key string) string {
	if schema.sections[key] {
		return fmt.Sprintf("%q is a section, not a key; set one of its keys instead, e.g. %q", key, sectionExample(key))
	}
	msg := "unknown key"
	if k, ok := closestKey(key); ok {
		return msg + fmt.Sprintf("; did you mean %q?", k)
	}
	// Not near any key: list the keys of the deepest valid section, if any,
	// saying which part of the path is not a section.
	i := strings.LastIndex(key, ".")
	if i < 0 {
		return msg + "; run 'hjepa config keys' for the valid keys"
	}
	sec := deepestSection(key[:i])
	if sec == "" {
		return msg + "; run 'hjepa config keys' for the valid keys"
	}
	if sec != key[:i] {
		sub, _, _ := strings.Cut(key[len(sec)+1:], ".")
		msg += fmt.Sprintf("; %s has no section %q", sec, sub)
	}
	return msg + fmt.Sprintf("; valid keys in %s: %s", sec, strings.Join(sectionKeys(sec), ", "))
}

// sectionKeys lists the keys directly or indirectly under a section.
func sectionKeys(sec string) []string {
	var out []string
	for _, l := range schema.leaves {
		if strings.HasPrefix(l.key, sec+".") {
			out = append(out, l.key)
		}
	}
	return out
}

func sectionExample(sec string) string {
	if ks := sectionKeys(sec); len(ks) > 0 {
		return ks[0]
	}
	return sec
}

// editDistance is the Levenshtein distance between a and b (bytes).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
