package data

import (
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// maxShards bounds what one data.path may expand to, so that a typo such
// as {0..999999999} fails at once instead of allocating a billion names.
const maxShards = 1 << 20

// ExpandShards returns the shard files a WebDataset data.path names, in
// order. The path is a comma-separated list of items; each item is a path
// with brace groups, {A..B} (decimal range; zero-padded to the longer
// bound when either has a leading zero, as Python's braceexpand) or {x,y}
// (alternatives), expanded left to right; an item that then holds *, ? or
// [ is a glob, matched in lexical order and required to match something.
// Nested braces, backward or non-numeric ranges and a name listed twice are
// errors. Existence is checked by the caller.
func ExpandShards(pattern string) ([]string, error) {
	items, err := splitTopLevel(pattern)
	if err != nil {
		return nil, err
	}
	var out []string
	seen := map[string]bool{}
	for _, it := range items {
		names, err := expandBraces(it, maxShards-len(out))
		if err != nil {
			return nil, fmt.Errorf("shard pattern %q: %w", pattern, err)
		}
		for _, n := range names {
			if strings.ContainsAny(n, "*?[") {
				m, err := filepath.Glob(n)
				if err != nil {
					return nil, fmt.Errorf("shard pattern %q: glob %q: %w", pattern, n, err)
				}
				if len(m) == 0 {
					return nil, fmt.Errorf("shard pattern %q: no file matches %q", pattern, n)
				}
				sort.Strings(m)
				out = append(out, m...)
			} else {
				out = append(out, n)
			}
		}
		if len(out) > maxShards {
			return nil, fmt.Errorf("shard pattern %q: more than %d shards", pattern, maxShards)
		}
	}
	for _, n := range out {
		if seen[n] {
			return nil, fmt.Errorf("shard pattern %q: %s is listed twice; each shard may appear once", pattern, n)
		}
		seen[n] = true
	}
	return out, nil
}

// splitTopLevel splits p at the commas outside braces. Brace balance is
// checked here so that every later step sees well-formed groups.
func splitTopLevel(p string) ([]string, error) {
	if strings.TrimSpace(p) == "" {
		return nil, fmt.Errorf("shard pattern is empty; set data.path to e.g. shards/train-{000000..000127}.tar")
	}
	var items []string
	depth, start := 0, 0
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case '{':
			if depth > 0 {
				return nil, fmt.Errorf("shard pattern %q: nested braces at byte %d are not supported", p, i)
			}
			depth++
		case '}':
			if depth == 0 {
				return nil, fmt.Errorf("shard pattern %q: '}' at byte %d has no matching '{'", p, i)
			}
			depth--
		case ',':
			if depth == 0 {
				items = append(items, p[start:i])
				start = i + 1
			}
		}
	}
	if depth != 0 {
		return nil, fmt.Errorf("shard pattern %q: '{' is never closed", p)
	}
	items = append(items, p[start:])
	for i, it := range items {
		items[i] = strings.TrimSpace(it)
		if items[i] == "" {
			return nil, fmt.Errorf("shard pattern %q: item %d of the comma-separated list is empty", p, i+1)
		}
	}
	return items, nil
}

// expandBraces expands the brace groups of s (balanced, not nested), giving
// at most limit names.
func expandBraces(s string, limit int) ([]string, error) {
	open := strings.IndexByte(s, '{')
	if open < 0 {
		return []string{s}, nil
	}
	end := open + strings.IndexByte(s[open:], '}')
	body := s[open+1 : end]
	var opts []string
	switch {
	case strings.Contains(body, ","):
		opts = strings.Split(body, ",")
	case strings.Contains(body, ".."):
		r, err := parseBraceRange(body)
		if err != nil {
			return nil, err
		}
		if r.count() > int64(limit) {
			return nil, fmt.Errorf("{%s} names %d shards, over the limit of %d", body, r.count(), maxShards)
		}
		for k := r.lo; k <= r.hi; k++ {
			opts = append(opts, r.format(k))
		}
	default:
		return nil, fmt.Errorf("{%s} is neither a range {000..127} nor a list {a,b}", body)
	}
	rest, err := expandBraces(s[end+1:], limit)
	if err != nil {
		return nil, err
	}
	if int64(len(opts))*int64(len(rest)) > int64(limit) {
		return nil, fmt.Errorf("expands to more than %d shards", maxShards)
	}
	out := make([]string, 0, len(opts)*len(rest))
	for _, o := range opts {
		for _, r := range rest {
			out = append(out, s[:open]+o+r)
		}
	}
	return out, nil
}

