// Package tensor defines the Tensor type, its storage on a device, and the
// Backend interface: the small set of kernels the H-JEPA model needs. The CPU
// backend lives in tensor/cpu, the CUDA backend in cuda/.
package tensor

import (
	"fmt"
	"slices"
	"strings"
)

// DType is the element type of a tensor. The model computes in float32;
// int32 tensors carry index lists (kept patches, mask targets).
type DType uint8

const (
	Float32 DType = iota
	Int32
)

func (d DType) String() string {
	switch d {
	case Float32:
		return "float32"
	case Int32:
		return "int32"
	}
	return fmt.Sprintf("dtype(%d)", uint8(d))
}

// DeviceType says where a storage lives.
type DeviceType uint8

const (
	CPU DeviceType = iota
	CUDA
)

// Device names one device: CPU, or CUDA with an ordinal.
type Device struct {
	Type  DeviceType
	Index int
}

func (d Device) String() string {
	if d.Type == CUDA {
		return fmt.Sprintf("cuda:%d", d.Index)
	}
	return "cpu"
}

// Storage is a flat buffer of elements owned by one device. Backends define
// their own storage types; the CPU backend's is HostStorage.
type Storage interface {
	Device() Device
	DType() DType
	// Len is the number of elements.
	Len() int
}

// HostStorage is storage in ordinary Go memory. Exactly one of F32 and I32 is
// non-nil.
type HostStorage struct {
	F32 []float32
	I32 []int32
}

func (s *HostStorage) Device() Device { return Device{Type: CPU} }

func (s *HostStorage) DType() DType {
	if s.I32 != nil {
		return Int32
	}
	return Float32
}

func (s *HostStorage) Len() int {
	if s.I32 != nil {
		return len(s.I32)
	}
	return len(s.F32)
}

// Tensor is a dense, row-major view of Numel() elements starting at Offset in a
// storage. Views share storage: a parameter is a view into its arena, and an
// activation buffer is a view into a grow-only Workspace.
type Tensor struct {
	shape   []int
	storage Storage
	offset  int
}

// NewHost allocates a zeroed float32 tensor in Go memory.
func NewHost(shape ...int) *Tensor {
	n := numel(shape)
	return &Tensor{shape: cloneShape(shape), storage: &HostStorage{F32: make([]float32, n)}}
}

// FromFloat32s wraps data (not copied) as a tensor of the given shape.
func FromFloat32s(data []float32, shape ...int) *Tensor {
	if numel(shape) != len(data) {
		panic(fmt.Sprintf("tensor: %d values do not fill shape %v", len(data), shape))
	}
	if data == nil {
		data = []float32{}
	}
	return &Tensor{shape: cloneShape(shape), storage: &HostStorage{F32: data}}
}

// FromInt32s wraps data (not copied) as an int32 tensor of the given shape.
func FromInt32s(data []int32, shape ...int) *Tensor {
	if numel(shape) != len(data) {
		panic(fmt.Sprintf("tensor: %d values do not fill shape %v", len(data), shape))
	}
	if data == nil {
		data = []int32{}
	}
	return &Tensor{shape: cloneShape(shape), storage: &HostStorage{I32: data}}
}

// NewView makes a tensor of the given shape over storage s starting at offset.
// Backends use it to wrap their own storage types.
func NewView(s Storage, offset int, shape ...int) *Tensor {
	n := numel(shape)
	if offset < 0 || offset+n > s.Len() {
		panic(fmt.Sprintf("tensor: view [%d, %d) outside storage of %d elements", offset, offset+n, s.Len()))
	}
	return &Tensor{shape: cloneShape(shape), storage: s, offset: offset}
}

func (t *Tensor) Shape() []int     { return t.shape }
func (t *Tensor) Dim(i int) int    { return t.shape[i] }
func (t *Tensor) Rank() int        { return len(t.shape) }
func (t *Tensor) Numel() int       { return numel(t.shape) }
func (t *Tensor) Storage() Storage { return t.storage }
func (t *Tensor) Offset() int      { return t.offset }
func (t *Tensor) Device() Device   { return t.storage.Device() }
func (t *Tensor) DType() DType     { return t.storage.DType() }
func (t *Tensor) String() string {
	return fmt.Sprintf("Tensor(%s, %s, %v)", t.DType(), t.Device(), t.shape)
}

// Rows is the product of all dimensions but the last: a [B, N, D] tensor is
// B*N rows of D.
func (t *Tensor) Rows() int {
	if len(t.shape) == 0 {
		return 1
	}
	return numel(t.shape[:len(t.shape)-1])
}

// Cols is the last dimension (1 for a scalar).
func (t *Tensor) Cols() int {
	if len(t.shape) == 0 {
		return 1
	}
	return t.shape[len(t.shape)-1]
}

// View returns the sub-tensor of the given shape starting offset elements
// after this tensor's start. It shares storage.
func (t *Tensor) View(offset int, shape ...int) *Tensor {
	n := numel(shape)
	if offset < 0 || offset+n > t.Numel() {
		panic(fmt.Sprintf("tensor: view [%d, %d) outside %v", offset, offset+n, t.shape))
	}
	return &Tensor{shape: cloneShape(shape), storage: t.storage, offset: t.offset + offset}
}

// Reshape returns a view with the same elements and another shape.
func (t *Tensor) Reshape(shape ...int) *Tensor {
	if numel(shape) != t.Numel() {
		panic(fmt.Sprintf("tensor: cannot reshape %v to %v", t.shape, shape))
	}
	return &Tensor{shape: cloneShape(shape), storage: t.storage, offset: t.offset}
}

// F32 returns the tensor's elements for a float32 tensor in Go memory. It
// panics for other storage: only the CPU backend and tests call it.
func (t *Tensor) F32() []float32 {
	hs, ok := t.storage.(*HostStorage)
	if !ok || hs.F32 == nil {
		panic(fmt.Sprintf("tensor: F32 on %s", t))
	}
	return hs.F32[t.offset : t.offset+t.Numel() : t.offset+t.Numel()]
}

// I32 returns the elements of an int32 tensor in Go memory; see F32.
func (t *Tensor) I32() []int32 {
	hs, ok := t.storage.(*HostStorage)
	if !ok || hs.I32 == nil {
		panic(fmt.Sprintf("tensor: I32 on %s", t))
	}
	return hs.I32[t.offset : t.offset+t.Numel() : t.offset+t.Numel()]
}

// MustShape panics with name and both shapes when t is not of the given shape;
// kernels use it to reject mismatched arguments early.
func (t *Tensor) MustShape(name string, shape ...int) {
	if !slices.Equal(t.shape, shape) {
		panic(fmt.Sprintf("tensor: %s has shape %v, want %v", name, t.shape, shape))
	}
}

// ShapeString formats a shape as "[B, N, D]"-style text for error messages.
func ShapeString(shape []int) string {
	parts := make([]string, len(shape))
	for i, d := range shape {
		parts[i] = fmt.Sprint(d)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

func numel(shape []int) int {
	n := 1
	for _, d := range shape {
		if d < 0 {
			panic(fmt.Sprintf("tensor: negative dimension in %v", shape))
		}
		n *= d
	}
	return n
}

func cloneShape(s []int) []int { return append([]int(nil), s...) }
