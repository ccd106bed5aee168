package cuda

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"unsafe"

	"github.com/ebitengine/purego"
)

// MinDriverVersion is the oldest CUDA driver API version (cuDriverGetVersion,
// 1000*major + 10*minor) that JIT-compiles the embedded PTX: it is written by
// nvcc 11.8 (PTX ISA 7.8), which R520 drivers and newer accept.
const MinDriverVersion = 11080

// MinComputeCapability is the oldest GPU architecture the PTX targets
// (compute_80: A100, and through the JIT H100/H200 and newer).
const MinComputeCapability = 80

// cuResult is a CUresult; 0 is CUDA_SUCCESS.
type cuResult int32

const (
	cudaErrorNoDevice cuResult = 100
	// Device attributes (CUdevice_attribute) read by the driver.
	attrComputeCapabilityMajor = 75
	attrComputeCapabilityMinor = 76
	// cuModuleLoadDataEx JIT options.
	jitErrorLogBuffer     = 5
	jitErrorLogBufferSize = 6
)

// libCUDA is libcuda.so.1's driver API, opened once per process.
type libCUDA struct {
	path string

	cuInit                func(flags uint32) cuResult
	cuDriverGetVersion    func(v *int32) cuResult
	cuGetErrorName        func(r cuResult, s **byte) cuResult
	cuGetErrorString      func(r cuResult, s **byte) cuResult
	cuDeviceGetCount      func(n *int32) cuResult
	cuDeviceGet           func(dev *int32, ordinal int32) cuResult
	cuDeviceGetName       func(name *byte, n int32, dev int32) cuResult
	cuDeviceGetAttribute  func(v *int32, attr int32, dev int32) cuResult
	cuDeviceTotalMem      func(bytes *uint64, dev int32) cuResult
	cuDeviceGetUuid       func(uuid *[16]byte, dev int32) cuResult
	cuDevicePrimaryCtxRet func(ctx *uintptr, dev int32) cuResult
	cuDevicePrimaryCtxRel func(dev int32) cuResult
	cuCtxSetCurrent       func(ctx uintptr) cuResult
	cuMemGetInfo          func(free, total *uint64) cuResult
	cuStreamCreate        func(s *uintptr, flags uint32) cuResult
	cuStreamDestroy       func(s uintptr) cuResult
	cuStreamSynchronize   func(s uintptr) cuResult
	cuMemAlloc            func(p *DevicePtr, bytes uint64) cuResult
	cuMemFree             func(p DevicePtr) cuResult
	cuMemsetD32Async      func(p DevicePtr, v uint32, n uint64, s uintptr) cuResult
	cuMemcpyHtoDAsync     func(dst DevicePtr, src unsafe.Pointer, bytes uint64, s uintptr) cuResult
	cuMemcpyDtoHAsync     func(dst unsafe.Pointer, src DevicePtr, bytes uint64, s uintptr) cuResult
	cuMemcpyDtoDAsync     func(dst, src DevicePtr, bytes uint64, s uintptr) cuResult
	cuModuleLoadDataEx    func(m *uintptr, image unsafe.Pointer, n uint32, opts *int32, vals *uintptr) cuResult
	cuModuleUnload        func(m uintptr) cuResult
	cuModuleGetFunction   func(f *uintptr, m uintptr, name *byte) cuResult
	cuLaunchKernel        func(f uintptr, gx, gy, gz, bx, by, bz, shared uint32, s uintptr, params *unsafe.Pointer, extra unsafe.Pointer) cuResult
	driverVersion         int32
	initErr               error
	initOnce              sync.Once
	missing               []string
}

// libcudaCandidates are tried in order when no path is given: the loader's
// search path first, then where distributions and the NVIDIA container
// toolkit put the driver.
var libcudaCandidates = []string{
	"libcuda.so.1",
	"/usr/lib/x86_64-linux-gnu/libcuda.so.1",
	"/usr/lib64/libcuda.so.1",
	"/usr/local/nvidia/lib64/libcuda.so.1",
	"/usr/lib/wsl/lib/libcuda.so.1",
}

var (
	defaultLibCUDA     *libCUDA
	defaultLibCUDAErr  error
	defaultLibCUDAOnce sync.Once
)