// braceRange is {lo..hi}, each number printed with width digits (0: as is).
type braceRange struct {
	lo, hi int64
	width  int
}

func (r braceRange) count() int64 { return r.hi - r.lo + 1 }

func (r braceRange) format(k int64) string { return fmt.Sprintf("%0*d", r.width, k) }

// parseBraceRange parses the body of {A..B}.
func parseBraceRange(body string) (braceRange, error) {
	a, b, _ := strings.Cut(body, "..")
	num := func(s string) (int64, error) {
		if s == "" || strings.Trim(s, "0123456789") != "" || len(s) > 18 {
			return 0, fmt.Errorf("{%s}: %q is not a decimal number; ranges are numeric, like {000000..000127}", body, s)
		}
		return strconv.ParseInt(s, 10, 64)
	}
	lo, err := num(a)
	if err != nil {
		return braceRange{}, err
	}
	hi, err := num(b)
	if err != nil {
		return braceRange{}, err
	}
	if hi < lo {
		return braceRange{}, fmt.Errorf("{%s} runs backwards; write {%s..%s}", body, b, a)
	}
	r := braceRange{lo: lo, hi: hi}
	if (len(a) > 1 && a[0] == '0') || (len(b) > 1 && b[0] == '0') {
		r.width = max(len(a), len(b))
	}
	return r, nil
}

// outputPattern is the OUTPATTERN of `hjepa data shard`: one {A..B} range
// (shard k is named prefix + A+k + suffix), or a plain name for one shard.
type outputPattern struct {
	prefix, suffix string
	r              braceRange
	ranged         bool
}

func parseOutputPattern(p string) (outputPattern, error) {
	hint := "give one numeric range, like out/train-{000000..009999}.tar"
	if strings.ContainsAny(p, ",*?[") {
		return outputPattern{}, fmt.Errorf("output pattern %q: lists and globs cannot name new shards; %s", p, hint)
	}
	open := strings.IndexByte(p, '{')
	if open < 0 {
		if strings.IndexByte(p, '}') >= 0 {
			return outputPattern{}, fmt.Errorf("output pattern %q: '}' has no matching '{'", p)
		}
		return outputPattern{prefix: p}, nil
	}
	end := strings.IndexByte(p[open:], '}')
	if end < 0 {
		return outputPattern{}, fmt.Errorf("output pattern %q: '{' is never closed", p)
	}
	end += open
	if strings.ContainsAny(p[end+1:], "{}") || strings.ContainsAny(p[open+1:end], "{") {
		return outputPattern{}, fmt.Errorf("output pattern %q: more than one brace group; %s", p, hint)
	}
	body := p[open+1 : end]
	if !strings.Contains(body, "..") {
		return outputPattern{}, fmt.Errorf("output pattern %q: {%s} is not a range; %s", p, body, hint)
	}
	r, err := parseBraceRange(body)
	if err != nil {
		return outputPattern{}, fmt.Errorf("output pattern %q: %w", p, err)
	}
	return outputPattern{prefix: p[:open], suffix: p[end+1:], r: r, ranged: true}, nil
}

// capacity is how many shards the pattern can name.
func (o outputPattern) capacity() int64 {
	if !o.ranged {
		return 1
	}
	return o.r.count()
}

// name is shard k's file.
func (o outputPattern) name(k int) string {
	if !o.ranged {
		return o.prefix
	}
	return o.prefix + o.r.format(o.r.lo+int64(k)) + o.suffix
}

// exact is the data.path naming shards 0..n-1 and nothing else.
func (o outputPattern) exact(n int) string {
	if !o.ranged || n == 1 {
		return o.name(0)
	}
	return o.prefix + "{" + o.r.format(o.r.lo) + ".." + o.r.format(o.r.lo+int64(n-1)) + "}" + o.suffix
}
