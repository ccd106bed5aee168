package cuda

import (
	"fmt"
	"math"
	"runtime"
	"unsafe"

	"github.com/hjepa-go/hjepa/cuda/kernels"
)

// Options say where the libraries are and how GEMMs may round.
type Options struct {
	// LibCUDA and LibCUBLAS are library paths; empty searches the usual
	// places (HJEPA_LIBCUDA and HJEPA_CUBLAS override the search).
	LibCUDA, LibCUBLAS string
	// TF32 lets cuBLAS round FP32 GEMM inputs to TF32 on tensor cores
	// (CUBLAS_TF32_TENSOR_OP_MATH): faster on A100/H100, ~1e-3 relative error.
	TF32 bool
}

// deviceDriver is Driver on a real GPU: libcuda's primary context of one
// device, one stream, the embedded PTX module and a cuBLAS handle bound to
// the stream.
type deviceDriver struct {
	cu      *libCUDA
	blas    *libCUBLAS
	ordinal int
	dev     int32
	ctx     uintptr
	stream  uintptr
	module  uintptr
	handle  uintptr
	funcs   map[string]uintptr
	name    string

	// Device and host arrays of matrix pointers for cublasSgemmBatched.
	ptrArray    DevicePtr
	ptrArrayCap int
	hostPtrs    []DevicePtr
}

var _ Driver = (*deviceDriver)(nil)

// OpenDriver opens GPU ordinal (as CUDA numbers the visible devices), loads
// the kernels and cuBLAS, and checks that the GPU can run them.
func OpenDriver(ordinal int, o Options) (Driver, error) {
	cu, err := loadLibCUDA(o.LibCUDA)
	if err != nil {
		return nil, err
	}
	var count int32
	if err := cu.check("cuDeviceGetCount", cu.cuDeviceGetCount(&count)); err != nil {
		return nil, err
	}
	if ordinal < 0 || ordinal >= int(count) {
		return nil, fmt.Errorf("device cuda:%d requested but %d CUDA device(s) are visible (CUDA_VISIBLE_DEVICES renumbers them from 0)", ordinal, count)
	}
	d := &deviceDriver{cu: cu, ordinal: ordinal, funcs: map[string]uintptr{}}
	if err := cu.check("cuDeviceGet", cu.cuDeviceGet(&d.dev, int32(ordinal))); err != nil {
		return nil, err
	}
	info, err := cu.deviceInfo(d.dev)
	if err != nil {
		return nil, err
	}
	if cc := info.Major*10 + info.Minor; cc < MinComputeCapability {
		return nil, fmt.Errorf("cuda:%d is %s with compute capability %d.%d; the embedded kernels target compute_80 (A100, H100, H200 or newer)", ordinal, info.Name, info.Major, info.Minor)
	}
	d.name = fmt.Sprintf("%s, sm_%d%d, %.0f GiB, driver %s", info.Name, info.Major, info.Minor, float64(info.TotalMemory)/(1<<30), versionString(cu.driverVersion))
	if err := cu.check("cuDevicePrimaryCtxRetain", cu.cuDevicePrimaryCtxRet(&d.ctx, d.dev)); err != nil {
		return nil, err
	}
	fail := func(err error) (Driver, error) {
		d.Close()
		return nil, err
	}
	defer lockThread()()
	if err := d.current(); err != nil {
		return fail(err)
	}
	if err := cu.check("cuStreamCreate", cu.cuStreamCreate(&d.stream, 1 /* CU_STREAM_NON_BLOCKING */)); err != nil {
		return fail(err)
	}
	if err := d.loadModule(kernels.PTX); err != nil {
		return fail(err)
	}
	blas, err := loadCUBLAS(o.LibCUBLAS)
	if err != nil {
		return fail(err)
	}
	d.blas = blas
	if err := blas.check("cublasCreate", blas.create(&d.handle)); err != nil {
		return fail(fmt.Errorf("%w (%s)", err, blas.path))
	}
	if err := blas.check("cublasSetStream", blas.setStream(d.handle, d.stream)); err != nil {
		return fail(err)
	}
	mode := int32(cublasDefaultMath)
	if o.TF32 {
		mode = cublasTF32TensorOpMath
	}
	if err := blas.check("cublasSetMathMode", blas.setMathMode(d.handle, mode)); err != nil {
		return fail(err)
	}
	var v int32
	if blas.getVersion(d.handle, &v) == 0 {
		d.name += fmt.Sprintf(", cuBLAS %d.%d", v/10000, (v/100)%100)
	}
	if o.TF32 {
		d.name += ", TF32"
	}
	return d, nil
}

