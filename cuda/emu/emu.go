package emu

/*
#cgo CXXFLAGS: -std=c++17 -O2 -fno-strict-aliasing -I${SRCDIR}/../kernels
#cgo LDFLAGS: -lstdc++
#include <stdlib.h>
#include "emu_api.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"unsafe"

	"github.com/hjepa-go/hjepa/cuda"
	"github.com/hjepa-go/hjepa/cuda/kernels"
)

// emu.cc includes ../kernels/hjepa.cu and emu.h, which the go command does
// not hash for this package; depending on their embedded copies makes it
// rebuild the emulator when they change.
var _ = len(kernels.Source) + len(kernels.EmuHeader)

const (
	maxArgs   = 32
	errBytes  = 1024
	alignment = 256 // cuMemAlloc's alignment
)

var errClosed = errors.New("emu: driver is closed")

// Driver is an emulated device. Like a real stream it must be used by one
// goroutine at a time; launches of different drivers are serialised.
type Driver struct {
	allocs  map[cuda.DevicePtr]int // live allocations: base -> bytes
	bases   []cuda.DevicePtr       // sorted bases of allocs
	slots   *C.uint64_t            // launch arguments, C memory
	codes   *C.char                // their type letters
	errBuf  *C.char
	names   map[string]*C.char
	reverse bool
	closed  bool

	// limit, when > 0, is the emulated device's memory in bytes; used is
	// what its live allocations take (rounded up to the alignment).
	limit, used int64
	// tenant bytes are taken by "another process" right after the first
	// MemInfo (SetTenant).
	tenant int64
}

var _ cuda.Driver = (*Driver)(nil)

// New returns an emulated device with no allocations.
func New() *Driver {
	return &Driver{
		allocs: map[cuda.DevicePtr]int{},
		slots:  (*C.uint64_t)(C.calloc(maxArgs, 8)),
		codes:  (*C.char)(C.calloc(maxArgs+1, 1)),
		errBuf: (*C.char)(C.calloc(errBytes, 1)),
		names:  map[string]*C.char{},
	}
}

// SetReverseThreadOrder makes the warps of each block, and the lanes of
// each warp, run in reverse order between barriers. Correct kernels give the same results either way;
// a kernel that reads shared memory written by another thread without a
// barrier in between does not.
func (d *Driver) SetReverseThreadOrder(reverse bool) { d.reverse = reverse }

// SetMemoryLimit gives the emulated device bytes of memory (0: as much as
// the host has): an Alloc beyond it fails as cuMemAlloc does when the GPU is
// full, and MemInfo reports it.
func (d *Driver) SetMemoryLimit(bytes int64) { d.limit = max(bytes, 0) }

// SetTenant makes another process take bytes of the device right after
// the first MemInfo: a shared GPU whose memory is taken between a program's
// resource check and the allocations it checked, so that the allocations
// fail although the check passed.
func (d *Driver) SetTenant(bytes int64) { d.tenant = max(bytes, 0) }

// MemInfo returns the free and total bytes of a device with a memory limit
// (SetMemoryLimit), as cuMemGetInfo does; without one it is an error.
func (d *Driver) MemInfo() (free, total uint64, err error) {
	if d.closed {
		return 0, 0, errClosed
	}
	if d.limit == 0 {
		return 0, 0, errors.New("emu: the emulated device has no memory limit (SetMemoryLimit)")
	}
	free = uint64(max(d.limit-d.used, 0))
	d.used += d.tenant // taken after this answer (SetTenant)
	d.tenant = 0
	return free, uint64(d.limit), nil
}

// Kernels lists the kernels the emulator can launch: those of hjepa.cu and
// its own self-test kernels (named emutest_*).
func Kernels() []string {
	n := int(C.hjepa_emu_kernel_count())
	names := make([]string, n)
	for i := range names {
		names[i] = C.GoString(C.hjepa_emu_kernel_name(C.int(i)))
	}
	return names
}

func (d *Driver) Name() string { return "host emulator (cuda/emu)" }

func (d *Driver) Alloc(bytes int) (cuda.DevicePtr, error) {
	if d.closed {
		return 0, errClosed
	}
	if bytes <= 0 {
		return 0, fmt.Errorf("emu: Alloc of %d bytes", bytes)
	}
	size := alignedSize(bytes)
	if d.limit > 0 && d.used+int64(size) > d.limit {
		return 0, fmt.Errorf("emu: CUDA_ERROR_OUT_OF_MEMORY: %d bytes requested with %d of the device's %d bytes in use", bytes, d.used, d.limit)
	}
	dp := cuda.DevicePtr(C.hjepa_emu_alloc(C.longlong(size), alignment))
	if dp == 0 {
		return 0, fmt.Errorf("emu: out of host memory allocating %d bytes", bytes)
	}
	// Uninitialised device memory: NaN floats, -1 ints.
	C.hjepa_emu_memset32(C.uintptr_t(dp), 0xffffffff, C.longlong(size/4))
	d.allocs[dp] = bytes
	d.used += int64(size)
	i, _ := slices.BinarySearch(d.bases, dp)
	d.bases = slices.Insert(d.bases, i, dp)
	return dp, nil
}

func (d *Driver) Free(p cuda.DevicePtr) error {
	if d.closed {
		return errClosed
	}
	bytes, ok := d.allocs[p]
	if !ok {
		return fmt.Errorf("emu: Free(%#x): not an allocation", uint64(p))
	}
	d.used -= int64(alignedSize(bytes))
	delete(d.allocs, p)
	i, _ := slices.BinarySearch(d.bases, p)
	d.bases = slices.Delete(d.bases, i, i+1)
	C.hjepa_emu_free(C.uintptr_t(p))
	return nil
}

// alignedSize is an allocation's size on the device.
func alignedSize(bytes int) int { return (bytes + alignment - 1) / alignment * alignment }

// check returns an error unless [p, p+bytes) lies in one live allocation.
func (d *Driver) check(what string, p cuda.DevicePtr, bytes int) error {
	i, found := slices.BinarySearch(d.bases, p)
	if !found {
		i--
	}
	if i >= 0 {
		base := d.bases[i]
		if p >= base && uint64(p-base)+uint64(bytes) <= uint64(d.allocs[base]) {
			return nil
		}
	}
	return fmt.Errorf("emu: %s: [%#x, +%d bytes) is not inside a live allocation", what, uint64(p), bytes)
}

func (d *Driver) Memset32(p cuda.DevicePtr, v uint32, n int) error {
	if d.closed {
		return errClosed
	}
	if err := d.check("Memset32", p, 4*n); err != nil {
		return err
	}
	C.hjepa_emu_memset32(C.uintptr_t(p), C.uint32_t(v), C.longlong(n))
	return nil
}

func (d *Driver) CopyHtoD(dst cuda.DevicePtr, src unsafe.Pointer, bytes int) error {
	if d.closed {
		return errClosed
	}
	if err := d.check("CopyHtoD", dst, bytes); err != nil {
		return err
	}
	C.hjepa_emu_copy_from_host(C.uintptr_t(dst), src, C.longlong(bytes))
	return nil
}

func (d *Driver) CopyDtoH(dst unsafe.Pointer, src cuda.DevicePtr, bytes int) error {
	if d.closed {
		return errClosed
	}
	if err := d.check("CopyDtoH", src, bytes); err != nil {
		return err
	}
	C.hjepa_emu_copy_to_host(dst, C.uintptr_t(src), C.longlong(bytes))
	return nil
}

func (d *Driver) CopyDtoD(dst, src cuda.DevicePtr, bytes int) error {
	if d.closed {
		return errClosed
	}
	if err := d.check("CopyDtoD dst", dst, bytes); err != nil {
		return err
	}
	if err := d.check("CopyDtoD src", src, bytes); err != nil {
		return err
	}
	C.hjepa_emu_copy(C.uintptr_t(dst), C.uintptr_t(src), C.longlong(bytes))
	return nil
}

// Launch runs the kernel to completion. The arguments are copied into C
// memory (one 8-byte slot each, with a type letter) so that no Go pointer
// reaches C.
func (d *Driver) Launch(kernel string, grid, block cuda.Dim3, sharedBytes int, args ...any) error {
	if d.closed {
		return errClosed
	}
	if len(args) > maxArgs {
		return fmt.Errorf("emu: launch %s: %d arguments, at most %d", kernel, len(args), maxArgs)
	}
	slots := unsafe.Slice((*uint64)(unsafe.Pointer(d.slots)), maxArgs)
	codes := unsafe.Slice((*byte)(unsafe.Pointer(d.codes)), maxArgs+1)
	for i, a := range args {
		switch v := a.(type) {
		case cuda.DevicePtr:
			if v != 0 {
				if err := d.check(fmt.Sprintf("launch %s argument %d", kernel, i), v, 0); err != nil {
					return err
				}
			}
			codes[i], slots[i] = 'P', uint64(v)
		case int32:
			codes[i], slots[i] = 'i', uint64(uint32(v))
		case int64:
			codes[i], slots[i] = 'l', uint64(v)
		case uint64:
			codes[i], slots[i] = 'u', v
		case float32:
			codes[i], slots[i] = 'f', uint64(math.Float32bits(v))
		case float64:
			codes[i], slots[i] = 'd', math.Float64bits(v)
		default:
			return fmt.Errorf("emu: launch %s: argument %d has type %T, want DevicePtr, int32, int64, uint64, float32 or float64", kernel, i, a)
		}
	}
	codes[len(args)] = 0
	name, ok := d.names[kernel]
	if !ok {
		name = C.CString(kernel)
		d.names[kernel] = name
	}
	rev := C.int(0)
	if d.reverse {
		rev = 1
	}
	rc := C.hjepa_emu_launch(name, C.uint(grid.X), C.uint(grid.Y), C.uint(grid.Z), C.uint(block.X), C.uint(block.Y), C.uint(block.Z),
		C.int(sharedBytes), C.int(len(args)), d.codes, d.slots, rev, d.errBuf, errBytes)
	if rc != 0 {
		return fmt.Errorf("emu: launch %s grid %v block %v: %s", kernel, grid, block, C.GoString(d.errBuf))
	}
	return nil
}

// Sgemm checks p as cuBLAS does, checks that every operand fits in its
// allocation, and runs the GEMM.
func (d *Driver) Sgemm(p cuda.SgemmParams) error {
	if d.closed {
		return errClosed
	}
	rowsA, rowsB := p.M, p.K // column-major: op(A) is [M, K]
	colsA, colsB := p.K, p.N
	if p.TransA {
		rowsA, colsA = p.K, p.M
	}
	if p.TransB {
		rowsB, colsB = p.N, p.K
	}
	var bad []string
	if p.M < 0 || p.N < 0 || p.K < 0 || p.Batch < 0 {
		bad = append(bad, "negative size")
	}
	if p.Lda < max(1, rowsA) {
		bad = append(bad, fmt.Sprintf("lda %d < %d", p.Lda, max(1, rowsA)))
	}
	if p.Ldb < max(1, rowsB) {
		bad = append(bad, fmt.Sprintf("ldb %d < %d", p.Ldb, max(1, rowsB)))
	}
	if p.Ldc < max(1, p.M) {
		bad = append(bad, fmt.Sprintf("ldc %d < %d", p.Ldc, max(1, p.M)))
	}
	if len(bad) > 0 {
		return fmt.Errorf("emu: Sgemm %+v: CUBLAS_STATUS_INVALID_VALUE (%s)", p, strings.Join(bad, ", "))
	}
	if p.M == 0 || p.N == 0 || p.Batch == 0 {
		return nil
	}
	extent := func(rows, cols, ld int, stride int64) int {
		return 4 * int(int64(p.Batch-1)*stride+int64((cols-1)*ld+rows))
	}
	if p.K > 0 {
		if err := d.check("Sgemm A", p.A, extent(rowsA, colsA, p.Lda, p.StrideA)); err != nil {
			return err
		}
		if err := d.check("Sgemm B", p.B, extent(rowsB, colsB, p.Ldb, p.StrideB)); err != nil {
			return err
		}
	}
	if err := d.check("Sgemm C", p.C, extent(p.M, p.N, p.Ldc, p.StrideC)); err != nil {
		return err
	}
	C.hjepa_emu_sgemm(cbool(p.TransA), cbool(p.TransB), C.int(p.M), C.int(p.N), C.int(p.K), C.float(p.Alpha),
		C.uintptr_t(p.A), C.int(p.Lda), C.longlong(p.StrideA), C.uintptr_t(p.B), C.int(p.Ldb), C.longlong(p.StrideB),
		C.float(p.Beta), C.uintptr_t(p.C), C.int(p.Ldc), C.longlong(p.StrideC), C.int(p.Batch))
	return nil
}

func cbool(b bool) C.int {
	if b {
		return 1
	}
	return 0
}

// Sync returns nil: the emulator runs every call to completion.
func (d *Driver) Sync() error {
	if d.closed {
		return errClosed
	}
	return nil
}

// Close frees every allocation, as destroying a CUDA context does.
func (d *Driver) Close() error {
	if d.closed {
		return errClosed
	}
	d.closed = true
	for p := range d.allocs {
		C.hjepa_emu_free(C.uintptr_t(p))
	}
	d.allocs, d.bases = nil, nil
	for _, n := range d.names {
		C.free(unsafe.Pointer(n))
	}
	C.free(unsafe.Pointer(d.slots))
	C.free(unsafe.Pointer(d.codes))
	C.free(unsafe.Pointer(d.errBuf))
	return nil
}
