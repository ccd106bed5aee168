package data

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestExpandShards(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"b.tar", "a.tar", "c.txt"} {
		writeFile(t, filepath.Join(dir, "g", n), nil)
	}
	g := filepath.Join(dir, "g")
	for _, tc := range []struct {
		pattern string
		want    []string
	}{
		{"s/one.tar", []string{"s/one.tar"}},
		{"s/train-{000000..000002}.tar", []string{"s/train-000000.tar", "s/train-000001.tar", "s/train-000002.tar"}},
		{"s/{8..11}.tar", []string{"s/8.tar", "s/9.tar", "s/10.tar", "s/11.tar"}},
		{"s/{8..010}.tar", []string{"s/008.tar", "s/009.tar", "s/010.tar"}},
		{"s/{0..0}.tar", []string{"s/0.tar"}},
		{"s/{train,val}-{0..1}.tar", []string{"s/train-0.tar", "s/train-1.tar", "s/val-0.tar", "s/val-1.tar"}},
		{"s/x{,-extra}.tar", []string{"s/x.tar", "s/x-extra.tar"}},
		{"a.tar, b/{1..2}.tar ,c.tar", []string{"a.tar", "b/1.tar", "b/2.tar", "c.tar"}},
		{g + "/*.tar", []string{g + "/a.tar", g + "/b.tar"}},
		{g + "/[b]*.tar," + g + "/c.txt", []string{g + "/b.tar", g + "/c.txt"}},
	} {
		got, err := ExpandShards(tc.pattern)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v %q, want %q", tc.pattern, err, got, tc.want)
		}
	}
	for _, tc := range []struct{ pattern, want string }{
		{"", "empty"},
		{"  ", "empty"},
		{"s/{0..3.tar", "never closed"},
		{"s/0..3}.tar", "no matching '{'"},
		{"s/{a{0..1}}.tar", "nested"},
		{"s/{}.tar", "neither a range"},
		{"s/{abc}.tar", "neither a range"},
		{"s/{5..1}.tar", "runs backwards; write {1..5}"},
		{"s/{a..f}.tar", `"a" is not a decimal number`},
		{"s/{1..}.tar", `"" is not a decimal number`},
		{"s/{-1..3}.tar", "not a decimal number"},
		{"s/{0..99999999999999999999}.tar", "not a decimal number"},
		{"s/{0..9999999}.tar", "over the limit"},
		{"s/{0..9999}-{0..9999}.tar", "more than"},
		{"a.tar,,b.tar", "item 2 of the comma-separated list is empty"},
		{"a.tar,", "item 2"},
		{"s/{0..2}.tar,s/1.tar", "s/1.tar is listed twice"},
		{g + "/*.zip", "no file matches"},
		{g + "/[.tar", "glob"},
	} {
		_, err := ExpandShards(tc.pattern)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want it to say %q", tc.pattern, err, tc.want)
		}
	}
}

func TestOutputPattern(t *testing.T) {
	o, err := parseOutputPattern("out/train-{000000..000009}.tar")
	if err != nil || o.capacity() != 10 || o.name(3) != "out/train-000003.tar" || o.exact(4) != "out/train-{000000..000003}.tar" || o.exact(1) != "out/train-000000.tar" {
		t.Fatalf("%v %+v %s", err, o, o.exact(4))
	}
	o, err = parseOutputPattern("out/all.tar")
	if err != nil || o.capacity() != 1 || o.name(0) != "out/all.tar" || o.exact(1) != "out/all.tar" {
		t.Fatalf("%v %+v", err, o)
	}
	// What the output names, data.path expands back to.
	o, _ = parseOutputPattern("s/{7..1000}.tar")
	if got, _ := ExpandShards(o.exact(5)); !slices.Equal(got, []string{"s/7.tar", "s/8.tar", "s/9.tar", "s/10.tar", "s/11.tar"}) {
		t.Fatalf("round trip %q", got)
	}
	for _, tc := range []struct{ pattern, want string }{
		{"out/{a,b}.tar", "lists and globs"},
		{"out/*.tar", "lists and globs"},
		{"out/{0..3}-{0..3}.tar", "more than one brace group"},
		{"out/{x}.tar", "not a range"},
		{"out/{0..3.tar", "never closed"},
		{"out/0..3}.tar", "no matching"},
		{"out/{3..0}.tar", "backwards"},
	} {
		if _, err := parseOutputPattern(tc.pattern); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.pattern, err, tc.want)
		}
	}
}

func TestDetectFormatShards(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, filepath.Join(dir, "a.tar"), nil)
	for _, path := range []string{p, filepath.Join(dir, "s-{0..3}.tar"), filepath.Join(dir, "*.tar"), p + "," + p} {
		if f, err := DetectFormat(path); err != nil || f != "webdataset" {
			t.Errorf("%s: %q %v", path, f, err)
		}
	}
	// A directory is never shards, whatever its name.
	d := filepath.Join(dir, "odd,name")
	os.MkdirAll(filepath.Join(d, "cls"), 0o755)
	writeFile(t, filepath.Join(d, "cls", "x.png"), nil)
	if f, _ := DetectFormat(d); f != "imagefolder" {
		t.Errorf("directory detected as %q", f)
	}
}
