// Package device opens, discovers, lists and closes compute backends: the
// CPU backend (package tensor/cpu) and, in builds without the nocuda tag,
// NVIDIA GPUs through package cuda (libcuda and cuBLAS loaded at run time,
// so every binary runs on a machine without CUDA). It is the one package
// with a `nocuda` build-tag pair (gpu_cuda.go, gpu_nocuda.go), and with the
// test-only `cudaemu` pair (emu_cudaemu.go, emu_other.go): device cuda-emu,
// the CUDA backend on the host emulator of package cuda/emu.
package device

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/hjepa-go/hjepa/config"
	"github.com/hjepa-go/hjepa/tensor"
	"github.com/hjepa-go/hjepa/tensor/cpu"
)

// errNoCUDA is the error of every GPU request in a build without the CUDA
// backend: `-tags nocuda` leaves out purego's dynamic loader, so that
// CGO_ENABLED=0 gives a fully static binary (for FROM-scratch images).
var errNoCUDA = errors.New("this binary was built with -tags nocuda (no CUDA backend); rebuild without the tag to use a GPU")

// EmuMemoryEnv names the environment variable that gives device cuda-emu
// its memory in bytes (unset: as much as the host has); it is one of
// config.ProgramEnv.
const EmuMemoryEnv = "HJEPA_EMU_MEMORY_BYTES"

// EmuTenantEnv names the environment variable that makes another process
// take that many bytes of device cuda-emu right after its first memory
// query: the resource check passes, the allocations it checked fail (a
// shared GPU). It is one of config.ProgramEnv.
const EmuTenantEnv = "HJEPA_EMU_TENANT_BYTES"

// Open opens the compute device named by c.Device: "cpu" (c.Threads
// workers, 0: all cores), "cuda" or "cuda:K" (an error says why when the GPU
// cannot be used), or "auto": the first GPU when one is usable, else the CPU,
// and then fallback says why in one line for the caller to log. "cuda-emu"
// (binaries built with -tags cudaemu, for tests) is the CUDA backend on the
// host emulator, with EmuMemoryEnv bytes of device memory.
func Open(c config.Config) (b tensor.Backend, fallback string, err error) {
	return OpenLocal(c, 0)
}

// OpenLocal is Open for the worker of local rank localRank on its host:
// device auto takes GPU localRank (one worker per GPU, as torchrun's
// LOCAL_RANK), and the CPU when that GPU does not exist.
func OpenLocal(c config.Config, localRank int) (b tensor.Backend, fallback string, err error) {
	threads := c.Threads
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	switch device := c.Device; {
	case device == "" || device == "cpu":
		return cpu.New(threads), "", nil
	case device == "auto":
		gb, err := openGPU(localRank, c.AllowTF32)
		if noGPU(err) {
			return cpu.New(threads), onceFallback(fmt.Sprintf("device auto: %s; using the CPU (hjepa devices says more)", shortReason(err))), nil
		}
		if err != nil {
			return cpu.New(threads), onceFallback(fmt.Sprintf("device auto: the GPU is not usable (%v); using the CPU", err)), nil
		}
		return gb, "", nil
	case device == "cuda" || strings.HasPrefix(device, "cuda:"):
		ordinal := 0
		if k, ok := strings.CutPrefix(device, "cuda:"); ok {
			n, err := strconv.Atoi(k)
			if err != nil || n < 0 {
				return nil, "", fmt.Errorf("device %q: want cuda:K with K a GPU index", device)
			}
			ordinal = n
		}
		gb, err := openGPU(ordinal, c.AllowTF32)
		if err != nil {
			return nil, "", fmt.Errorf("device %s: %w (use --device cpu to train on the CPU)", device, err)
		}
		return gb, "", nil
	case device == "cuda-emu":
		eb, err := openEmulator()
		if err != nil {
			return nil, "", fmt.Errorf("device cuda-emu: %w", err)
		}
		return eb, "", nil
	}
	return nil, "", fmt.Errorf("device %q: want auto, cpu, cuda or cuda:K", c.Device)
}

