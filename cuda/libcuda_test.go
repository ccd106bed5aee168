package cuda

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fakeDriver is the C source of a stand-in libcuda.so.1: just enough of the
// driver API for loading, version checks and discovery, with the version,
// cuInit's result, the device count and the compute capability set by -D
// flags, and any entry point left out by -DOMIT_<name>.
const fakeDriver = `
#include <string.h>
typedef int CUresult;
CUresult cuDriverGetVersion(int *v) { *v = VERSION; return 0; }
CUresult cuInit(unsigned f) { return INIT_RESULT; }
CUresult cuGetErrorName(CUresult r, const char **s) {
	*s = r == 100 ? "CUDA_ERROR_NO_DEVICE" : r == 2 ? "CUDA_ERROR_OUT_OF_MEMORY" : "CUDA_ERROR_UNKNOWN"; return 0; }
CUresult cuGetErrorString(CUresult r, const char **s) {
	*s = r == 100 ? "no CUDA-capable device is detected" : "fake"; return 0; }
CUresult cuDeviceGetCount(int *n) { *n = COUNT; return 0; }
CUresult cuDeviceGet(int *d, int i) { *d = i; return 0; }
CUresult cuDeviceGetName(char *s, int n, int d) { strncpy(s, d == 0 ? "Fake GPU A" : "Fake GPU B", n); return 0; }
CUresult cuDeviceGetAttribute(int *v, int attr, int d) { *v = attr == 75 ? CC / 10 : attr == 76 ? CC % 10 : 0; return 0; }
CUresult cuDeviceTotalMem_v2(unsigned long long *b, int d) { *b = 80ull << 30; return 0; }
#ifndef OMIT_cuDeviceGetUuid_v2
CUresult cuDeviceGetUuid_v2(unsigned char *u, int d) { for (int i = 0; i < 16; i++) u[i] = (unsigned char)(16 * d + i); return 0; }
#endif
#define STUB(name) CUresult name() { return 999; }
STUB(cuDevicePrimaryCtxRetain) STUB(cuDevicePrimaryCtxRelease_v2) STUB(cuCtxSetCurrent)
STUB(cuMemGetInfo_v2) STUB(cuStreamCreate) STUB(cuStreamDestroy_v2) STUB(cuStreamSynchronize)
STUB(cuMemAlloc_v2) STUB(cuMemFree_v2) STUB(cuMemsetD32Async) STUB(cuMemcpyHtoDAsync_v2)
STUB(cuMemcpyDtoHAsync_v2) STUB(cuMemcpyDtoDAsync_v2) STUB(cuModuleLoadDataEx) STUB(cuModuleUnload)
STUB(cuModuleGetFunction) STUB(cuLaunchKernel)
`

// buildFake compiles fakeDriver with the given -D flags into a uniquely
// named shared library (dlopen returns the same handle for the same path).
func buildFake(t *testing.T, name string, defines ...string) string {
	t.Helper()
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("gcc not found: the fake driver library cannot be built (apt-get install gcc)")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "fake.c")
	if err := os.WriteFile(src, []byte(fakeDriver), 0o644); err != nil {
		t.Fatal(err)
	}
	lib := filepath.Join(dir, name+".so")
	args := []string{"-shared", "-fPIC", "-o", lib, src}
	for _, d := range defines {
		args = append(args, "-D"+d)
	}
	if out, err := exec.Command(gcc, args...).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	return lib
}

func fakeDefines(version, initResult, count, cc int, extra ...string) []string {
	return append([]string{fmt.Sprintf("VERSION=%d", version), fmt.Sprintf("INIT_RESULT=%d", initResult),
		fmt.Sprintf("COUNT=%d", count), fmt.Sprintf("CC=%d", cc)}, extra...)
}

func mustContain(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not contain %q", err, p)
		}
	}
}

func TestLoadMissingLibrary(t *testing.T) {
	path := filepath.Join(t.TempDir(), "libcuda.so.1")
	_, err := loadLibCUDA(path)
	if !errors.Is(err, ErrNoDriver) {
		t.Fatalf("err = %v, want ErrNoDriver", err)
	}
	mustContain(t, err, path, "HJEPA_LIBCUDA", "R520")
}

