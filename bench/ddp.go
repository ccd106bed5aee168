package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
)

// The DDP step benchmark runs fmnist-tiny (configs/fmnist-tiny.yaml) as a
// user would, twice in the same run: world 2 (`hjepa launch --nproc 2`,
// 1 thread and batch 32 per worker) beside world 1 (`hjepa train`, 2
// threads, batch 64), both on the same global batch, masks and data. The
// value is world 2's median step time (rank 0's step_ms in metrics.jsonl,
// all-reduce and its waits included), the baseline world 1's. A second
// result is the fraction of all-reduce time hidden behind backward (from
// rank 0's "all-reduce time" log line: 1 - exposed/total); its baseline is
// the ideal, 1 (all of it hidden).
const (
	ddpStepName    = "ddp_step_w2"
	ddpHiddenName  = "ddp_allreduce_hidden_w2"
	ddpSteps       = 24
	ddpWarmupSteps = 4
	ddpGlobalBatch = 64
)

func init() {
	register(Bench{Names: []string{ddpStepName, ddpHiddenName}, Run: runDDPStep})
}

func runDDPStep(want func(string) bool, report func(Result)) error {
	if _, err := os.Stat("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"); err != nil {
		return fmt.Errorf("%s needs Fashion-MNIST (apt-get install dataset-fashion-mnist)", ddpStepName)
	}
	dir, err := os.MkdirTemp("", "hjepa-ddp-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "hjepa")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/hjepa").CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/hjepa: %v\n%s", err, out)
	}
	sets := []string{"--set", fmt.Sprintf("training.max_steps=%d", ddpSteps), "--set", "logging.every_steps=1",
		"--set", "logging.progress=false", "--set", "evaluation.val_batches=1", "--set", "checkpoint.every_steps=0"}

	one := filepath.Join(dir, "w1")
	args := append([]string{"train", "--config", "configs/fmnist-tiny.yaml", "--out", one, "--threads", "2", "--device", "cpu",
		"--set", fmt.Sprintf("data.batch_size=%d", ddpGlobalBatch)}, sets...)
	if _, err := runQuiet(bin, args...); err != nil {
		return err
	}
	two := filepath.Join(dir, "w2")
	args = append([]string{"launch", "--nproc", "2", "--threads", "1", "--device", "cpu", "--config", "configs/fmnist-tiny.yaml",
		"--out", two, "--set", fmt.Sprintf("data.batch_size=%d", ddpGlobalBatch/2)}, sets...)
	logs, err := runQuiet(bin, args...)
	if err != nil {
		return err
	}
	t1, err := medianStepMS(filepath.Join(one, "metrics.jsonl"))
	if err != nil {
		return err
	}
	t2, err := medianStepMS(filepath.Join(two, "metrics.jsonl"))
	if err != nil {
		return err
	}
	if want(ddpStepName) {
		report(Result{Name: ddpStepName, Value: t2, Unit: "ms", Baseline: t1})
	}
	total, exposed, err := allReduceTimes(logs)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "%s: rank 0 spent %v in all-reduce over %d steps, %v of it after backward had finished\n",
		ddpStepName, total.Round(time.Millisecond), ddpSteps, exposed.Round(time.Millisecond))
	if want(ddpHiddenName) && total > 0 {
		report(Result{Name: ddpHiddenName, Value: max(0, 1-float64(exposed)/float64(total)), Unit: "fraction", Baseline: 1})
	}
	return nil
}

// runQuiet runs the binary and returns its stderr; on failure the error
// holds the output's tail.
func runQuiet(bin string, args ...string) (string, error) {
	c := exec.Command(bin, args...)
	var out bytes.Buffer
	c.Stdout, c.Stderr = &out, &out
	if err := c.Run(); err != nil {
		s := out.String()
		if len(s) > 4000 {
			s = s[len(s)-4000:]
		}
		return "", fmt.Errorf("hjepa %s: %v\n%s", args[0], err, s)
	}
	return out.String(), nil
}

// medianStepMS is the median step_ms of the training rows after warm-up.
func medianStepMS(path string) (float64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var ms []float64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var row struct {
			Step   int64    `json:"step"`
			StepMS *float64 `json:"step_ms"`
		}
		if json.Unmarshal(sc.Bytes(), &row) == nil && row.StepMS != nil && row.Step > ddpWarmupSteps {
			ms = append(ms, *row.StepMS)
		}
	}
	if len(ms) == 0 {
		return 0, fmt.Errorf("%s: no training rows after step %d", path, ddpWarmupSteps)
	}
	slices.Sort(ms)
	return ms[len(ms)/2], nil
}

var allReduceLine = regexp.MustCompile(`all-reduce time.*"total": "([^"]+)", "exposed": "([^"]+)"`)

// allReduceTimes reads rank 0's all-reduce totals from launch's output.
func allReduceTimes(logs string) (total, exposed time.Duration, err error) {
	for _, line := range strings.Split(logs, "\n") {
		if !strings.HasPrefix(line, "[rank 0]") {
			continue
		}
		m := allReduceLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		if total, err = time.ParseDuration(m[1]); err == nil {
			exposed, err = time.ParseDuration(m[2])
		}
		return total, exposed, err
	}
	return 0, 0, fmt.Errorf("%s: no \"all-reduce time\" line from rank 0 in the launch output", ddpStepName)
}