// fallbackSaid makes the CPU-fallback line once per process: a worker
// reopens its device every generation, and a command may open it twice.
var fallbackSaid sync.Once

func onceFallback(line string) (out string) {
	fallbackSaid.Do(func() { out = line })
	return out
}

// shortReason is why no GPU is usable in a few words: the first clause,
// without the list of paths tried (`hjepa devices` prints it all).
func shortReason(err error) string {
	s := firstClause(err)
	if i := strings.Index(s, " (tried "); i >= 0 {
		s = s[:i]
	}
	return s
}

// firstClause is an error's text up to its first ';' (the part that says
// what is missing, without the advice).
func firstClause(err error) string {
	s, _, _ := strings.Cut(err.Error(), ";")
	return s
}

// Err returns b's device failure: the first out of memory or driver error
// of a backend whose device can fail (tensor.Faulter, the CUDA backend),
// after which its operations do nothing. It is nil while the device is
// healthy, and always for backends that cannot fail this way (the CPU).
// errors.Is(err, tensor.ErrOutOfMemory) tells an out of memory from other
// faults (tensor.ErrDeviceFault).
func Err(b tensor.Backend) error {
	if f, ok := b.(tensor.Faulter); ok {
		return f.Err()
	}
	return nil
}

// Close stops a backend's workers or frees its device memory and driver
// context.
func Close(b tensor.Backend) {
	switch c := b.(type) {
	case interface{ Close() }:
		c.Close()
	case interface{ Close() error }:
		_ = c.Close()
	}
}

// GPU describes one visible GPU.
type GPU struct {
	Index        int    // CUDA ordinal (NVML index when found through NVML)
	Name         string // e.g. "NVIDIA H100 80GB HBM3"
	UUID         string // "GPU-xxxxxxxx-xxxx-..."
	MemoryBytes  uint64
	Major, Minor int // compute capability
}

func (g GPU) String() string {
	return fmt.Sprintf("cuda:%d %s (%s, sm_%d%d, %.1f GiB)", g.Index, g.Name, g.UUID, g.Major, g.Minor, float64(g.MemoryBytes)/(1<<30))
}

// Inventory is what Discover found, and through which library.
type Inventory struct {
	GPUs []GPU
	// Source is "nvml" or "cuda-driver".
	Source string
	// Driver is the driver version the library reported ("" if unknown).
	Driver string
}

// Discover lists this machine's GPUs: NVML in cgo builds, the CUDA driver
// API in static ones. No driver, or a build without CUDA, is an error that
// says so (NoGPU tells it apart from a GPU that failed); a driver with no
// visible device is an empty inventory.
func Discover() (Inventory, error) { return discover() }

// NoGPU reports whether err (from Discover or Open) means this machine or
// binary has no GPU to offer, as opposed to a GPU that failed.
func NoGPU(err error) bool { return noGPU(err) }

// List writes the GPUs `--device cuda:K` can name, one per line, or one
// line saying why training runs on the CPU.
func List(out io.Writer) error {
	inv, err := Discover()
	switch {
	case errors.Is(err, errNoCUDA):
		fmt.Fprintln(out, "this binary was built with -tags nocuda: no CUDA backend, training runs on the CPU")
		return nil
	case noGPU(err):
		fmt.Fprintf(out, "no NVIDIA driver on this machine: training runs on the CPU (--device cpu)\n(%v)\n", err)
		return nil
	case err != nil:
		return err
	}
	if len(inv.GPUs) == 0 {
		fmt.Fprintf(out, "no GPU visible (%s, driver %s): training runs on the CPU\n", inv.Source, inv.Driver)
		return nil
	}
	fmt.Fprintf(out, "%d GPU(s) via %s, driver %s:\n", len(inv.GPUs), inv.Source, inv.Driver)
	for _, g := range inv.GPUs {
		fmt.Fprintf(out, "  %s\n", g)
	}
	return nil
}
