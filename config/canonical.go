package config

import (
	"encoding/json"
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

// FromCanonicalJSON rebuilds a configuration from its CanonicalJSON (a
// checkpoint's state.json keeps one), naming source in errors. Keys the
// JSON lacks take their defaults; a key this version does not know is an
// error. It does not validate.
func FromCanonicalJSON(b []byte, source string) (Config, error) {
	var flat map[string]any
	if err := json.Unmarshal(b, &flat); err != nil {
		return Config{}, fmt.Errorf("%s: the configuration is not a JSON object of key paths: %w", source, err)
	}
	y, err := NestedYAML(flat)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", source, err)
	}
	return Load(LoadOptions{ConfigFile: source, ConfigYAML: y})
}

// Flat is the configuration as key path -> value (CanonicalJSON's object).
func (c Config) Flat() map[string]any {
	var flat map[string]any
	if err := json.Unmarshal(c.CanonicalJSON(), &flat); err != nil {
		panic(fmt.Sprintf("config: flat: %v", err)) // our own JSON: cannot happen
	}
	return flat
}

// NestedYAML writes key path -> value as a nested YAML document
// (model.predictor.depth: 2 -> model: {predictor: {depth: 2}}).
func NestedYAML(flat map[string]any) ([]byte, error) {
	root := map[string]any{}
	for k, v := range flat {
		parts := strings.Split(k, ".")
		m := root
		for _, p := range parts[:len(parts)-1] {
			sub, ok := m[p].(map[string]any)
			if !ok {
				if _, taken := m[p]; taken {
					return nil, fmt.Errorf("key %q: %q is both a value and a section", k, p)
				}
				sub = map[string]any{}
				m[p] = sub
			}
			m = sub
		}
		if _, taken := m[parts[len(parts)-1]]; taken {
			return nil, fmt.Errorf("key %q: a section and a value", k)
		}
		m[parts[len(parts)-1]] = v
	}
	return yaml.Marshal(root)
}
