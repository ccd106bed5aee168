// Package safetensors reads and writes Hugging Face's safetensors format, the
// on-disk form of checkpoints, timm exports and the PyTorch golden fixtures.
//
// A file is
//
//	[8 bytes]  N, the header length, unsigned little-endian
//	[N bytes]  JSON header: {"<name>": {"dtype": "F32", "shape": [2, 3],
//	           "data_offsets": [begin, end]}, ..., "__metadata__": {"k": "v"}}
//	[rest]     the data section; tensor bytes are [begin, end) relative to its
//	           start, little-endian, row-major
//
// The reader accepts F32, F16, BF16 and F64 as float32, and I32 and I64 as
// int32 (I64 with a range check); headers naming other standard dtypes open
// fine, but reading such a tensor fails. The writer emits F32 and I32 and pads
// the header with spaces so that the data section starts 8-byte aligned.
package safetensors

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"unicode/utf8"
)

// MaxHeaderSize bounds the JSON header (the reference implementation's limit),
// so a corrupt length cannot make the reader allocate gigabytes.
const MaxHeaderSize = 100_000_000

// metadataKey is the reserved header entry holding string metadata.
const metadataKey = "__metadata__"

// dtypeSizes gives the element size in bytes of every dtype the format
// defines; a header naming anything else is rejected.
var dtypeSizes = map[string]int{
	"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1,
	"I16": 2, "U16": 2, "F16": 2, "BF16": 2,
	"I32": 4, "U32": 4, "F32": 4,
	"I64": 8, "U64": 8, "F64": 8,
}

// Info describes one tensor of a file. Begin and End are byte offsets into the
// data section.
type Info struct {
	Name       string
	DType      string
	Shape      []int
	Begin, End int64
}

// Numel is the number of elements (1 for a scalar).
func (t Info) Numel() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// File is an open safetensors file. Tensors are read on demand with ReadAt,
// so opening a multi-gigabyte checkpoint reads only its header.
type File struct {
	// Path names the file in error messages.
	Path string
	// Metadata is the header's "__metadata__" map (empty when absent).
	Metadata map[string]string

	infos   []Info // sorted by Begin
	byName  map[string]int
	r       io.ReaderAt
	dataOff int64 // file offset of the data section
	closer  io.Closer
}

