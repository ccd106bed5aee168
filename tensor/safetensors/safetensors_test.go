package safetensors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// rawFile assembles a safetensors image from a header text and data bytes.
func rawFile(header string, data []byte) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, uint64(len(header)))
	b.WriteString(header)
	b.Write(data)
	return b.Bytes()
}

func writeTemp(t *testing.T, content []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "x.safetensors")
	if err := os.WriteFile(p, content, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRoundTrip(t *testing.T) {
	tensors := []Tensor{
		{Name: "blocks.0.attn.qkv.weight", Shape: []int{3, 2}, F32: []float32{1, -2, 3.5, float32(math.Inf(1)), 0, -0}},
		{Name: "masks", Shape: []int{2, 2}, I32: []int32{0, 5, -7, math.MaxInt32}},
		{Name: "scalar", Shape: []int{}, F32: []float32{42}},
		{Name: "empty", Shape: []int{0, 4}, F32: []float32{}},
		{Name: "a \"quoted\" name", Shape: []int{1}, F32: []float32{7}},
	}
	meta := map[string]string{"torch": "1.13.0", "config": `{"width":192}`}
	p := filepath.Join(t.TempDir(), "rt.safetensors")
	if err := WriteFile(p, tensors, meta); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(p)
	if n := binary.LittleEndian.Uint64(raw); (8+n)%8 != 0 {
		t.Errorf("data section starts at %d, not 8-byte aligned", 8+n)
	}
	f, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// "empty" has zero bytes at the offset where the next tensor starts; ties
	// sort by end, so data order is still the writing order.
	if got, want := f.Names(), []string{"blocks.0.attn.qkv.weight", "masks", "scalar", "empty", "a \"quoted\" name"}; !slices.Equal(got, want) {
		t.Errorf("names %v, want %v", got, want)
	}
	if f.Metadata["torch"] != "1.13.0" || f.Metadata["config"] != `{"width":192}` {
		t.Errorf("metadata %v", f.Metadata)
	}
	for _, want := range tensors {
		if want.I32 != nil {
			got, shape, err := f.Int32(want.Name)
			if err != nil || !slices.Equal(got, want.I32) || !slices.Equal(shape, want.Shape) {
				t.Errorf("%s: got %v %v %v, want %v %v", want.Name, got, shape, err, want.I32, want.Shape)
			}
			continue
		}
		got, shape, err := f.Float32(want.Name)
		if err != nil || !slices.Equal(shape, want.Shape) || len(got) != len(want.F32) {
			t.Errorf("%s: got %v %v %v, want %v %v", want.Name, got, shape, err, want.F32, want.Shape)
			continue
		}
		for i := range got {
			if math.Float32bits(got[i]) != math.Float32bits(want.F32[i]) {
				t.Errorf("%s[%d] = %v, want %v", want.Name, i, got[i], want.F32[i])
			}
		}
	}
	if _, _, err := f.Float32("missing"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), p) {
		t.Errorf("missing tensor: err %v, want ErrNotFound naming the file", err)
	}
	if _, _, err := f.Int32("scalar"); err == nil || !strings.Contains(err.Error(), `"scalar"`) {
		t.Errorf("Int32 of an F32 tensor: err %v", err)
	}
	// No temporary files left behind.
	entries, _ := os.ReadDir(filepath.Dir(p))
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want 1", len(entries))
	}
}

func TestReadOtherDTypes(t *testing.T) {
	le := binary.LittleEndian
	var data []byte
	// F16: 1, -2, 65504 (max), 2^-24 (smallest subnormal), -Inf.
	for _, h := range []uint16{0x3c00, 0xc000, 0x7bff, 0x0001, 0xfc00} {
		data = le.AppendUint16(data, h)
	}
	// BF16: 1.5, -0.
	for _, h := range []uint16{0x3fc0, 0x8000} {
		data = le.AppendUint16(data, h)
	}
	// I64: 3, -4.
	data = le.AppendUint64(data, 3)
	data = le.AppendUint64(data, uint64(0xfffffffffffffffc))
	// I64 out of int32 range.
	data = le.AppendUint64(data, 1<<40)
	// F64: 0.25.
	data = le.AppendUint64(data, math.Float64bits(0.25))
	hdr := `{"h":{"dtype":"F16","shape":[5],"data_offsets":[0,10]},` +
		`"b":{"dtype":"BF16","shape":[2],"data_offsets":[10,14]},` +
		`"i":{"dtype":"I64","shape":[2,1],"data_offsets":[14,30]},` +
		`"big":{"dtype":"I64","shape":[1],"data_offsets":[30,38]},` +
		`"d":{"dtype":"F64","shape":[1],"data_offsets":[38,46]}}`
	f, err := Open(writeTemp(t, rawFile(hdr, data)))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h, _, err := f.Float32("h")
	if want := []float32{1, -2, 65504, 1.0 / (1 << 24), float32(math.Inf(-1))}; err != nil || !slices.Equal(h, want) {
		t.Errorf("F16: got %v %v, want %v", h, err, want)
	}
	b, _, err := f.Float32("b")
	if err != nil || b[0] != 1.5 || math.Float32bits(b[1]) != 0x80000000 {
		t.Errorf("BF16: got %v %v", b, err)
	}
	i, shape, err := f.Int32("i")
	if err != nil || !slices.Equal(i, []int32{3, -4}) || !slices.Equal(shape, []int{2, 1}) {
		t.Errorf("I64: got %v %v %v", i, shape, err)
	}
	if _, _, err := f.Int32("big"); err == nil || !strings.Contains(err.Error(), `"big"`) {
		t.Errorf("I64 out of range: err %v", err)
	}
	d, _, err := f.Float32("d")
	if err != nil || d[0] != 0.25 {
		t.Errorf("F64: got %v %v", d, err)
	}
}

