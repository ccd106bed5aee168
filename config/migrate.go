package config

import (
	"bytes"
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Migrate rewrites a configuration file that uses other projects' key names
// (see foreignKeys) in this schema's names, keeping its comments: a renamed
// key takes our name and section (data.data_path -> data.path,
// logging.tensorboard: {enabled: true} -> logging.tensorboard: true), a value
// with another name takes ours (dataset imagenet -> imagefolder), a key with
// no counterpart is dropped and a comment says why, and the notes Load would
// give become comments. A file that Load refuses, Migrate refuses with the
// same errors. The result loads, without notes, to the Config the file
// loads to. data nil reads path.
func Migrate(path string, data []byte) ([]byte, error) {
	data, err := readBytes(path, data)
	if err != nil {
		return nil, err
	}
	if _, _, err := LoadWithNotes(LoadOptions{ConfigFile: path, ConfigYAML: data}); err != nil {
		return nil, err
	}
	layer, err := readFile(path, data)
	if err != nil {
		return nil, err
	}
	doc, err := decodeDoc(path, data)
	if err != nil {
		return nil, err
	}
	root, err := decodeYAML(path, data)
	if err != nil {
		return nil, err
	}
	if root == nil { // empty: nothing to rename
		return data, nil
	}
	m := &migrator{
		layer:    layer,
		sections: map[string]*yaml.Node{},
		maps:     map[string]*yaml.Node{"": {Kind: yaml.MappingNode, Tag: "!!map"}},
		pending:  map[string][]string{},
	}
	m.walk(root, "", "")
	m.leave("")
	out := &yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{m.maps[""]}}
	out.HeadComment = joinComments(wrapComment(fmt.Sprintf(
		"Migrated to hjepa-go's configuration schema by 'hjepa config migrate %s': renamed keys carry a \"was\" comment, dropped keys a \"dropped\" comment saying why.", path)),
		doc.HeadComment)
	out.FootComment = joinComments(append(m.pending[""], doc.FootComment)...)
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(out); err != nil {
		return nil, fmt.Errorf("config: encode migrated YAML: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("config: encode migrated YAML: %w", err)
	}
	return buf.Bytes(), nil
}

// migrator builds the migrated file: one output mapping per section of
// ours, created when its first key is written, in the order the file
// first reaches each.
type migrator struct {
	layer *fileLayer
	// sections are the file's key nodes of our sections (for their comments).
	sections map[string]*yaml.Node
	maps     map[string]*yaml.Node // section ("" top level) -> output mapping
	// pending are comments of dropped keys, per section, waiting for the
	// next key written there.
	pending map[string][]string
}

// walk migrates the mapping n whose keys are under prefix. carry is the
// comment of a foreign section (mask:, tensorboard:) whose keys move
// elsewhere; the first key written takes it.
func (m *migrator) walk(n *yaml.Node, prefix, carry string) {
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, vn := n.Content[i], resolveAlias(n.Content[i+1])
		if kn.Value == "<<" && kn.Tag == "!!merge" {
			merged := []*yaml.Node{vn}
			if vn.Kind == yaml.SequenceNode {
				merged = vn.Content
			}
			for _, mn := range merged {
				if mn = resolveAlias(mn); mn.Kind == yaml.MappingNode {
					m.walk(mn, prefix, "")
				}
			}
			continue
		}
		key := kn.Value
		if prefix != "" {
			key = prefix + "." + key
		}
		switch fk, isForeign := foreign.byKey[key]; {
		case schema.sections[key]:
			if _, ok := m.sections[key]; !ok {
				m.sections[key] = kn
			}
			if vn.Kind == yaml.MappingNode {
				m.walk(vn, key, "")
				m.leave(key)
			}
		case isForeign && fk.canonical != "":
			m.put(fk.canonical, key, kn, vn, &carry)
		case isForeign:
			carry = ""
			m.pending[deepestSection(parentKey(key))] = append(m.pending[deepestSection(parentKey(key))], dropComment(key, fk, vn))
		case foreign.prefixes[key] && vn.Kind == yaml.MappingNode:
			m.walk(vn, key, joinComments(carry, kn.HeadComment))
			carry = ""
		default: // a key of ours (Load accepted the file)
			m.put(key, key, kn, vn, &carry)
		}
	}
}

// put writes canonical, written as key (kn: vn) in the file.
func (m *migrator) put(canonical, key string, kn, vn *yaml.Node, carry *string) {
	val := copyNode(vn)
	nk := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: canonical[strings.LastIndex(canonical, ".")+1:],
		HeadComment: joinComments(*carry, kn.HeadComment), LineComment: kn.LineComment, FootComment: kn.FootComment}
	*carry = ""
	if key != canonical {
		addLineComment(nk, val, "was "+key)
	}
	var notes []string
	if val.Kind == yaml.ScalarNode && val.Tag != "!!null" {
		if a, ok := valueAliases[canonical][strings.ToLower(val.Value)]; ok {
			val.Value, val.Tag = a.to, "!!str"
			notes = append(notes, a.note)
		}
	}
	var extra []*yaml.Node // keys the rules of pytorchDialect add
	if m.layer.dialect {
		switch canonical {
		case "loss.normalize_embeddings":
			if nodeOn(val) {
				notes = append(notes, "normalize_embeddings "+dialectNormalizeNote)
			}
		case "training.weight_decay":
			if _, ok := m.layer.sources["training.weight_decay_end"]; !ok {
				end := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: "weight_decay_end",
					HeadComment: wrapComment("note: " + dialectWeightDecayNote)}
				extra = append(extra, end, copyNode(vn))
			}
		}
	}
	for _, n := range notes {
		nk.HeadComment = joinComments(nk.HeadComment, wrapComment("note: "+n))
	}
	sec := parentKey(canonical)
	m.emit(sec, nk, val)
	for i := 0; i+1 < len(extra); i += 2 {
		m.emit(sec, extra[i], extra[i+1])
	}
}