// Open opens path and validates its header against the file size.
func Open(path string) (*File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	st, err := fh.Stat()
	if err != nil {
		fh.Close()
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	f, err := Parse(path, fh, st.Size())
	if err != nil {
		fh.Close()
		return nil, err
	}
	f.closer = fh
	return f, nil
}

// Parse reads and validates the header of a safetensors image of size bytes
// readable through r; name is used in error messages.
func Parse(name string, r io.ReaderAt, size int64) (*File, error) {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("safetensors %s: %s", name, fmt.Sprintf(format, args...))
	}
	if size < 8 {
		return nil, fail("truncated: %d bytes, need at least the 8-byte header length", size)
	}
	var lenBuf [8]byte
	if err := readAt(r, lenBuf[:], 0); err != nil {
		return nil, fail("read header length: %v", err)
	}
	n := binary.LittleEndian.Uint64(lenBuf[:])
	if n > MaxHeaderSize {
		return nil, fail("header of %d bytes is larger than the %d-byte limit (corrupt or not a safetensors file)", n, MaxHeaderSize)
	}
	if int64(n) > size-8 {
		return nil, fail("truncated: header of %d bytes but only %d bytes follow the length", n, size-8)
	}
	hdr := make([]byte, n)
	if err := readAt(r, hdr, 8); err != nil {
		return nil, fail("read header: %v", err)
	}
	if t := bytes.TrimLeft(hdr, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return nil, fail("header is not a JSON object")
	}
	raw, err := headerEntries(hdr)
	if err != nil {
		return nil, fail("header JSON: %v", err)
	}
	f := &File{
		Path:     name,
		Metadata: map[string]string{},
		byName:   make(map[string]int, len(raw)),
		r:        r,
		dataOff:  8 + int64(n),
	}
	dataSize := size - f.dataOff
	for _, entry := range raw {
		key, msg := entry.key, entry.value
		if key == metadataKey {
			if err := json.Unmarshal(msg, &f.Metadata); err != nil {
				return nil, fail("__metadata__ must map strings to strings: %v", err)
			}
			continue
		}
		var e struct {
			DType       string   `json:"dtype"`
			Shape       []int64  `json:"shape"`
			DataOffsets []uint64 `json:"data_offsets"`
		}
		dec := json.NewDecoder(bytes.NewReader(msg))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&e); err != nil {
			return nil, fail("tensor %q: %v", key, err)
		}
		size, ok := dtypeSizes[e.DType]
		if !ok {
			return nil, fail("tensor %q: unknown dtype %q", key, e.DType)
		}
		if e.Shape == nil {
			return nil, fail("tensor %q: missing shape", key)
		}
		if len(e.DataOffsets) != 2 {
			return nil, fail("tensor %q: data_offsets must be [begin, end], got %v", key, e.DataOffsets)
		}
		begin, end := e.DataOffsets[0], e.DataOffsets[1]
		if end < begin || end > uint64(dataSize) {
			return nil, fail("tensor %q: data_offsets [%d, %d) outside the %d-byte data section (truncated file?)", key, begin, end, dataSize)
		}
		shape := make([]int, len(e.Shape))
		nbytes, overflow := uint64(size), false
		for i, d := range e.Shape {
			if d < 0 || d > math.MaxInt32 {
				return nil, fail("tensor %q: bad dimension %d in shape %v", key, d, e.Shape)
			}
			shape[i] = int(d)
			hi, lo := bits.Mul64(nbytes, uint64(d))
			nbytes, overflow = lo, overflow || hi != 0
		}
		if slices.Contains(shape, 0) {
			nbytes, overflow = 0, false
		}
		if overflow {
			return nil, fail("tensor %q: shape %v of %s needs more than 2^64 bytes", key, e.Shape, e.DType)
		}
		if nbytes != end-begin {
			return nil, fail("tensor %q: shape %v of %s needs %d bytes, data_offsets give %d", key, e.Shape, e.DType, nbytes, end-begin)
		}
		f.infos = append(f.infos, Info{Name: key, DType: e.DType, Shape: shape, Begin: int64(begin), End: int64(end)})
	}
	// Stable, so that empty tensors sharing an offset keep the header's
	// (the writer's) order.
	sort.SliceStable(f.infos, func(i, j int) bool {
		a, b := f.infos[i], f.infos[j]
		if a.Begin != b.Begin {
			return a.Begin < b.Begin
		}
		return a.End < b.End
	})
	for i, t := range f.infos {
		if i > 0 {
			if p := f.infos[i-1]; t.Begin < p.End {
				return nil, fail("tensors %q [%d, %d) and %q [%d, %d) overlap", p.Name, p.Begin, p.End, t.Name, t.Begin, t.End)
			}
		}
		f.byName[t.Name] = i
	}
	return f, nil
}

type headerEntry struct {
	key   string
	value json.RawMessage
}

// headerEntries splits the header object into its entries, in the file's
// order (which orders empty tensors at the same offset). A key that appears
// twice is an error: encoding/json would silently keep the last one.
func headerEntries(hdr []byte) ([]headerEntry, error) {
	dec := json.NewDecoder(bytes.NewReader(hdr))
	if _, err := dec.Token(); err != nil { // '{', checked by the caller
		return nil, err
	}
	var out []headerEntry
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key := tok.(string) // Token only returns a string in key position
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return nil, err
		}
		if seen[key] {
			return nil, fmt.Errorf("%q appears twice", key)
		}
		seen[key] = true
		out = append(out, headerEntry{key, value})
	}
	if _, err := dec.Token(); err != nil { // '}'
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the header object")
	}
	return out, nil
}

// Close closes the underlying file (a no-op for Parse'd images).
func (f *File) Close() error {
	if f.closer == nil {
		return nil
	}
	return f.closer.Close()
}

// Tensors lists the file's tensors in data order.
func (f *File) Tensors() []Info { return slices.Clone(f.infos) }

// Names lists the tensor names in data order.
func (f *File) Names() []string {
	names := make([]string, len(f.infos))
	for i, t := range f.infos {
		names[i] = t.Name
	}
	return names
}

// Info returns the description of the named tensor.
func (f *File) Info(name string) (Info, bool) {
	i, ok := f.byName[name]
	if !ok {
		return Info{}, false
	}
	return f.infos[i], true
}

