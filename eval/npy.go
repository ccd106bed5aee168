package eval

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// npyMagic starts every .npy file; the two bytes after it are the format
// version (we write 1.0).
const npyMagic = "\x93NUMPY"

// npyHeader returns the complete v1.0 preamble (magic, version, header length
// and the dict padded with spaces and a final '\n' so that the data starts at
// a multiple of 64 bytes), as numpy.lib.format.write_array writes it.
func npyHeader(descr string, shape []int) []byte {
	var dims []string
	for _, s := range shape {
		dims = append(dims, strconv.Itoa(s))
	}
	tuple := "(" + strings.Join(dims, ", ") + ")"
	if len(shape) == 1 {
		tuple = "(" + dims[0] + ",)"
	}
	dict := fmt.Sprintf("{'descr': '%s', 'fortran_order': False, 'shape': %s, }", descr, tuple)
	// preamble: 6 magic + 2 version + 2 length bytes.
	total := 10 + len(dict) + 1
	pad := (64 - total%64) % 64
	hdr := dict + strings.Repeat(" ", pad) + "\n"
	out := make([]byte, 0, 10+len(hdr))
	out = append(out, npyMagic...)
	out = append(out, 1, 0)
	out = binary.LittleEndian.AppendUint16(out, uint16(len(hdr)))
	return append(out, hdr...)
}

func checkShape(n int, shape []int) error {
	p := 1
	for _, s := range shape {
		if s < 0 {
			return fmt.Errorf("negative dimension in shape %v", shape)
		}
		p *= s
	}
	if p != n {
		return fmt.Errorf("shape %v holds %d elements, data has %d", shape, p, n)
	}
	return nil
}

// WriteNPY writes data, a C-order array of the given shape, as a NumPy .npy
// v1.0 file with dtype '<f4'. The file is written to a temporary name in the
// same directory, synced and renamed, so path holds either the old file or
// the whole new one.
func WriteNPY(path string, data []float32, shape []int) error {
	if err := checkShape(len(data), shape); err != nil {
		return fmt.Errorf("write npy %s: %w", path, err)
	}
	body := make([]byte, 4*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint32(body[4*i:], math.Float32bits(v))
	}
	return writeNPYFile(path, npyHeader("<f4", shape), body)
}

// WriteNPYInt64 writes data (labels, indices) as a .npy v1.0 file with dtype
// '<i8'; see WriteNPY.
func WriteNPYInt64(path string, data []int64, shape []int) error {
	if err := checkShape(len(data), shape); err != nil {
		return fmt.Errorf("write npy %s: %w", path, err)
	}
	body := make([]byte, 8*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint64(body[8*i:], uint64(v))
	}
	return writeNPYFile(path, npyHeader("<i8", shape), body)
}

func writeNPYFile(path string, header, body []byte) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write npy %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err = f.Write(header); err != nil {
		return fmt.Errorf("write npy %s: %w", path, err)
	}
	if _, err = f.Write(body); err != nil {
		return fmt.Errorf("write npy %s: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("write npy %s: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("write npy %s: %w", path, err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write npy %s: %w", path, err)
	}
	return nil
}

// ReadNPY reads a little-endian C-order .npy file (versions 1.0-3.0) of dtype
// '<f4'.
func ReadNPY(path string) ([]float32, []int, error) {
	descr, shape, body, err := readNPY(path)
	if err != nil {
		return nil, nil, err
	}
	if descr != "<f4" {
		return nil, nil, fmt.Errorf("read npy %s: dtype %q, want '<f4'", path, descr)
	}
	n := len(body) / 4
	if err := checkShape(n, shape); err != nil || len(body)%4 != 0 {
		return nil, nil, fmt.Errorf("read npy %s: %d data bytes do not match shape %v", path, len(body), shape)
	}
	out := make([]float32, n)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(body[4*i:]))
	}
	return out, shape, nil
}

