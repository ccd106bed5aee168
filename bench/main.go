// Command bench runs hjepa-go's benchmarks. Each prints one line per result,
//
//	BENCH <name> value=<v> unit=<u> baseline=<b> ratio=<v/b>
//
// where the baseline (OpenBLAS, PyTorch, Gloo) is measured in the same run on
// the same machine. `go run ./bench -run REGEX` runs only matching names.
package main

import (
	"flag"
	"fmt"
	"os"
	"regexp"
	"runtime/pprof"
	"slices"

	"github.com/hjepa-go/hjepa/tensor/cpu"
	"github.com/hjepa-go/hjepa/tensor/sgemm"
)

// Result is one BENCH line.
type Result struct {
	Name     string
	Value    float64
	Unit     string
	Baseline float64
}

// Bench is a group of results measured together (they share setup, e.g. one
// PyTorch process for several baselines).
type Bench struct {
	// Names lists every result name the group can produce.
	Names []string
	// Run measures the results for which want(name) is true and reports each.
	Run func(want func(name string) bool, report func(Result)) error
}

var benches []Bench

// sgemmKernel is -sgemm.
var sgemmKernel string

// newCPU is the CPU backend of the model benchmarks, on -sgemm's kernel.
func newCPU(threads int) *cpu.Backend { return cpu.NewWithKernel(threads, sgemm.Kernel(sgemmKernel)) }

func register(b Bench) { benches = append(benches, b) }

func main() {
	run := flag.String("run", ".", "regular expression selecting benchmark names")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole run (Go side only) to this file")
	flag.StringVar(&sgemmKernel, "sgemm", "", "GEMM micro-kernel of the model benchmarks' CPU backend: avx512, avx2 or generic (default: the best this CPU has); avx2 on an AVX-512 machine measures the AVX2 path")
	flag.Parse()
	// Both baselines, OpenBLAS's and PyTorch's (Debian builds it on
	// OpenBLAS), depend on the kernel OpenBLAS picks.
	fixOpenBLASCore()
	fmt.Println(describeCPU())
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench: -cpuprofile: %v\n", err)
			os.Exit(2)
		}
		defer pprof.StopCPUProfile()
	}
	if sgemmKernel != "" && !slices.Contains(sgemm.Available(), sgemm.Kernel(sgemmKernel)) {
		fmt.Fprintf(os.Stderr, "bench: -sgemm %q: this CPU has %v\n", sgemmKernel, sgemm.Available())
		os.Exit(2)
	}
	re, err := regexp.Compile(*run)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: -run %q: %v\n", *run, err)
		os.Exit(2)
	}
	failed := false
	for _, b := range benches {
		selected := false
		for _, n := range b.Names {
			if re.MatchString(n) {
				selected = true
			}
		}
		if !selected {
			continue
		}
		err := b.Run(re.MatchString, func(r Result) {
			ratio := r.Value / r.Baseline
			fmt.Printf("BENCH %s value=%.4g unit=%s baseline=%.4g ratio=%.3f\n", r.Name, r.Value, r.Unit, r.Baseline, ratio)
		})
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench %v: %v\n", b.Names, err)
			failed = true
		}
	}
	if failed {
		pprof.StopCPUProfile() // os.Exit skips the deferred stop
		os.Exit(1)
	}
}