func (f *File) bytes(name string) (Info, []byte, error) {
	t, ok := f.Info(name)
	if !ok {
		return t, nil, fmt.Errorf("safetensors %s: tensor %q: %w", f.Path, name, ErrNotFound)
	}
	buf := make([]byte, t.End-t.Begin)
	if err := readAt(f.r, buf, f.dataOff+t.Begin); err != nil {
		return t, nil, fmt.Errorf("safetensors %s: tensor %q: read: %v", f.Path, name, err)
	}
	return t, buf, nil
}

// readAt fills buf from r at off. io.ReaderAt may return io.EOF along with a
// full buffer that ends the input, and bytes.Reader returns it even for an
// empty buffer at the end (an empty tensor last in the data section), so
// only a short read is an error.
func readAt(r io.ReaderAt, buf []byte, off int64) error {
	n, err := r.ReadAt(buf, off)
	if n == len(buf) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// Float32 reads a floating-point tensor (F32, F16, BF16 or F64) as float32
// and returns it with its shape.
func (f *File) Float32(name string) ([]float32, []int, error) {
	t, b, err := f.bytes(name)
	if err != nil {
		return nil, nil, err
	}
	out := make([]float32, t.Numel())
	le := binary.LittleEndian
	switch t.DType {
	case "F32":
		for i := range out {
			out[i] = math.Float32frombits(le.Uint32(b[4*i:]))
		}
	case "F16":
		for i := range out {
			out[i] = halfToFloat32(le.Uint16(b[2*i:]))
		}
	case "BF16":
		for i := range out {
			out[i] = math.Float32frombits(uint32(le.Uint16(b[2*i:])) << 16)
		}
	case "F64":
		for i := range out {
			out[i] = float32(math.Float64frombits(le.Uint64(b[8*i:])))
		}
	default:
		return nil, nil, fmt.Errorf("safetensors %s: tensor %q has dtype %s, want a float type (F32, F16, BF16, F64)", f.Path, name, t.DType)
	}
	return out, slices.Clone(t.Shape), nil
}

// Int32 reads an integer tensor (I32, or I64 whose values fit in int32) and
// returns it with its shape.
func (f *File) Int32(name string) ([]int32, []int, error) {
	t, b, err := f.bytes(name)
	if err != nil {
		return nil, nil, err
	}
	out := make([]int32, t.Numel())
	le := binary.LittleEndian
	switch t.DType {
	case "I32":
		for i := range out {
			out[i] = int32(le.Uint32(b[4*i:]))
		}
	case "I64":
		for i := range out {
			v := int64(le.Uint64(b[8*i:]))
			if v < math.MinInt32 || v > math.MaxInt32 {
				return nil, nil, fmt.Errorf("safetensors %s: tensor %q: element %d = %d does not fit in int32", f.Path, name, i, v)
			}
			out[i] = int32(v)
		}
	default:
		return nil, nil, fmt.Errorf("safetensors %s: tensor %q has dtype %s, want I32 or I64", f.Path, name, t.DType)
	}
	return out, slices.Clone(t.Shape), nil
}

// halfToFloat32 converts an IEEE 754 binary16 value, subnormals and NaN
// payloads included.
func halfToFloat32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f: // Inf, NaN
		return math.Float32frombits(sign | 0xff<<23 | mant<<13)
	case exp != 0:
		return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
	case mant == 0:
		return math.Float32frombits(sign)
	}
	// Subnormal: value = mant * 2^-24.
	v := float32(mant) * (1.0 / (1 << 24))
	if sign != 0 {
		v = -v
	}
	return v
}

// Tensor is one tensor to write: exactly one of F32 and I32 holds its
// Numel(Shape) elements.
type Tensor struct {
	Name  string
	Shape []int
	F32   []float32
	I32   []int32
}

func (t *Tensor) dtype() string {
	if t.I32 != nil {
		return "I32"
	}
	return "F32"
}

func (t *Tensor) len() int {
	if t.I32 != nil {
		return len(t.I32)
	}
	return len(t.F32)
}