// loadModule JIT-compiles the PTX, keeping the JIT's error log for the
// message when it fails.
func (d *deviceDriver) loadModule(ptx string) error {
	img := cBytes(ptx)
	logBuf := make([]byte, 8192)
	opts := []int32{jitErrorLogBuffer, jitErrorLogBufferSize}
	vals := []uintptr{uintptr(unsafe.Pointer(&logBuf[0])), uintptr(len(logBuf))}
	r := d.cu.cuModuleLoadDataEx(&d.module, unsafe.Pointer(&img[0]), uint32(len(opts)), &opts[0], &vals[0])
	keepAlive(img, logBuf, opts, vals)
	if r != 0 {
		log := cString(&logBuf[0])
		return fmt.Errorf("loading the embedded PTX on cuda:%d (%s): %s; JIT log: %s", d.ordinal, d.name, d.cu.errorText(r), log)
	}
	return nil
}

// current makes the device's context current on this OS thread. Goroutines
// move between threads, so every entry point first pins its goroutine to its
// thread (lockThread) and then calls current (a thread-local store): without
// the pin the scheduler could move the goroutine between cuCtxSetCurrent and
// the call that needs the context.
func (d *deviceDriver) current() error {
	return d.cu.check("cuCtxSetCurrent", d.cu.cuCtxSetCurrent(d.ctx))
}

// lockThread pins the calling goroutine to its OS thread until the returned
// function runs (use: defer lockThread()()). Pins nest.
func lockThread() func() {
	runtime.LockOSThread()
	return runtime.UnlockOSThread
}

func (d *deviceDriver) Name() string { return d.name }

func (d *deviceDriver) Alloc(bytes int) (DevicePtr, error) {
	defer lockThread()()
	if err := d.current(); err != nil {
		return 0, err
	}
	var p DevicePtr
	err := d.cu.check(fmt.Sprintf("cuMemAlloc(%d bytes)", bytes), d.cu.cuMemAlloc(&p, uint64(bytes)))
	return p, err
}

func (d *deviceDriver) Free(p DevicePtr) error {
	defer lockThread()()
	if err := d.current(); err != nil {
		return err
	}
	return d.cu.check("cuMemFree", d.cu.cuMemFree(p))
}

func (d *deviceDriver) Memset32(p DevicePtr, v uint32, n int) error {
	if n == 0 {
		return nil
	}
	defer lockThread()()
	if err := d.current(); err != nil {
		return err
	}
	return d.cu.check("cuMemsetD32Async", d.cu.cuMemsetD32Async(p, v, uint64(n), d.stream))
}

// CopyHtoD copies from pageable memory, which the driver stages before it
// returns, so src may be reused at once while the copy stays stream-ordered.
func (d *deviceDriver) CopyHtoD(dst DevicePtr, src unsafe.Pointer, bytes int) error {
	if bytes == 0 {
		return nil
	}
	defer lockThread()()
	if err := d.current(); err != nil {
		return err
	}
	return d.cu.check("cuMemcpyHtoDAsync", d.cu.cuMemcpyHtoDAsync(dst, src, uint64(bytes), d.stream))
}

