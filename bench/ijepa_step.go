package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
)

// hjepa_step_ijepa_official: our training step beside the official I-JEPA
// training step (bench/torch_ijepa_step.py: the inner loop of its
// src/train.py on its ViT and predictor) on the shapes of
// hjepa_step_fmnist_tiny with one level and no VICReg, so that both do the
// same work: I-JEPA's loss, AdamW and the EMA. Both time the same masks;
// each side's fastest step over 1 and 2 threads and two rounds is reported.
// hjepa_step_ijepa_official_peak_rss is each side's peak resident memory
// while stepping at 1 thread (ours: the bench process's VmHWM, reset before
// the model is built, with the trainer's GC target; the official: its
// process's ru_maxrss, Python and PyTorch included).
const (
	ijepaStepName = "hjepa_step_ijepa_official"
	ijepaRSSName  = "hjepa_step_ijepa_official_peak_rss"
)

// ijepaStepSets are hjepaStepSets with one level: I-JEPA's objective.
var ijepaStepSets = append(append([]string{}, hjepaStepSets...), "model.num_hierarchies=1", "loss.hierarchy_weights=[1]")

func init() {
	register(Bench{Names: []string{ijepaStepName, ijepaRSSName}, Run: runIJEPAStep})
}

func runIJEPAStep(want func(string) bool, report func(Result)) error {
	s, err := newHJEPAStepSetup(filepath.Join("configs", "fmnist-tiny.yaml"), ijepaStepSets, hjepaStepBatch)
	if err != nil {
		return err
	}
	defer os.Remove(s.masksFile)
	ours, base := math.Inf(1), math.Inf(1)
	var ourRSS, baseRSS float64
	for round := range hjepaStepRounds {
		for _, th := range vitThreads {
			measure := round == 0 && th == 1 && want(ijepaRSSName)
			if measure {
				// As train.Run does (its trainGCPercent).
				defer debug.SetGCPercent(debug.SetGCPercent(25))
				resetPeakRSS()
			}
			b := newCPU(th)
			ms, err := hjepaStepOurs(s, b, fmt.Sprintf("ijepa threads=%d", th))
			if measure {
				ourRSS = peakRSSMiB()
			}
			b.Close()
			if err != nil {
				return fmt.Errorf("%s: %w", ijepaStepName, err)
			}
			ours = min(ours, ms)
		}
		for _, th := range vitThreads {
			ms, rss, err := ijepaStepTorch(s, th)
			if err != nil {
				return fmt.Errorf("%s baseline: %w", ijepaStepName, err)
			}
			base = min(base, ms)
			if round == 0 && th == 1 {
				baseRSS = rss
			}
		}
	}
	if want(ijepaStepName) {
		report(Result{Name: ijepaStepName, Value: ours, Unit: "ms", Baseline: base})
	}
	if want(ijepaRSSName) && ourRSS > 0 && baseRSS > 0 {
		report(Result{Name: ijepaRSSName, Value: ourRSS, Unit: "MiB", Baseline: baseRSS})
	}
	return nil
}

var peakRSSField = regexp.MustCompile(`peak_rss_mib=([0-9.]+)`)

// ijepaStepTorch runs bench/torch_ijepa_step.py on s's masks and returns its
// fastest step in milliseconds and its peak RSS in MiB.
func ijepaStepTorch(s *hjepaStepSetup, threads int) (ms, rssMiB float64, err error) {
	args := hjepaStepTorchArgs(s, "--threads", strconv.Itoa(threads))
	// The official step has no clipping flag and one level: drop
	// --clip-grad (0 here) and --weights (one weight, 1).
	args = dropFlag(dropFlag(args, "--clip-grad", 1), "--weights", len(s.cfg.Loss.HierarchyWeights))
	median, best, out, err := runTorchOut(filepath.Join("bench", "torch_ijepa_step.py"), args...)
	if err != nil {
		return 0, 0, err
	}
	if m := peakRSSField.FindStringSubmatch(out); m != nil {
		rssMiB, _ = strconv.ParseFloat(m[1], 64)
	}
	fmt.Fprintf(os.Stderr, "ijepa_step official threads=%d ms_median=%.1f ms_min=%.1f peak_rss=%.0f MiB\n", threads, median, best, rssMiB)
	return best, rssMiB, nil
}

// dropFlag removes flag and its n values from args.
func dropFlag(args []string, flag string, n int) []string {
	for i, a := range args {
		if a == flag {
			return append(append([]string{}, args[:i]...), args[min(len(args), i+1+n):]...)
		}
	}
	return args
}

// resetPeakRSS returns freed memory to the OS and resets this process's
// peak resident set size (VmHWM; Linux: clear_refs 5), so that peakRSSMiB
// then measures what follows.
func resetPeakRSS() {
	runtime.GC()
	debug.FreeOSMemory()
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

// peakRSSMiB is this process's VmHWM in MiB (0 when unknown).
func peakRSSMiB() float64 {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			if err == nil {
				return kb / 1024
			}
		}
	}
	return 0
}