// Write streams tensors, in the given order, and metadata to w.
func Write(w io.Writer, tensors []Tensor, metadata map[string]string) error {
	hdr, err := header(tensors, metadata)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 1<<16)
	var lenBuf [8]byte
	binary.LittleEndian.PutUint64(lenBuf[:], uint64(len(hdr)))
	bw.Write(lenBuf[:])
	bw.Write(hdr)
	var b [8]byte
	for i := range tensors {
		t := &tensors[i]
		for _, v := range t.F32 {
			binary.LittleEndian.PutUint32(b[:], math.Float32bits(v))
			bw.Write(b[:4])
		}
		for _, v := range t.I32 {
			binary.LittleEndian.PutUint32(b[:], uint32(v))
			bw.Write(b[:4])
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("safetensors: write: %w", err)
	}
	return nil
}

// header builds the space-padded JSON header, entries in the given order.
func header(tensors []Tensor, metadata map[string]string) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteByte('{')
	if len(metadata) > 0 {
		for k, v := range metadata {
			if !utf8.ValidString(k) || !utf8.ValidString(v) {
				return nil, fmt.Errorf("safetensors: metadata %q: %q is not valid UTF-8 (encoding/json would alter it)", k, v)
			}
		}
		m, err := json.Marshal(metadata)
		if err != nil {
			return nil, fmt.Errorf("safetensors: metadata: %w", err)
		}
		buf.WriteString(`"` + metadataKey + `":`)
		buf.Write(m)
	}
	seen := make(map[string]bool, len(tensors))
	var off int64
	for i := range tensors {
		t := &tensors[i]
		if t.Name == metadataKey || t.Name == "" {
			return nil, fmt.Errorf("safetensors: tensor %d: invalid name %q", i, t.Name)
		}
		// encoding/json would write invalid UTF-8 as U+FFFD, so the
		// tensor would read back under another name.
		if !utf8.ValidString(t.Name) {
			return nil, fmt.Errorf("safetensors: tensor %d: name %q is not valid UTF-8", i, t.Name)
		}
		if seen[t.Name] {
			return nil, fmt.Errorf("safetensors: tensor %q appears twice", t.Name)
		}
		seen[t.Name] = true
		if t.F32 != nil && t.I32 != nil {
			return nil, fmt.Errorf("safetensors: tensor %q has both float32 and int32 data", t.Name)
		}
		// Dimensions are bounded as the reader bounds them (and so that
		// the element count cannot overflow into a small number).
		n, overflow := 1, false
		for _, d := range t.Shape {
			if d < 0 || d > math.MaxInt32 {
				return nil, fmt.Errorf("safetensors: tensor %q: bad dimension %d in shape %v", t.Name, d, t.Shape)
			}
			hi, lo := bits.Mul64(uint64(n), uint64(d))
			n, overflow = int(lo), overflow || hi != 0 || lo > math.MaxInt64/4
		}
		if slices.Contains(t.Shape, 0) {
			n, overflow = 0, false
		}
		if overflow {
			return nil, fmt.Errorf("safetensors: tensor %q: shape %v holds too many elements", t.Name, t.Shape)
		}
		if n != t.len() {
			return nil, fmt.Errorf("safetensors: tensor %q: shape %v holds %d elements, data has %d", t.Name, t.Shape, n, t.len())
		}
		name, _ := json.Marshal(t.Name)
		shape := t.Shape
		if shape == nil {
			shape = []int{}
		}
		sh, _ := json.Marshal(shape)
		if buf.Len() > 1 {
			buf.WriteByte(',')
		}
		end := off + 4*int64(n)
		fmt.Fprintf(&buf, `%s:{"dtype":"%s","shape":%s,"data_offsets":[%d,%d]}`, name, t.dtype(), sh, off, end)
		off = end
	}
	buf.WriteByte('}')
	for buf.Len()%8 != 0 {
		buf.WriteByte(' ')
	}
	return buf.Bytes(), nil
}

// WriteFile writes tensors to path atomically: to a temporary file in the same
// directory, fsync'd, then renamed over path.
func WriteFile(path string, tensors []Tensor, metadata map[string]string) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err = tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	if err = Write(tmp, tensors, metadata); err != nil {
		return fmt.Errorf("%w (writing %s)", err, path)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("safetensors: sync %s: %w", path, err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("safetensors: close %s: %w", path, err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	return nil
}

// ErrNotFound is returned (wrapped) when a file has no tensor of the
// requested name.
var ErrNotFound = errors.New("no such tensor")