func (d *deviceDriver) CopyDtoH(dst unsafe.Pointer, src DevicePtr, bytes int) error {
	defer lockThread()()
	if err := d.current(); err != nil {
		return err
	}
	if bytes > 0 {
		if err := d.cu.check("cuMemcpyDtoHAsync", d.cu.cuMemcpyDtoHAsync(dst, src, uint64(bytes), d.stream)); err != nil {
			return err
		}
	}
	return d.cu.check("cuStreamSynchronize", d.cu.cuStreamSynchronize(d.stream))
}

func (d *deviceDriver) CopyDtoD(dst, src DevicePtr, bytes int) error {
	if bytes == 0 {
		return nil
	}
	defer lockThread()()
	if err := d.current(); err != nil {
		return err
	}
	return d.cu.check("cuMemcpyDtoDAsync", d.cu.cuMemcpyDtoDAsync(dst, src, uint64(bytes), d.stream))
}

func (d *deviceDriver) function(name string) (uintptr, error) {
	if f, ok := d.funcs[name]; ok {
		return f, nil
	}
	var f uintptr
	cname := cBytes(name)
	r := d.cu.cuModuleGetFunction(&f, d.module, &cname[0])
	keepAlive(cname)
	if err := d.cu.check("cuModuleGetFunction("+name+")", r); err != nil {
		return 0, err
	}
	d.funcs[name] = f
	return f, nil
}

// Launch packs each argument into an 8-byte slot and passes the slots'
// addresses as cuLaunchKernel's kernelParams; the driver copies the values
// before it returns.
func (d *deviceDriver) Launch(kernel string, grid, block Dim3, sharedBytes int, args ...any) error {
	defer lockThread()()
	if err := d.current(); err != nil {
		return err
	}
	f, err := d.function(kernel)
	if err != nil {
		return err
	}
	slots, err := packArgs(kernel, args)
	if err != nil {
		return err
	}
	params := make([]unsafe.Pointer, len(slots))
	for i := range slots {
		params[i] = unsafe.Pointer(&slots[i])
	}
	var pp *unsafe.Pointer
	if len(params) > 0 {
		pp = &params[0]
	}
	r := d.cu.cuLaunchKernel(f, grid.X, grid.Y, grid.Z, block.X, block.Y, block.Z, uint32(sharedBytes), d.stream, pp, nil)
	keepAlive(slots, params)
	return d.cu.check(fmt.Sprintf("cuLaunchKernel(%s, grid %v, block %v)", kernel, grid, block), r)
}

// packArgs stores each kernel argument little-endian in the low bytes of a
// 64-bit slot, which is where the kernel reads a 4- or 8-byte parameter.
func packArgs(kernel string, args []any) ([]uint64, error) {
	slots := make([]uint64, len(args))
	for i, a := range args {
		switch v := a.(type) {
		case DevicePtr:
			slots[i] = uint64(v)
		case int32:
			slots[i] = uint64(uint32(v))
		case int64:
			slots[i] = uint64(v)
		case uint64:
			slots[i] = v
		case uint32:
			slots[i] = uint64(v)
		case float32:
			slots[i] = uint64(math.Float32bits(v))
		case float64:
			slots[i] = math.Float64bits(v)
		default:
			return nil, fmt.Errorf("launch %s: argument %d has Go type %T; want DevicePtr, int32, int64, uint64, float32 or float64", kernel, i, a)
		}
	}
	return slots, nil
}

