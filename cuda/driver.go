// Package cuda is the NVIDIA GPU implementation of tensor.Backend. Nothing
// here links against CUDA: libcuda.so.1 and cuBLAS are opened at run time
// (purego's dlopen), so every binary builds with CGO_ENABLED=0 and runs on
// machines without a GPU, where Open returns an error that says what is
// missing.
//
// The backend is written against Driver, the few device operations it needs
// (memory, copies, kernel launches on one stream, a column-major SGEMM). The
// real driver is libcuda + cuBLAS; cuda/emu implements the same interface on
// the host by compiling the very same kernel source as C++, so the backend's
// launch geometry, argument marshalling and kernel logic are tested in CI
// without a GPU.
package cuda

import "unsafe"

// DevicePtr is a device address (CUdeviceptr). Zero is the null pointer; the
// kernels treat a zero optional argument (a LayerNorm without affine weights,
// a loss without a gradient) as absent.
type DevicePtr uint64

// Add returns p advanced by n bytes.
func (p DevicePtr) Add(n int) DevicePtr { return p + DevicePtr(n) }

// Dim3 is a CUDA grid or block shape.
type Dim3 struct{ X, Y, Z uint32 }

// Driver is one device and one stream. Work is queued in call order; the
// copies to the host and Sync wait for queued work. Implementations need not
// be safe for concurrent use.
type Driver interface {
	// Name describes the device, e.g. "NVIDIA H100 80GB HBM3 (sm_90, driver 12.4)".
	Name() string
	// Alloc returns bytes of uninitialised device memory (bytes > 0).
	Alloc(bytes int) (DevicePtr, error)
	Free(p DevicePtr) error
	// Memset32 sets n 32-bit words at p to v.
	Memset32(p DevicePtr, v uint32, n int) error
	// CopyHtoD copies bytes from host memory; src may be reused when it returns.
	CopyHtoD(dst DevicePtr, src unsafe.Pointer, bytes int) error
	// CopyDtoH waits for queued work, then copies bytes to host memory.
	CopyDtoH(dst unsafe.Pointer, src DevicePtr, bytes int) error
	CopyDtoD(dst, src DevicePtr, bytes int) error
	// Launch queues kernel (an extern "C" name in cuda/kernels/hjepa.cu) with
	// the given arguments, each one of DevicePtr (a T* parameter), int32
	// (int), int64 (long long), uint64 (unsigned long long), float32 (float)
	// or float64 (double), in the kernel's parameter order.
	Launch(kernel string, grid, block Dim3, sharedBytes int, args ...any) error
	// Sgemm queues a strided-batched single-precision GEMM with cuBLAS's
	// column-major semantics (cublasSgemmStridedBatched).
	Sgemm(p SgemmParams) error
	// Sync waits for queued work and returns the first asynchronous error.
	Sync() error
	// Close releases the device; the driver must not be used afterwards.
	Close() error
}

// SgemmParams are the arguments of cublasSgemmStridedBatched: column-major
//
//	C_i = Alpha * op(A_i) op(B_i) + Beta * C_i,  i in [0, Batch),
//
// op(A_i) [M, K], op(B_i) [K, N], C_i [M, N] with leading dimension Ldc;
// TransA means A_i is stored [K, M] (CUBLAS_OP_T), likewise TransB.
type SgemmParams struct {
	TransA, TransB bool
	M, N, K        int
	Alpha, Beta    float32
	A              DevicePtr
	Lda            int
	StrideA        int64
	B              DevicePtr
	Ldb            int
	StrideB        int64
	C              DevicePtr
	Ldc            int
	StrideC        int64
	Batch          int
}
