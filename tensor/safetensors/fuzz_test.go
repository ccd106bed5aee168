package safetensors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"maps"
	"math"
	"slices"
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary bytes to the reader. Properties: no panic; an
// error names the file; an accepted header describes tensors that lie inside
// the data section without overlapping; every tensor reads back (or is
// refused by dtype) without reading past it; and the tensors the writer can
// express (F32, I32) survive write -> parse unchanged.
func FuzzParse(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{1, 2, 3})
	f.Add(rawFile(`{}`, nil))
	f.Add(rawFile(`{"__metadata__":null}`, nil))
	f.Add(rawFile(`{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, make([]byte, 8)))
	f.Add(rawFile(`{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,12]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}`, make([]byte, 16)))
	f.Add(rawFile(`{"a":{"dtype":"F32","shape":[0,2147483647],"data_offsets":[4,4]},"a":{"dtype":"I32","shape":[],"data_offsets":[0,4]}}`, make([]byte, 4)))
	f.Add(rawFile(`{"h":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},"b":{"dtype":"BF16","shape":[2],"data_offsets":[4,8]},`+
		`"i":{"dtype":"I64","shape":[1],"data_offsets":[8,16]},"d":{"dtype":"F64","shape":[1],"data_offsets":[16,24]},`+
		`"u":{"dtype":"U8","shape":[1,1],"data_offsets":[24,25]}}`, make([]byte, 25)))
	var buf bytes.Buffer
	if err := Write(&buf, []Tensor{
		{Name: "w", Shape: []int{2, 2}, F32: []float32{1, -0, float32(math.NaN()), float32(math.Inf(1))}},
		{Name: "idx", Shape: []int{3}, I32: []int32{-1, 0, math.MaxInt32}},
		{Name: "empty", Shape: []int{0}, F32: []float32{}},
	}, map[string]string{"k": "v"}); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	huge := make([]byte, 16)
	binary.LittleEndian.PutUint64(huge, math.MaxUint64)
	f.Add(huge)

	f.Fuzz(func(t *testing.T, data []byte) {
		const name = "fuzz.safetensors"
		file, err := Parse(name, bytes.NewReader(data), int64(len(data)))
		if err != nil {
			if !strings.Contains(err.Error(), name) {
				t.Fatalf("error %q does not name the file", err)
			}
			return
		}
		dataSize := int64(len(data)) - file.dataOff
		var rewrite []Tensor
		var prevEnd int64
		for i, info := range file.Tensors() {
			if info.Begin < 0 || info.End < info.Begin || info.End > dataSize {
				t.Fatalf("tensor %q: [%d, %d) outside the %d-byte data section", info.Name, info.Begin, info.End, dataSize)
			}
			if i > 0 && info.Begin < prevEnd {
				t.Fatalf("tensor %q [%d, %d) overlaps the one before, which ends at %d", info.Name, info.Begin, info.End, prevEnd)
			}
			prevEnd = info.End
			if got := int64(info.Numel()) * int64(dtypeSizes[info.DType]); got != info.End-info.Begin {
				t.Fatalf("tensor %q: %d elements of %s in %d bytes", info.Name, info.Numel(), info.DType, info.End-info.Begin)
			}
			x, xshape, ferr := file.Float32(info.Name)
			n, nshape, ierr := file.Int32(info.Name)
			switch info.DType {
			case "F32", "F16", "BF16", "F64":
				if ferr != nil || len(x) != info.Numel() || !slices.Equal(xshape, info.Shape) {
					t.Fatalf("tensor %q (%s): Float32 gave %d values %v, %v", info.Name, info.DType, len(x), xshape, ferr)
				}
			case "I32", "I64":
				if ierr == nil && (len(n) != info.Numel() || !slices.Equal(nshape, info.Shape)) {
					t.Fatalf("tensor %q (%s): Int32 gave %d values %v", info.Name, info.DType, len(n), nshape)
				}
			default:
				if ferr == nil || ierr == nil {
					t.Fatalf("tensor %q: dtype %s read as a number", info.Name, info.DType)
				}
			}
			switch info.DType {
			case "F32":
				rewrite = append(rewrite, Tensor{Name: info.Name, Shape: info.Shape, F32: x})
			case "I32":
				rewrite = append(rewrite, Tensor{Name: info.Name, Shape: info.Shape, I32: n})
			}
		}
		checkRoundTrip(t, rewrite, file.Metadata)
	})
}

// FuzzRoundTrip builds tensors and metadata from the fuzzer's bytes and
// checks read(write(x)) == x, bit for bit, or that Write refuses x.
func FuzzRoundTrip(f *testing.F) {
	f.Add([]byte("\x01\x01w\x02\x02\x03\x00abcdefghijklmnopqrstuvwx"), "k", "v")
	f.Add([]byte("\x02\x01a\x00\x01\x01b\x01\x02\x01\x02\x03\x04\x05\x06\x07\x08"), "", "")
	f.Add([]byte("\x01\x03\xff\xfe\xfd\x00\x00"), "format", "pt")
	f.Add([]byte("\x01\x01x\x03\x80\x00\x80\x00\x00"), "a\xffb", "\x80")
	f.Fuzz(func(t *testing.T, spec []byte, metaKey, metaValue string) {
		tensors := tensorsFrom(spec)
		var meta map[string]string
		if metaKey != "" || metaValue != "" {
			meta = map[string]string{metaKey: metaValue}
		}
		var buf bytes.Buffer
		if err := Write(&buf, tensors, meta); err != nil {
			return // refused: nothing to read back
		}
		file, err := Parse("rt", bytes.NewReader(buf.Bytes()), int64(buf.Len()))
		if err != nil {
			t.Fatalf("written file does not parse: %v", err)
		}
		checkSame(t, file, tensors, meta)
	})
}

// tensorsFrom decodes a tensor list: a count, then per tensor a name length,
// the name, a rank (the top bit picks I32), the dimensions (one byte each,
// 0x80 and up: a large dimension) and as many 4-byte values as the shape
// holds, taken cyclically from the rest of the input.
func tensorsFrom(spec []byte) []Tensor {
	next := func() int {
		if len(spec) == 0 {
			return 0
		}
		b := spec[0]
		spec = spec[1:]
		return int(b)
	}
	count := next() % 8
	var out []Tensor
	for range count {
		nameLen := next() % 16
		nameLen = min(nameLen, len(spec))
		name := string(spec[:nameLen])
		spec = spec[nameLen:]
		rank := next()
		isInt := rank&0x80 != 0
		rank %= 5
		shape := make([]int, rank)
		numel := 1
		for i := range shape {
			d := next()
			if d >= 0x80 {
				d = (d - 0x7f) << 31 // beyond what the reader accepts
			} else {
				d %= 5
			}
			shape[i] = d
			numel *= d
		}
		if numel < 0 || numel > 64 {
			numel = 0 // data of another length: Write must refuse the shape
		}
		t := Tensor{Name: name, Shape: shape}
		word := func(i int) uint32 {
			if len(spec) == 0 {
				return uint32(i)
			}
			var b [4]byte
			for j := range b {
				b[j] = spec[(4*i+j)%len(spec)]
			}
			return binary.LittleEndian.Uint32(b[:])
		}
		if isInt {
			t.I32 = make([]int32, numel)
			for i := range t.I32 {
				t.I32[i] = int32(word(i))
			}
		} else {
			t.F32 = make([]float32, numel)
			for i := range t.F32 {
				t.F32[i] = math.Float32frombits(word(i))
			}
		}
		out = append(out, t)
	}
	return out
}

// checkRoundTrip writes tensors and metadata and checks that they read back
// unchanged.
func checkRoundTrip(t *testing.T, tensors []Tensor, meta map[string]string) {
	t.Helper()
	var buf bytes.Buffer
	if err := Write(&buf, tensors, meta); err != nil {
		t.Fatalf("rewriting tensors the reader accepted: %v", err)
	}
	file, err := Parse("rt", bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatalf("rewritten file does not parse: %v", err)
	}
	checkSame(t, file, tensors, meta)
}

func checkSame(t *testing.T, file *File, tensors []Tensor, meta map[string]string) {
	t.Helper()
	if len(meta) == 0 {
		meta = map[string]string{}
	}
	if !maps.Equal(file.Metadata, meta) {
		t.Fatalf("metadata %q, wrote %q", file.Metadata, meta)
	}
	var names []string
	for _, w := range tensors {
		names = append(names, w.Name)
	}
	if got := file.Names(); !slices.Equal(got, names) {
		t.Fatalf("names %q, wrote %q", got, names)
	}
	for _, w := range tensors {
		if w.I32 != nil {
			got, shape, err := file.Int32(w.Name)
			if err != nil || !slices.Equal(got, w.I32) || !slices.Equal(shape, w.Shape) {
				t.Fatalf("%q: read %v %v %v, wrote %v %v", w.Name, got, shape, err, w.I32, w.Shape)
			}
			continue
		}
		got, shape, err := file.Float32(w.Name)
		if err != nil || len(got) != len(w.F32) || !slices.Equal(shape, w.Shape) {
			t.Fatalf("%q: read %d values %v %v, wrote %d %v", w.Name, len(got), shape, err, len(w.F32), w.Shape)
		}
		for i := range got {
			if math.Float32bits(got[i]) != math.Float32bits(w.F32[i]) {
				t.Fatalf("%q[%d]: read bits %08x, wrote %08x", w.Name, i, math.Float32bits(got[i]), math.Float32bits(w.F32[i]))
			}
		}
	}
	if _, _, err := file.Float32("\x00no such tensor"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing tensor: %v", err)
	}
}
