package main

import (
	"bytes"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
)

// torchResult is the line every bench/torch_*.py script prints last.
var torchResult = regexp.MustCompile(`RESULT what=\S+ threads=(\d+) ms_median=([0-9.]+) ms_min=([0-9.]+)`)

// runTorch runs a PyTorch baseline script (a path from the repository root)
// under Debian's /usr/bin/python3 and returns its median and fastest
// iteration in milliseconds.
func runTorch(rel string, args ...string) (median, best float64, err error) {
	median, best, _, err = runTorchOut(rel, args...)
	return median, best, err
}

// runTorchOut is runTorch that also returns the script's standard output
// (for fields beyond the times).
func runTorchOut(rel string, args ...string) (median, best float64, out string, err error) {
	script, err := benchRepoFile(rel)
	if err != nil {
		return 0, 0, "", err
	}
	cmd := exec.Command("/usr/bin/python3", append([]string{script}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	raw, err := cmd.Output()
	if err != nil {
		return 0, 0, "", fmt.Errorf("%s: %v: %s (PyTorch 1.13 CPU comes from Debian's python3-torch: make bench-deps)",
			cmd, err, bytes.TrimSpace(stderr.Bytes()))
	}
	m := torchResult.FindSubmatch(raw)
	if m == nil {
		return 0, 0, "", fmt.Errorf("%s: no RESULT line in output %q", cmd, raw)
	}
	median, _ = strconv.ParseFloat(string(m[2]), 64)
	if best, err = strconv.ParseFloat(string(m[3]), 64); err != nil {
		return 0, 0, "", fmt.Errorf("%s: bad ms_min %q", cmd, m[3])
	}
	return median, best, string(raw), nil
}
