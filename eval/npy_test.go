package eval

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestNPYHeaderBytes(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "x.npy")
	if err := WriteNPY(p, []float32{1, 2, 3, 4, 5, 6}, []int{2, 3}); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(p)
	// numpy.save of a (2, 3) float32 array: header length 118 = 'v'.
	want := "\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }" +
		strings.Repeat(" ", 58) + "\n"
	if len(want) != 128 || string(raw[:128]) != want {
		t.Fatalf("header\n%q\nwant\n%q", raw[:min(len(raw), 128)], want)
	}
	if !bytes.Equal(raw[128:132], []byte{0, 0, 0x80, 0x3f}) || len(raw) != 128+24 {
		t.Fatalf("data % x", raw[128:])
	}
	p1 := filepath.Join(dir, "y.npy")
	if err := WriteNPYInt64(p1, []int64{7, -1, 3}, []int{3}); err != nil {
		t.Fatal(err)
	}
	raw, _ = os.ReadFile(p1)
	want = "\x93NUMPY\x01\x00v\x00{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }" +
		strings.Repeat(" ", 60) + "\n"
	if len(want) != 128 || string(raw[:128]) != want {
		t.Fatalf("1-D header\n%q\nwant\n%q", raw[:128], want)
	}
	for _, n := range []int{0, 1, 2, 3} { // data always starts at a multiple of 64
		h := npyHeader("<f4", []int{70000, 1280, 1, 1}[:n])
		if len(h)%64 != 0 || h[len(h)-1] != '\n' {
			t.Fatalf("shape rank %d: header length %d", n, len(h))
		}
	}
}

func TestNPYRoundTrip(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f.npy")
	data := []float32{0, -1.5, 3.25e-20, 1e30, 7, 8}
	if err := WriteNPY(p, data, []int{3, 1, 2}); err != nil {
		t.Fatal(err)
	}
	got, shape, err := ReadNPY(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(shape) != 3 || shape[0] != 3 || shape[1] != 1 || shape[2] != 2 {
		t.Fatalf("shape %v", shape)
	}
	for i := range data {
		if got[i] != data[i] {
			t.Fatalf("data %v", got)
		}
	}
	li := []int64{1 << 40, -3, 0}
	if err := WriteNPYInt64(p, li, []int{3}); err != nil { // overwrite in place
		t.Fatal(err)
	}
	gi, shape, err := ReadNPYInt64(p)
	if err != nil || len(shape) != 1 || shape[0] != 3 || gi[0] != 1<<40 || gi[1] != -3 {
		t.Fatalf("%v %v %v", gi, shape, err)
	}
	if _, _, err := ReadNPY(p); err == nil {
		t.Fatal("int64 file read as float32")
	}
	if err := WriteNPY(p, data, []int{4}); err == nil {
		t.Fatal("shape mismatch accepted")
	}
	if err := WriteNPY(filepath.Join(dir, "missing", "x.npy"), data, []int{6}); err == nil {
		t.Fatal("write into a missing directory succeeded")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("temporary files left behind: %v", entries)
	}
	os.WriteFile(p, []byte("\x93NUMPY\x01\x00\xff\x00{'descr'"), 0o644)
	if _, _, err := ReadNPY(p); err == nil {
		t.Fatal("truncated file accepted")
	}
}