// loadLibCUDA opens the driver library at path, or the first of the usual
// places when path is empty (HJEPA_LIBCUDA overrides both), checks its version
// and calls cuInit. The default library is opened once per process. When the
// library loads but cuInit or the version check fails, the library comes
// back with the error; it must not be used for anything but its version.
func loadLibCUDA(path string) (*libCUDA, error) {
	if env := os.Getenv("HJEPA_LIBCUDA"); path == "" && env != "" {
		path = env
	}
	if path != "" {
		return openLibCUDA([]string{path})
	}
	defaultLibCUDAOnce.Do(func() { defaultLibCUDA, defaultLibCUDAErr = openLibCUDA(libcudaCandidates) })
	return defaultLibCUDA, defaultLibCUDAErr
}

func openLibCUDA(candidates []string) (*libCUDA, error) {
	var tried []string
	for _, p := range candidates {
		h, err := dlopen(p)
		if err != nil {
			tried = append(tried, fmt.Sprintf("%s (%v)", p, trimDlerror(err)))
			continue
		}
		l := &libCUDA{path: p}
		if err := l.bind(h); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		// On a failed init l is returned with the error: it still knows the
		// driver's version (discovery reports it with zero devices).
		return l, l.init()
	}
	return nil, fmt.Errorf("%w: libcuda.so.1 could not be opened (tried %s); install the NVIDIA driver (R520 or newer), "+
		"run the container with the NVIDIA container toolkit (--gpus), or set HJEPA_LIBCUDA to the library's path", ErrNoDriver, strings.Join(tried, ", "))
}

// dlopen opens a shared library with the OS thread locked: purego reads
// dlerror, which is per thread, after dlopen fails, and a goroutine moved to
// another thread in between reads an empty message.
func dlopen(path string) (uintptr, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return purego.Dlopen(path, purego.RTLD_NOW|purego.RTLD_GLOBAL)
}

// trimDlerror keeps dlerror's message short: purego prefixes nothing useful.
func trimDlerror(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 && strings.Contains(s, "cannot open shared object") {
		return s[i+2:]
	}
	return s
}