// emit appends kn: vn to section's output mapping, after the comments of
// the keys dropped before it.
func (m *migrator) emit(section string, kn, vn *yaml.Node) {
	om := m.mapping(section)
	if p := m.pending[section]; len(p) > 0 {
		kn.HeadComment = joinComments(append(p, kn.HeadComment)...)
		delete(m.pending, section)
	}
	om.Content = append(om.Content, kn, vn)
}

// mapping returns section's output mapping, creating it (and its parents)
// with the comments its key has in the file.
func (m *migrator) mapping(section string) *yaml.Node {
	if om, ok := m.maps[section]; ok {
		return om
	}
	parent := parentKey(section)
	kn := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: section[strings.LastIndex(section, ".")+1:]}
	if src, ok := m.sections[section]; ok {
		kn.HeadComment, kn.LineComment, kn.FootComment = src.HeadComment, src.LineComment, src.FootComment
	}
	om := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	m.emit(parent, kn, om)
	m.maps[section] = om
	return om
}

// leave puts the comments of keys dropped at the end of section after its
// last key, or, when nothing of it was written, hands them to its parent.
func (m *migrator) leave(section string) {
	p := m.pending[section]
	if len(p) == 0 {
		return
	}
	if om, ok := m.maps[section]; ok && len(om.Content) >= 2 {
		last := om.Content[len(om.Content)-2]
		last.FootComment = joinComments(append([]string{last.FootComment}, p...)...)
		delete(m.pending, section)
		return
	}
	if section == "" { // nothing written at all: the document's foot takes them
		return
	}
	delete(m.pending, section)
	parent := parentKey(section)
	m.pending[parent] = append(m.pending[parent], p...)
}

// dropComment says why key (value vn) was dropped.
func dropComment(key string, fk *foreignKey, vn *yaml.Node) string {
	return wrapComment(fmt.Sprintf("dropped %s: %s (%s): %s", key, flowText(vn), fk.from, strings.TrimPrefix(fk.note, "ignored: ")))
}

// flowText renders a value on one line ({a: 1, b: [x, y]}), cut at
// flowTextMax bytes: a dropped section is not walked by Load, so its
// aliases may expand to any size.
func flowText(n *yaml.Node) string {
	var b strings.Builder
	if !writeFlow(&b, n) {
		return b.String()[:flowTextMax] + "..."
	}
	return b.String()
}

const flowTextMax = 200

// writeFlow appends n to b; false once b is past flowTextMax.
func writeFlow(b *strings.Builder, n *yaml.Node) bool {
	if b.Len() > flowTextMax {
		return false
	}
	n = resolveAlias(n)
	switch n.Kind {
	case yaml.SequenceNode, yaml.MappingNode:
		open, close, step := "[", "]", 1
		if n.Kind == yaml.MappingNode {
			open, close, step = "{", "}", 2
		}
		b.WriteString(open)
		for i := 0; i+step-1 < len(n.Content); i += step {
			if i > 0 {
				b.WriteString(", ")
			}
			if step == 2 {
				b.WriteString(n.Content[i].Value + ": ")
			}
			if !writeFlow(b, n.Content[i+step-1]) {
				return false
			}
		}
		b.WriteString(close)
	default:
		b.WriteString(n.Value)
	}
	return b.Len() <= flowTextMax
}

// addLineComment adds text to the line comment of a scalar or flow value,
// or else of its key.
func addLineComment(kn, vn *yaml.Node, text string) {
	n := kn
	if vn.Kind == yaml.ScalarNode || vn.Style&yaml.FlowStyle != 0 {
		n = vn
	}
	if n.LineComment == "" {
		n.LineComment = "# " + text
		return
	}
	n.LineComment += "; " + text
}

// copyNode is a deep copy of n with aliases resolved and anchors dropped,
// so that the output never shares nodes with the file.
func copyNode(n *yaml.Node) *yaml.Node {
	n = resolveAlias(n)
	c := *n
	c.Anchor = ""
	c.Content = nil
	for _, ch := range n.Content {
		c.Content = append(c.Content, copyNode(ch))
	}
	return &c
}

func parentKey(key string) string {
	if i := strings.LastIndex(key, "."); i >= 0 {
		return key[:i]
	}
	return ""
}

// wrapComment makes text YAML comment lines of at most about 78 columns.
func wrapComment(text string) string {
	var lines []string
	line := "#"
	for _, w := range strings.Fields(text) {
		if len(line) > 2 && len(line)+1+len(w) > 78 {
			lines = append(lines, line)
			line = "#  "
		}
		line += " " + w
	}
	return strings.Join(append(lines, line), "\n")
}

// joinComments joins comment blocks, skipping empty ones.
func joinComments(blocks ...string) string {
	var out []string
	for _, b := range blocks {
		if b != "" {
			out = append(out, b)
		}
	}
	return strings.Join(out, "\n")
}