func TestCorruptFiles(t *testing.T) {
	f32 := make([]byte, 16)
	tests := []struct {
		name    string
		content []byte
		want    string // substring of the error
	}{
		{"empty file", nil, "truncated"},
		{"short length", []byte{1, 2, 3}, "truncated"},
		{"header length over limit", func() []byte {
			b := make([]byte, 16)
			binary.LittleEndian.PutUint64(b, MaxHeaderSize+1)
			return b
		}(), "limit"},
		{"header past end of file", func() []byte {
			b := rawFile(`{}`, nil)
			binary.LittleEndian.PutUint64(b, 1000)
			return b
		}(), "truncated: header of 1000 bytes"},
		{"not json", rawFile("hello!!!", nil), "not a JSON object"},
		{"bad json", rawFile(`{"a":`, nil), "header JSON"},
		{"json array", rawFile(`[1,2]`, nil), "not a JSON object"},
		{"unknown dtype", rawFile(`{"w":{"dtype":"F33","shape":[4],"data_offsets":[0,16]}}`, f32), `tensor "w": unknown dtype "F33"`},
		{"shape/bytes mismatch", rawFile(`{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}}`, f32), `tensor "w": shape [3] of F32 needs 12 bytes`},
		{"offsets out of range", rawFile(`{"w":{"dtype":"F32","shape":[8],"data_offsets":[0,32]}}`, f32), `tensor "w": data_offsets [0, 32) outside`},
		{"truncated data", rawFile(`{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}`, f32[:10]), `tensor "w"`},
		{"reversed offsets", rawFile(`{"w":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}}`, f32), `tensor "w": data_offsets [8, 4)`},
		{"overlap", rawFile(`{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,12]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}`, f32), "overlap"},
		{"bad offsets arity", rawFile(`{"w":{"dtype":"F32","shape":[4],"data_offsets":[0]}}`, f32), "data_offsets must be"},
		{"negative dim", rawFile(`{"w":{"dtype":"F32","shape":[-4],"data_offsets":[0,16]}}`, f32), "bad dimension"},
		{"missing shape", rawFile(`{"w":{"dtype":"F32","data_offsets":[0,16]}}`, f32), "missing shape"},
		{"unknown field", rawFile(`{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16],"x":1}}`, f32), `tensor "w"`},
		{"duplicate entry", rawFile(`{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, f32), `"w" appears twice`},
		{"data after the header", rawFile(`{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}{}`, f32), "after the header object"},
		{"non-string metadata", rawFile(`{"__metadata__":{"a":1}}`, nil), "__metadata__"},
		{"huge shape", rawFile(`{"w":{"dtype":"F32","shape":[2147483647,2147483647,2147483647],"data_offsets":[0,16]}}`, f32), `tensor "w": shape`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := writeTemp(t, tc.content)
			f, err := Open(p)
			if err == nil {
				f.Close()
				t.Fatalf("Open succeeded, want error containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), p) {
				t.Errorf("error %q, want it to contain %q and the file name", err, tc.want)
			}
		})
	}
}

func TestWriteRejects(t *testing.T) {
	tests := []struct {
		name    string
		tensors []Tensor
		want    string
	}{
		{"duplicate", []Tensor{{Name: "a", Shape: []int{1}, F32: []float32{1}}, {Name: "a", Shape: []int{1}, F32: []float32{1}}}, `"a" appears twice`},
		{"count mismatch", []Tensor{{Name: "a", Shape: []int{2, 2}, F32: []float32{1}}}, `"a": shape [2 2] holds 4 elements, data has 1`},
		{"reserved name", []Tensor{{Name: "__metadata__", Shape: []int{1}, F32: []float32{1}}}, "invalid name"},
		{"both dtypes", []Tensor{{Name: "a", Shape: []int{1}, F32: []float32{1}, I32: []int32{1}}}, "both"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			err := Write(&b, tc.tensors, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
	// A failed WriteFile leaves nothing behind.
	dir := t.TempDir()
	if err := WriteFile(filepath.Join(dir, "x.safetensors"), tests[0].tensors, nil); err == nil {
		t.Error("WriteFile of a duplicate succeeded")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("failed WriteFile left %d files", len(entries))
	}
}

func TestParseInMemory(t *testing.T) {
	var b bytes.Buffer
	if err := Write(&b, []Tensor{{Name: "x", Shape: []int{2}, F32: []float32{1, 2}}}, nil); err != nil {
		t.Fatal(err)
	}
	f, err := Parse("mem", bytes.NewReader(b.Bytes()), int64(b.Len()))
	if err != nil {
		t.Fatal(err)
	}
	x, _, err := f.Float32("x")
	if err != nil || !slices.Equal(x, []float32{1, 2}) {
		t.Errorf("got %v %v", x, err)
	}
	if len(f.Metadata) != 0 {
		t.Errorf("metadata %v, want empty", f.Metadata)
	}
}
