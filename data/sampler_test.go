package data

import (
	"reflect"
	"sort"
	"testing"
)

// Expected values are torch.utils.data.DistributedSampler's, computed by hand
// from its source: pad with indices[:padding], rank r takes indices[r::R].
func TestDistributedSamplerTorchSemantics(t *testing.T) {
	cases := []struct {
		n, r     int
		dropLast bool
		want     [][]int
	}{
		{10, 3, false, [][]int{{0, 3, 6, 9}, {1, 4, 7, 0}, {2, 5, 8, 1}}},
		{10, 3, true, [][]int{{0, 3, 6}, {1, 4, 7}, {2, 5, 8}}},
		{10, 1, false, [][]int{{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}}},
		{9, 3, false, [][]int{{0, 3, 6}, {1, 4, 7}, {2, 5, 8}}},
		// Padding longer than the dataset repeats it: [0 1 0 1 0].
		{2, 5, false, [][]int{{0}, {1}, {0}, {1}, {0}}},
	}
	for _, c := range cases {
		for rank := range c.r {
			s, err := NewDistributedSampler(c.n, c.r, rank, false, 0, c.dropLast)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.Indices(); !reflect.DeepEqual(got, c.want[rank]) {
				t.Errorf("N=%d R=%d drop=%v rank %d: %v, want %v", c.n, c.r, c.dropLast, rank, got, c.want[rank])
			}
		}
	}
}

func TestDistributedSamplerShuffle(t *testing.T) {
	const n, r = 10, 3
	perm := func(seed int64, epoch int) []int {
		s, _ := NewDistributedSampler(n, 1, 0, true, seed, false)
		s.SetEpoch(epoch)
		return s.Indices()
	}
	p := perm(5, 2)
	if sorted := append([]int(nil), p...); !func() bool { sort.Ints(sorted); return reflect.DeepEqual(sorted, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}) }() {
		t.Fatalf("not a permutation: %v", p)
	}
	if !reflect.DeepEqual(p, perm(5, 2)) || reflect.DeepEqual(p, perm(5, 3)) {
		t.Fatal("shuffle must depend on seed+epoch only, and change with the epoch")
	}
	if !reflect.DeepEqual(perm(5, 3), perm(6, 2)) {
		t.Fatal("torch seeds the generator with seed + epoch")
	}
	// With 3 replicas: padded = p + p[:2]; rank k = padded[k::3].
	padded := append(append([]int(nil), p...), p[:2]...)
	seen := map[int]int{}
	for rank := range r {
		s, _ := NewDistributedSampler(n, r, rank, true, 5, false)
		s.SetEpoch(2)
		var want []int
		for i := rank; i < len(padded); i += r {
			want = append(want, padded[i])
		}
		got := s.Indices()
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("rank %d: %v, want %v", rank, got, want)
		}
		for _, i := range got {
			seen[i]++
		}
	}
	if len(seen) != n || seen[p[0]] != 2 || seen[p[1]] != 2 {
		t.Fatalf("coverage %v", seen)
	}
}

func TestDistributedSamplerArgs(t *testing.T) {
	for _, a := range [][3]int{{0, 1, 0}, {10, 0, 0}, {10, 3, 3}, {10, 3, -1}} {
		if _, err := NewDistributedSampler(a[0], a[1], a[2], false, 0, false); err == nil {
			t.Errorf("%v accepted", a)
		}
	}
}