// ReadNPYInt64 reads a .npy file of dtype '<i8'; see ReadNPY.
func ReadNPYInt64(path string) ([]int64, []int, error) {
	descr, shape, body, err := readNPY(path)
	if err != nil {
		return nil, nil, err
	}
	if descr != "<i8" {
		return nil, nil, fmt.Errorf("read npy %s: dtype %q, want '<i8'", path, descr)
	}
	n := len(body) / 8
	if err := checkShape(n, shape); err != nil || len(body)%8 != 0 {
		return nil, nil, fmt.Errorf("read npy %s: %d data bytes do not match shape %v", path, len(body), shape)
	}
	out := make([]int64, n)
	for i := range out {
		out[i] = int64(binary.LittleEndian.Uint64(body[8*i:]))
	}
	return out, shape, nil
}

func readNPY(path string) (descr string, shape []int, body []byte, err error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", nil, nil, fmt.Errorf("read npy: %w", err)
	}
	bad := func(why string) error { return fmt.Errorf("read npy %s: %s", path, why) }
	if len(raw) < 10 || string(raw[:6]) != npyMagic {
		return "", nil, nil, bad("not a .npy file (bad magic)")
	}
	var hlen, off int
	switch raw[6] {
	case 1:
		hlen, off = int(binary.LittleEndian.Uint16(raw[8:])), 10
	case 2, 3:
		if len(raw) < 12 {
			return "", nil, nil, bad("truncated header")
		}
		hlen, off = int(binary.LittleEndian.Uint32(raw[8:])), 12
	default:
		return "", nil, nil, bad(fmt.Sprintf("unsupported version %d.%d", raw[6], raw[7]))
	}
	if off+hlen > len(raw) {
		return "", nil, nil, bad("truncated header")
	}
	hdr := string(bytes.TrimSpace(raw[off : off+hlen]))
	descr, fortran, shape, perr := parseNPYDict(hdr)
	if perr != nil {
		return "", nil, nil, bad(perr.Error())
	}
	if fortran {
		return "", nil, nil, bad("fortran_order arrays are not supported")
	}
	return descr, shape, raw[off+hlen:], nil
}

// parseNPYDict parses the header dict numpy writes: three known keys with
// string, bool and int-tuple values.
func parseNPYDict(h string) (descr string, fortran bool, shape []int, err error) {
	if !strings.HasPrefix(h, "{") || !strings.HasSuffix(h, "}") {
		return "", false, nil, errors.New("header is not a dict")
	}
	value := func(key string) (string, error) {
		k := "'" + key + "':"
		i := strings.Index(h, k)
		if i < 0 {
			return "", fmt.Errorf("header has no %q", key)
		}
		return strings.TrimSpace(h[i+len(k):]), nil
	}
	v, err := value("descr")
	if err != nil {
		return "", false, nil, err
	}
	if len(v) < 2 || v[0] != '\'' {
		return "", false, nil, errors.New("bad descr")
	}
	end := strings.IndexByte(v[1:], '\'')
	if end < 0 {
		return "", false, nil, errors.New("bad descr")
	}
	descr = v[1 : 1+end]
	if v, err = value("fortran_order"); err != nil {
		return "", false, nil, err
	}
	switch {
	case strings.HasPrefix(v, "True"):
		fortran = true
	case strings.HasPrefix(v, "False"):
	default:
		return "", false, nil, errors.New("bad fortran_order")
	}
	if v, err = value("shape"); err != nil {
		return "", false, nil, err
	}
	if !strings.HasPrefix(v, "(") {
		return "", false, nil, errors.New("bad shape")
	}
	end = strings.IndexByte(v, ')')
	if end < 0 {
		return "", false, nil, errors.New("bad shape")
	}
	shape = []int{}
	for _, f := range strings.Split(v[1:end], ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		s, err := strconv.Atoi(f)
		if err != nil || s < 0 {
			return "", false, nil, fmt.Errorf("bad shape entry %q", f)
		}
		shape = append(shape, s)
	}
	return descr, fortran, shape, nil
}
