// Command layers prints the module's import graph, one package per line
// with the module packages it imports, lowest layer first, and exits 1 when
// an import runs back up (a package importing one of a higher layer) or
// when a package other than cmd, worker and bench imports train.
//
//	go run ./tools/layers        # or: make imports
//
// The layers are DESIGN.md section 2's "imports point down": cmd ->
// coordinator/worker -> train/eval -> jepa/device -> nn/data/collective/
// optim/cuda -> tensor/config/proto and the file formats.
package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
)

const module = "github.com/hjepa-go/hjepa/"

// layers lists each layer's packages (a prefix ending in "/" names a
// subtree), lowest first.
var layers = [][]string{
	{"tensor", "tensor/", "config", "proto/", "cuda/kernels", "collective/grpcwire", "collective/rpcsec",
		"train/checkpoint", "train/plot", "train/progress", "train/telemetry", "train/tfevents", "coordinator/launch"},
	{"nn", "cuda", "cuda/emu", "data", "collective", "optim"},
	{"jepa", "device"},
	{"eval", "train", "cuda/cudatest"},
	{"coordinator", "worker"},
	{"bench", "cmd/internal/", "deploy", "deploy/", "tools/"},
	{"cmd/"},
}

// trainImporters are the only packages that may import train.
var trainImporters = []string{"cmd/", "worker", "bench"}

func matches(pkg, pat string) bool {
	if strings.HasSuffix(pat, "/") {
		return strings.HasPrefix(pkg, pat)
	}
	return pkg == pat
}

// layerOf returns the layer of pkg; a package matched by an exact name wins
// over a subtree prefix (train/checkpoint is below train/).
func layerOf(pkg string) int {
	best, bestLen := -1, -1
	for i, l := range layers {
		for _, pat := range l {
			if matches(pkg, pat) && len(pat) > bestLen {
				best, bestLen = i, len(pat)
			}
		}
	}
	return best
}

func main() {
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}}{{range .Imports}} {{.}}{{end}}", "./...").Output()
	if err != nil {
		fmt.Fprintln(os.Stderr, "layers: go list:", err)
		os.Exit(2)
	}
	type pkg struct {
		name  string
		layer int
		deps  []string
	}
	var pkgs []pkg
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || !strings.HasPrefix(f[0], module) {
			continue
		}
		p := pkg{name: strings.TrimPrefix(f[0], module)}
		for _, d := range f[1:] {
			if strings.HasPrefix(d, module) {
				p.deps = append(p.deps, strings.TrimPrefix(d, module))
			}
		}
		p.layer = layerOf(p.name)
		pkgs = append(pkgs, p)
	}
	sort.SliceStable(pkgs, func(i, j int) bool {
		if pkgs[i].layer != pkgs[j].layer {
			return pkgs[i].layer < pkgs[j].layer
		}
		return pkgs[i].name < pkgs[j].name
	})
	var problems []string
	for _, p := range pkgs {
		fmt.Printf("%d %-22s -> %s\n", p.layer, p.name, strings.Join(p.deps, " "))
		if p.layer < 0 {
			problems = append(problems, fmt.Sprintf("%s is in no layer: add it to tools/layers", p.name))
			continue
		}
		for _, d := range p.deps {
			if l := layerOf(d); l > p.layer {
				problems = append(problems, fmt.Sprintf("%s (layer %d) imports %s (layer %d): an import runs up", p.name, p.layer, d, l))
			}
			if d == "train" && !anyMatch(p.name, trainImporters) {
				problems = append(problems, fmt.Sprintf("%s imports train: only cmd, worker and bench may", p.name))
			}
		}
	}
	for _, s := range problems {
		fmt.Fprintln(os.Stderr, "layers:", s)
	}
	if len(problems) > 0 {
		os.Exit(1)
	}
}

func anyMatch(pkg string, pats []string) bool {
	for _, p := range pats {
		if matches(pkg, p) {
			return true
		}
	}
	return false
}