func (d *deviceDriver) Sgemm(p SgemmParams) error {
	if p.Batch <= 0 || p.M == 0 || p.N == 0 {
		return nil
	}
	defer lockThread()()
	if err := d.current(); err != nil {
		return err
	}
	for _, v := range []int{p.M, p.N, p.K, p.Lda, p.Ldb, p.Ldc, p.Batch} {
		if v > math.MaxInt32 {
			return fmt.Errorf("sgemm: size %d exceeds cuBLAS's 32-bit arguments", v)
		}
	}
	ta, tb := int32(cublasOpN), int32(cublasOpN)
	if p.TransA {
		ta = cublasOpT
	}
	if p.TransB {
		tb = cublasOpT
	}
	alpha, beta := p.Alpha, p.Beta
	if p.Batch == 1 {
		s := d.blas.sgemm(d.handle, ta, tb, int32(p.M), int32(p.N), int32(p.K), &alpha, p.A, int32(p.Lda), p.B, int32(p.Ldb), &beta, p.C, int32(p.Ldc))
		return d.blas.check("cublasSgemm", s)
	}
	// Three arrays of Batch pointers, uploaded stream-ordered after any
	// earlier batched GEMM that still reads the previous arrays.
	n := 3 * p.Batch
	if n > d.ptrArrayCap {
		if d.ptrArray != 0 {
			if err := d.Sync(); err != nil {
				return err
			}
			_ = d.Free(d.ptrArray)
		}
		ptr, err := d.Alloc(8 * n)
		if err != nil {
			return err
		}
		d.ptrArray, d.ptrArrayCap = ptr, n
	}
	if cap(d.hostPtrs) < n {
		d.hostPtrs = make([]DevicePtr, n)
	}
	h := d.hostPtrs[:n]
	for i := 0; i < p.Batch; i++ {
		h[i] = p.A.Add(4 * int(int64(i)*p.StrideA))
		h[p.Batch+i] = p.B.Add(4 * int(int64(i)*p.StrideB))
		h[2*p.Batch+i] = p.C.Add(4 * int(int64(i)*p.StrideC))
	}
	if err := d.CopyHtoD(d.ptrArray, unsafe.Pointer(&h[0]), 8*n); err != nil {
		return err
	}
	a, b, c := d.ptrArray, d.ptrArray.Add(8*p.Batch), d.ptrArray.Add(16*p.Batch)
	s := d.blas.sgemmBatch(d.handle, ta, tb, int32(p.M), int32(p.N), int32(p.K), &alpha, a, int32(p.Lda), b, int32(p.Ldb), &beta, c, int32(p.Ldc), int32(p.Batch))
	return d.blas.check("cublasSgemmBatched", s)
}

func (d *deviceDriver) Sync() error {
	defer lockThread()()
	if err := d.current(); err != nil {
		return err
	}
	return d.cu.check("cuStreamSynchronize", d.cu.cuStreamSynchronize(d.stream))
}

// MemInfo returns the device's free and total memory in bytes.
func (d *deviceDriver) MemInfo() (free, total uint64, err error) {
	defer lockThread()()
	if err := d.current(); err != nil {
		return 0, 0, err
	}
	err = d.cu.check("cuMemGetInfo", d.cu.cuMemGetInfo(&free, &total))
	return free, total, err
}

func (d *deviceDriver) Close() error {
	if d.ctx == 0 {
		return nil
	}
	defer lockThread()()
	_ = d.current()
	if d.stream != 0 {
		d.cu.cuStreamSynchronize(d.stream)
	}
	if d.handle != 0 {
		d.blas.destroy(d.handle)
	}
	if d.ptrArray != 0 {
		d.cu.cuMemFree(d.ptrArray)
	}
	if d.module != 0 {
		d.cu.cuModuleUnload(d.module)
	}
	if d.stream != 0 {
		d.cu.cuStreamDestroy(d.stream)
	}
	err := d.cu.check("cuDevicePrimaryCtxRelease", d.cu.cuDevicePrimaryCtxRel(d.dev))
	d.ctx, d.stream, d.module, d.handle, d.ptrArray = 0, 0, 0, 0, 0
	return err
}

// Open opens GPU ordinal as a tensor.Backend: the driver (libcuda, the
// embedded PTX, cuBLAS) and the backend's allocator on top of it.
func Open(ordinal int, o Options) (*Backend, error) {
	d, err := OpenDriver(ordinal, o)
	if err != nil {
		return nil, err
	}
	b, err := NewBackend(d, ordinal)
	if err != nil {
		d.Close()
		return nil, err
	}
	return b, nil
}