// bind resolves every driver entry point the backend uses, first the four it
// needs to report a version or an error, so that an old driver is named as
// such rather than as a missing symbol.
func (l *libCUDA) bind(h uintptr) error {
	type sym struct {
		fptr any
		name string
	}
	first := []sym{
		{&l.cuInit, "cuInit"},
		{&l.cuDriverGetVersion, "cuDriverGetVersion"},
		{&l.cuGetErrorName, "cuGetErrorName"},
		{&l.cuGetErrorString, "cuGetErrorString"},
	}
	rest := []sym{
		{&l.cuDeviceGetCount, "cuDeviceGetCount"},
		{&l.cuDeviceGet, "cuDeviceGet"},
		{&l.cuDeviceGetName, "cuDeviceGetName"},
		{&l.cuDeviceGetAttribute, "cuDeviceGetAttribute"},
		{&l.cuDeviceTotalMem, "cuDeviceTotalMem_v2"},
		{&l.cuDeviceGetUuid, "cuDeviceGetUuid_v2"},
		{&l.cuDevicePrimaryCtxRet, "cuDevicePrimaryCtxRetain"},
		{&l.cuDevicePrimaryCtxRel, "cuDevicePrimaryCtxRelease_v2"},
		{&l.cuCtxSetCurrent, "cuCtxSetCurrent"},
		{&l.cuMemGetInfo, "cuMemGetInfo_v2"},
		{&l.cuStreamCreate, "cuStreamCreate"},
		{&l.cuStreamDestroy, "cuStreamDestroy_v2"},
		{&l.cuStreamSynchronize, "cuStreamSynchronize"},
		{&l.cuMemAlloc, "cuMemAlloc_v2"},
		{&l.cuMemFree, "cuMemFree_v2"},
		{&l.cuMemsetD32Async, "cuMemsetD32Async"},
		{&l.cuMemcpyHtoDAsync, "cuMemcpyHtoDAsync_v2"},
		{&l.cuMemcpyDtoHAsync, "cuMemcpyDtoHAsync_v2"},
		{&l.cuMemcpyDtoDAsync, "cuMemcpyDtoDAsync_v2"},
		{&l.cuModuleLoadDataEx, "cuModuleLoadDataEx"},
		{&l.cuModuleUnload, "cuModuleUnload"},
		{&l.cuModuleGetFunction, "cuModuleGetFunction"},
		{&l.cuLaunchKernel, "cuLaunchKernel"},
	}
	var missing []string
	for _, s := range first {
		if err := bindSym(h, s.fptr, s.name); err != nil {
			missing = append(missing, s.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("not a CUDA driver library: it lacks %s", strings.Join(missing, ", "))
	}
	for _, s := range rest {
		if err := bindSym(h, s.fptr, s.name); err != nil {
			missing = append(missing, s.name)
		}
	}
	l.missing = missing
	return nil
}

func bindSym(h uintptr, fptr any, name string) error {
	if _, err := purego.Dlsym(h, name); err != nil {
		return err
	}
	purego.RegisterLibFunc(fptr, h, name)
	return nil
}

// init checks the driver version and calls cuInit once.
func (l *libCUDA) init() error {
	l.initOnce.Do(func() {
		var v int32
		if r := l.cuDriverGetVersion(&v); r != 0 {
			l.initErr = fmt.Errorf("%s: cuDriverGetVersion failed: %s", l.path, l.errorText(r))
			return
		}
		l.driverVersion = v
		if v < MinDriverVersion {
			l.initErr = fmt.Errorf("%s is CUDA driver %s, too old: hjepa's kernels are PTX from CUDA 11.8 and need driver API %s or newer (NVIDIA driver R520+); update the NVIDIA driver",
				l.path, versionString(v), versionString(MinDriverVersion))
			return
		}
		if len(l.missing) > 0 {
			l.initErr = fmt.Errorf("%s (CUDA driver %s) lacks %s; update the NVIDIA driver", l.path, versionString(v), strings.Join(l.missing, ", "))
			return
		}
		if r := l.cuInit(0); r != 0 {
			if r == cudaErrorNoDevice {
				l.initErr = fmt.Errorf("%w: CUDA driver %s found (%s) but %s; check nvidia-smi, CUDA_VISIBLE_DEVICES and the container's --gpus flag",
					ErrNoDevice, versionString(v), l.path, l.errorText(r))
				return
			}
			l.initErr = fmt.Errorf("cuInit failed with driver %s (%s): %s", versionString(v), l.path, l.errorText(r))
		}
	})
	return l.initErr
}

// versionString formats a cuDriverGetVersion value: 12040 -> "12.4".
func versionString(v int32) string { return fmt.Sprintf("%d.%d", v/1000, (v%1000)/10) }

// errorText is "CUDA_ERROR_X: description" for a CUresult.
func (l *libCUDA) errorText(r cuResult) string {
	var name, desc *byte
	n, d := fmt.Sprintf("CUresult %d", int32(r)), ""
	if l.cuGetErrorName != nil && l.cuGetErrorName(r, &name) == 0 && name != nil {
		n = cString(name)
	}
	if l.cuGetErrorString != nil && l.cuGetErrorString(r, &desc) == 0 && desc != nil {
		d = cString(desc)
	}
	if d == "" {
		return n
	}
	return n + ": " + d
}

// check turns a CUresult into an error naming the call.
func (l *libCUDA) check(call string, r cuResult) error {
	if r == 0 {
		return nil
	}
	return &Error{Call: call, Code: int(r), Text: l.errorText(r)}
}

// ErrNoDriver is wrapped by the error of a machine without libcuda.so.1.
var ErrNoDriver = errors.New("no NVIDIA driver")

// ErrNoDevice is wrapped by the error of a driver that loads but sees no GPU.
var ErrNoDevice = errors.New("no CUDA device is visible")

// Error is a failed driver or cuBLAS call.
type Error struct {
	Call string
	Code int
	Text string
}

func (e *Error) Error() string { return e.Call + ": " + e.Text }

// cString copies a NUL-terminated C string.
func cString(p *byte) string {
	if p == nil {
		return ""
	}
	var b []byte
	for q := unsafe.Pointer(p); *(*byte)(q) != 0; q = unsafe.Add(q, 1) {
		b = append(b, *(*byte)(q))
	}
	return string(b)
}

// cBytes is s as a NUL-terminated byte slice.
func cBytes(s string) []byte { return append([]byte(s), 0) }

// keepAlive is runtime.KeepAlive for several values.
func keepAlive(xs ...any) {
	for _, x := range xs {
		runtime.KeepAlive(x)
	}
}
