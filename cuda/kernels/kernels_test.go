package kernels

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestPTXFresh fails when hjepa.ptx was not generated from this hjepa.cu.
func TestPTXFresh(t *testing.T) {
	sum := sha256.Sum256([]byte(Source))
	first, _, _ := strings.Cut(PTX, "\n")
	want := "// source-sha256: " + hex.EncodeToString(sum[:])
	if first != want {
		t.Fatalf("hjepa.ptx is stale: run make ptx (its first line is %q, hjepa.cu hashes to %q)", first, want)
	}
}

// TestNames checks that Names, hjepa.cu's HJEPA_KERNELS list and the PTX's
// entries are the same set, and that every kernel name the backend
// (cuda/kernels.go, cuda/backend.go) launches is in it.
func TestNames(t *testing.T) {
	want := slices.Sorted(slices.Values(Names))
	if d := slices.Compact(slices.Clone(want)); len(d) != len(want) {
		t.Errorf("Names has duplicates")
	}
	entries := regexp.MustCompile(`(?m)^\.visible \.entry (\w+)\(`).FindAllStringSubmatch(PTX, -1)
	var ptx []string
	for _, m := range entries {
		ptx = append(ptx, m[1])
	}
	slices.Sort(ptx)
	if !slices.Equal(ptx, want) {
		t.Errorf("PTX entries %v\ndiffer from Names %v", ptx, want)
	}

	src, err := os.ReadFile("hjepa.cu")
	if err != nil {
		t.Fatal(err)
	}
	list := regexp.MustCompile(`(?s)#define HJEPA_KERNELS\(X\)(.*?)\n\n`).FindSubmatch(src)
	if list == nil {
		t.Fatal("hjepa.cu: no HJEPA_KERNELS list")
	}
	var cu []string
	for _, m := range regexp.MustCompile(`X\((\w+)\)`).FindAllSubmatch(list[1], -1) {
		cu = append(cu, string(m[1]))
	}
	slices.Sort(cu)
	if !slices.Equal(cu, want) {
		t.Errorf("HJEPA_KERNELS %v\ndiffers from Names %v", cu, want)
	}

	for _, f := range []string{"../kernels.go", "../backend.go"} {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		used := regexp.MustCompile(`"(hjepa_\w+)"`).FindAllSubmatch(src, -1)
		if len(used) == 0 && f == "../kernels.go" {
			t.Errorf("%s launches no kernels?", f)
		}
		for _, m := range used {
			if _, ok := slices.BinarySearch(want, string(m[1])); !ok {
				t.Errorf("%s launches %s, which is not in Names (nor, then, in the PTX)", f, m[1])
			}
		}
	}
}

// TestAttentionTiles checks that the backend's attention tile tables
// (attnFwdTiles, attnBwdTiles in cuda/kernels.go) launch every instance with
// the shape it was compiled for (ATTN_FWD, ATTN_BWD in hjepa.cu): a block of
// other than NT threads computes wrong results, or fails to launch past
// __launch_bounds__.
func TestAttentionTiles(t *testing.T) {
	goSrc, err := os.ReadFile("../kernels.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []struct{ macro, kernel string }{{"ATTN_FWD", "hjepa_attn_fwd_d"}, {"ATTN_BWD", "hjepa_attn_bwd_dq_d"}} {
		cu := regexp.MustCompile(`(?m)^`+kind.macro+`\((\d+), (\d+), (\d+), (\d+)\)$`).FindAllStringSubmatch(Source, -1)
		gos := regexp.MustCompile(`\{(\d+), (\d+), (\d+), (\d+), "`+kind.kernel+`(\d+)"`).FindAllSubmatch(goSrc, -1)
		if len(cu) == 0 || len(cu) != len(gos) {
			t.Fatalf("%s: %d instances in hjepa.cu, %d in the Go table", kind.macro, len(cu), len(gos))
		}
		for i, c := range cu {
			g := gos[i]
			got := []string{string(g[1]), string(g[2]), string(g[3]), string(g[4]), string(g[5])}
			want := []string{c[1], c[2], c[3], c[4], c[1]}
			if !slices.Equal(got, want) {
				t.Errorf("%s instance %d: Go table has dh, br, bc, nt, kernel suffix %v; hjepa.cu has %v", kind.macro, i, got, want)
			}
		}
	}
}
