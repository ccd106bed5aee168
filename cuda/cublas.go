package cuda

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// cublasStatus is a cublasStatus_t; 0 is CUBLAS_STATUS_SUCCESS.
type cublasStatus int32

const (
	cublasOpN = 0
	cublasOpT = 1
	// cublasMath_t values.
	cublasDefaultMath      = 0
	cublasTF32TensorOpMath = 3
)

var cublasStatusNames = map[cublasStatus]string{
	1:  "CUBLAS_STATUS_NOT_INITIALIZED",
	3:  "CUBLAS_STATUS_ALLOC_FAILED",
	7:  "CUBLAS_STATUS_INVALID_VALUE",
	8:  "CUBLAS_STATUS_ARCH_MISMATCH",
	11: "CUBLAS_STATUS_MAPPING_ERROR",
	13: "CUBLAS_STATUS_EXECUTION_FAILED",
	14: "CUBLAS_STATUS_INTERNAL_ERROR",
	15: "CUBLAS_STATUS_NOT_SUPPORTED",
	16: "CUBLAS_STATUS_LICENSE_ERROR",
}

// libCUBLAS is the part of cuBLAS the backend uses. Strided-batched SGEMM is
// not among them: cublasSgemmStridedBatched takes 17 arguments and purego
// passes at most 15, so batches go through cublasSgemmBatched (15 arguments)
// with device arrays of matrix pointers.
type libCUBLAS struct {
	path string

	create      func(h *uintptr) cublasStatus
	destroy     func(h uintptr) cublasStatus
	getVersion  func(h uintptr, v *int32) cublasStatus
	setStream   func(h uintptr, s uintptr) cublasStatus
	setMathMode func(h uintptr, mode int32) cublasStatus
	sgemm       func(h uintptr, ta, tb int32, m, n, k int32, alpha *float32, a DevicePtr, lda int32, b DevicePtr, ldb int32, beta *float32, c DevicePtr, ldc int32) cublasStatus
	sgemmBatch  func(h uintptr, ta, tb int32, m, n, k int32, alpha *float32, a DevicePtr, lda int32, b DevicePtr, ldb int32, beta *float32, c DevicePtr, ldc int32, batch int32) cublasStatus
}

// cublasNames are the sonames tried, newest first.
var cublasNames = []string{"libcublas.so.13", "libcublas.so.12"}

// cublasDirs are searched after the loader's own path: the CUDA toolkit's
// usual prefixes, conda, and the pip wheels PyTorch installs
// (site-packages/nvidia/cublas/lib), so a GPU machine with only PyTorch works.
func cublasDirs() []string {
	dirs := []string{"/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib", "/usr/lib/x86_64-linux-gnu", "/opt/conda/lib"}
	globs := []string{
		"/usr/local/cuda-*/lib64",
		"/usr/local/lib/python3*/dist-packages/nvidia/cublas/lib",
		"/usr/local/lib/python3*/site-packages/nvidia/cublas/lib",
		"/usr/lib/python3/dist-packages/nvidia/cublas/lib",
		"/opt/conda/lib/python3*/site-packages/nvidia/cublas/lib",
		"/opt/*/lib/python3*/site-packages/nvidia/cublas/lib",
	}
	if home, err := os.UserHomeDir(); err == nil {
		globs = append(globs, filepath.Join(home, ".local/lib/python3*/site-packages/nvidia/cublas/lib"))
	}
	if venv := os.Getenv("VIRTUAL_ENV"); venv != "" {
		globs = append(globs, filepath.Join(venv, "lib/python3*/site-packages/nvidia/cublas/lib"))
	}
	for _, g := range globs {
		m, _ := filepath.Glob(g)
		dirs = append(dirs, m...)
	}
	return dirs
}

var (
	defaultCUBLAS     *libCUBLAS
	defaultCUBLASErr  error
	defaultCUBLASOnce sync.Once
)

// loadCUBLAS opens cuBLAS from path, HJEPA_CUBLAS, or the search above.
func loadCUBLAS(path string) (*libCUBLAS, error) {
	if env := os.Getenv("HJEPA_CUBLAS"); path == "" && env != "" {
		path = env
	}
	if path != "" {
		return openCUBLAS([]string{path})
	}
	defaultCUBLASOnce.Do(func() {
		cands := append([]string(nil), cublasNames...)
		for _, d := range cublasDirs() {
			for _, n := range cublasNames {
				p := filepath.Join(d, n)
				if _, err := os.Stat(p); err == nil {
					cands = append(cands, p)
				}
			}
		}
		defaultCUBLAS, defaultCUBLASErr = openCUBLAS(cands)
	})
	return defaultCUBLAS, defaultCUBLASErr
}

func openCUBLAS(candidates []string) (*libCUBLAS, error) {
	var tried []string
	for _, p := range candidates {
		// cuBLAS needs cuBLASLt of the same version; wheels keep it beside
		// libcublas without an rpath, so load it first from the same folder.
		if strings.Contains(p, "/") {
			lt := filepath.Join(filepath.Dir(p), strings.Replace(filepath.Base(p), "libcublas.", "libcublasLt.", 1))
			if _, err := os.Stat(lt); err == nil {
				_, _ = dlopen(lt)
			}
		}
		h, err := dlopen(p)
		if err != nil {
			tried = append(tried, fmt.Sprintf("%s (%v)", p, trimDlerror(err)))
			continue
		}
		l := &libCUBLAS{path: p}
		syms := []struct {
			fptr any
			name string
		}{
			{&l.create, "cublasCreate_v2"},
			{&l.destroy, "cublasDestroy_v2"},
			{&l.getVersion, "cublasGetVersion_v2"},
			{&l.setStream, "cublasSetStream_v2"},
			{&l.setMathMode, "cublasSetMathMode"},
			{&l.sgemm, "cublasSgemm_v2"},
			{&l.sgemmBatch, "cublasSgemmBatched"},
		}
		var missing []string
		for _, s := range syms {
			if err := bindSym(h, s.fptr, s.name); err != nil {
				missing = append(missing, s.name)
			}
		}
		if len(missing) > 0 {
			return nil, fmt.Errorf("%s is not a usable cuBLAS: it lacks %s", p, strings.Join(missing, ", "))
		}
		return l, nil
	}
	return nil, fmt.Errorf("cuBLAS not found: tried %s; install CUDA 12 or 13's libcublas (apt libcublas-12-x, or pip nvidia-cublas-cu12), or set HJEPA_CUBLAS to libcublas.so.12's path",
		strings.Join(tried, "; "))
}

func (l *libCUBLAS) check(call string, s cublasStatus) error {
	if s == 0 {
		return nil
	}
	name, ok := cublasStatusNames[s]
	if !ok {
		name = fmt.Sprintf("cublasStatus %d", int32(s))
	}
	return &Error{Call: call, Code: int(s), Text: name}
}