func TestLoadNotADriver(t *testing.T) {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("gcc not found")
	}
	dir := t.TempDir()
	src, lib := filepath.Join(dir, "x.c"), filepath.Join(dir, "libnotcuda.so")
	if err := os.WriteFile(src, []byte("int foo(void) { return 1; }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(gcc, "-shared", "-fPIC", "-o", lib, src).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	_, err = loadLibCUDA(lib)
	mustContain(t, err, lib, "not a CUDA driver library", "cuInit", "cuDriverGetVersion")
}

func TestLoadDriverTooOld(t *testing.T) {
	lib := buildFake(t, "old", fakeDefines(11040, 0, 1, 80)...)
	_, err := loadLibCUDA(lib)
	mustContain(t, err, "CUDA driver 11.4", "too old", "11.8", "R520")
}

func TestLoadDriverLacksEntryPoint(t *testing.T) {
	lib := buildFake(t, "nouuid", fakeDefines(12040, 0, 1, 90, "OMIT_cuDeviceGetUuid_v2")...)
	_, err := loadLibCUDA(lib)
	mustContain(t, err, "lacks cuDeviceGetUuid_v2", "12.4", "update the NVIDIA driver")
}

func TestLoadNoDevice(t *testing.T) {
	lib := buildFake(t, "nodev", fakeDefines(12040, 100, 0, 90)...)
	_, err := loadLibCUDA(lib)
	if !errors.Is(err, ErrNoDevice) {
		t.Fatalf("err = %v, want ErrNoDevice", err)
	}
	mustContain(t, err, "CUDA_ERROR_NO_DEVICE", "CUDA_VISIBLE_DEVICES")
	d, err := discoverDriver(lib)
	if err != nil || len(d.Devices) != 0 || d.Driver != "CUDA 12.4" {
		t.Fatalf("discoverDriver = %+v, %v; want driver CUDA 12.4, no devices and no error", d, err)
	}
}

func TestDiscoverDriver(t *testing.T) {
	lib := buildFake(t, "two", fakeDefines(12040, 0, 2, 90)...)
	d, err := discoverDriver(lib)
	if err != nil {
		t.Fatal(err)
	}
	if d.Source != "cuda-driver" || d.Driver != "CUDA 12.4" || len(d.Devices) != 2 {
		t.Fatalf("discovery %+v", d)
	}
	want := DeviceInfo{Index: 1, Name: "Fake GPU B", UUID: "GPU-10111213-1415-1617-1819-1a1b1c1d1e1f", TotalMemory: 80 << 30, Major: 9, Minor: 0}
	if d.Devices[1] != want {
		t.Errorf("device 1 = %+v, want %+v", d.Devices[1], want)
	}
}

func TestOpenDriverChecks(t *testing.T) {
	lib := buildFake(t, "one", fakeDefines(12040, 0, 1, 90)...)
	_, err := OpenDriver(3, Options{LibCUDA: lib})
	mustContain(t, err, "cuda:3", "1 CUDA device(s)")

	lib = buildFake(t, "volta", fakeDefines(12040, 0, 1, 70)...)
	_, err = OpenDriver(0, Options{LibCUDA: lib})
	mustContain(t, err, "Fake GPU A", "compute capability 7.0", "compute_80")
}

func TestPackArgs(t *testing.T) {
	slots, err := packArgs("k", []any{DevicePtr(0x1234), int32(-1), int64(-2), uint64(3), float32(1.5), float64(-0.25)})
	if err != nil {
		t.Fatal(err)
	}
	want := []uint64{0x1234, 0xffffffff, 0xfffffffffffffffe, 3, 0x3fc00000, 0xbfd0000000000000}
	for i := range want {
		if slots[i] != want[i] {
			t.Errorf("slot %d = %#x, want %#x", i, slots[i], want[i])
		}
	}
	_, err = packArgs("hjepa_fill", []any{1})
	mustContain(t, err, "hjepa_fill", "argument 0", "int")
}

// TestDiscoverHere runs discovery on this machine: no error and no devices
// without an NVIDIA driver, or the devices when there are some.
func TestDiscoverHere(t *testing.T) {
	d, err := Discover()
	if err != nil {
		if errors.Is(err, ErrNoDriver) || strings.Contains(err.Error(), "NVML unavailable") {
			t.Logf("no NVIDIA driver here: %v", err)
			return
		}
		t.Fatal(err)
	}
	for _, dev := range d.Devices {
		t.Logf("%s via %s (driver %s)", dev, d.Source, d.Driver)
	}
}
