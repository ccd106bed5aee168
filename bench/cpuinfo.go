package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strings"

	"github.com/hjepa-go/hjepa/tensor/sgemm"
)

// describeCPU is the line every run starts with, so that a result is never
// quoted without the CPU it came from: the model name, family and model
// from /proc/cpuinfo (where there is one), the cores Go may use, and the
// GEMM micro-kernel of our side.
func describeCPU() string {
	name, family, model := "unknown CPU", "?", "?"
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), ":")
			if !ok {
				continue
			}
			k, v = strings.TrimSpace(k), strings.TrimSpace(v)
			switch k {
			case "model name":
				name = v
			case "cpu family":
				family = v
			case "model":
				model = v
			}
		}
	}
	kernel := sgemmKernel
	if kernel == "" {
		kernel = string(sgemm.Available()[0])
	}
	return fmt.Sprintf("bench cpu: %s (family %s model %s), %d cores for Go, GEMM kernel %s, %s/%s",
		name, family, model, runtime.GOMAXPROCS(0), kernel, runtime.GOOS, runtime.GOARCH)
}
