package eval

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"
)

func unit(deg float64) []float32 {
	r := deg * math.Pi / 180
	return []float32{float32(math.Cos(r)), float32(math.Sin(r))}
}

func rows(vs ...[]float32) []float32 {
	var out []float32
	for _, v := range vs {
		out = append(out, v...)
	}
	return out
}

func TestKNNHandMade(t *testing.T) {
	// One class-0 point at the test direction (sim 1), two class-1 points
	// at +-36.87 degrees (sim 0.8), scaled arbitrarily (cosine ignores norm).
	a := float64(36.87)
	train := rows(unit(0), []float32{0, 5}, unit(a), unit(-a))
	train[0], train[1] = 3*train[0], 3*train[1]
	labels := []int{0, 1, 1, 1}
	test := unit(0)
	cases := []struct {
		k    int
		temp float64
		want int
	}{
		{1, 0.07, 0}, // nearest neighbour
		// k=3: votes e^(1/T) for class 0 against 2 e^(0.8/T) for class 1.
		{3, 0.07, 0}, // T small: the closest point outweighs two (e^2.86 > 2)
		{3, 1, 1},    // T = 1: e^1 = 2.72 < 2 e^0.8 = 4.45
		{100, 1, 1},  // k above n is clamped: adds the 90-degree class-1 point
	}
	for _, tc := range cases {
		pred, err := KNN(train, labels, test, 2, 2, KNNOptions{K: tc.k, T: tc.temp, Threads: 2})
		if err != nil {
			t.Fatal(err)
		}
		if pred[0] != tc.want {
			t.Errorf("k=%d T=%v: predicted %d, want %d", tc.k, tc.temp, pred[0], tc.want)
		}
	}
}

func TestKNNTies(t *testing.T) {
	// Two identical training vectors with different labels: with k=1 the
	// earlier row is the neighbour; with k=2 the votes tie and the lower
	// class wins whichever order the rows come in.
	v := unit(10)
	for _, tc := range []struct {
		labels  []int
		k, want int
	}{
		{[]int{2, 1}, 1, 2},
		{[]int{1, 2}, 1, 1},
		{[]int{2, 1}, 2, 1},
		{[]int{1, 2}, 2, 1},
	} {
		pred, err := KNN(rows(v, v), tc.labels, unit(0), 2, 3, KNNOptions{K: tc.k})
		if err != nil {
			t.Fatal(err)
		}
		if pred[0] != tc.want {
			t.Errorf("labels %v k=%d: predicted %d, want %d", tc.labels, tc.k, pred[0], tc.want)
		}
	}
}

// Against a brute-force float64 reference on data spanning several train and
// test blocks.
func TestKNNMatchesBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 18))
	const n, m, d, c, k = 5000, 300, 16, 5, 20
	means := randomMeans(rng, d, c, 0.6)
	train, labels := blobs(rng, n, d, c, means)
	test, _ := blobs(rng, m, d, c, means)
	pred, err := KNN(train, labels, test, d, c, KNNOptions{Threads: 3})
	if err != nil {
		t.Fatal(err)
	}
	norm := func(v []float32) []float64 {
		s := 0.0
		for _, x := range v {
			s += float64(x) * float64(x)
		}
		out := make([]float64, len(v))
		for i, x := range v {
			out[i] = float64(x) / math.Sqrt(s)
		}
		return out
	}
	trn := make([][]float64, n)
	for j := range trn {
		trn[j] = norm(train[j*d : (j+1)*d])
	}
	agree := 0
	for i := 0; i < m; i++ {
		q := norm(test[i*d : (i+1)*d])
		type nb struct {
			s float64
			j int
		}
		all := make([]nb, n)
		for j := 0; j < n; j++ {
			all[j] = nb{dot(q, trn[j]), j}
		}
		sort.Slice(all, func(a, b int) bool { return all[a].s > all[b].s })
		votes := make([]float64, c)
		for _, e := range all[:k] {
			votes[labels[e.j]] += math.Exp(e.s / 0.07)
		}
		best := 0
		for cl := range votes {
			if votes[cl] > votes[best] {
				best = cl
			}
		}
		if best == pred[i] {
			agree++
		}
	}
	// float32 similarities may reorder near-ties; nothing else may differ.
	if agree < m-2 {
		t.Fatalf("agrees with brute force on %d of %d", agree, m)
	}
}

func TestTopKKeepsLargest(t *testing.T) {
	rng := rand.New(rand.NewPCG(19, 20))
	h := topK{}
	vals := make([]float32, 1000)
	for j := range vals {
		vals[j] = float32(rng.IntN(50)) // many ties
		h.offer(vals[j], int32(j), 7)
	}
	type e struct {
		s float32
		j int32
	}
	var want []e
	for j, v := range vals {
		want = append(want, e{v, int32(j)})
	}
	sort.SliceStable(want, func(a, b int) bool { return want[a].s > want[b].s })
	got := map[int32]bool{}
	for _, j := range h.idx {
		got[j] = true
	}
	for _, w := range want[:7] {
		if !got[w.j] {
			t.Fatalf("top-7 misses row %d (sim %v): got %v %v", w.j, w.s, h.idx, h.sim)
		}
	}
}
