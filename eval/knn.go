package eval

import (
	"fmt"
	"math"

	"github.com/hjepa-go/hjepa/tensor/parallel"
	"github.com/hjepa-go/hjepa/tensor/sgemm"
)

// KNNOptions configures KNN; zero fields take DINO's defaults.
type KNNOptions struct {
	K       int     // neighbours (default 20)
	T       float64 // temperature of the vote weights (default 0.07)
	Threads int     // workers (default GOMAXPROCS)
}

// defaultKNNK is DINO's k.
const defaultKNNK = 20

// Block sizes of the similarity matrix: one worker holds a [knnTestBlock,
// knnTrainBlock] float32 tile (1 MiB), never the whole test x train matrix.
const (
	knnTestBlock  = 128
	knnTrainBlock = 2048
)

// KNN classifies every row of test: [m, d] by weighted k-nearest-neighbour
// voting over train: [n, d] with labels in [0, c), as DINO's eval_knn: both
// sets are L2-normalised, similarity is the cosine (a dot product), the k
// most similar training rows vote for their class with weight exp(sim / T),
// and the class with the largest total wins (ties: the lower class).
// Neighbours of equal similarity are taken in training-set order.
func KNN(train []float32, trainLabels []int, test []float32, d, c int, opts KNNOptions) ([]int, error) {
	n := len(trainLabels)
	if d <= 0 || c < 1 || n == 0 || len(train) != n*d || len(test)%d != 0 {
		return nil, fmt.Errorf("knn: train has %d values for %d labels and test %d values, want rows of %d", len(train), n, len(test), d)
	}
	if err := checkLabels(trainLabels, c); err != nil {
		return nil, fmt.Errorf("knn: %w", err)
	}
	k, temp := opts.K, opts.T
	if k <= 0 {
		k = defaultKNNK
	}
	if temp <= 0 {
		temp = 0.07
	}
	k = min(k, n)
	m := len(test) / d
	pool := newPool(opts.Threads)
	defer pool.Close()
	eng := sgemm.New(pool, "")
	tr := l2Normalised(pool, train, n, d)
	te := l2Normalised(pool, test, m, d)
	pred := make([]int, m)
	sims := make([][]float32, pool.Size())
	pool.For((m+knnTestBlock-1)/knnTestBlock, 1, func(w, b0, b1 int) {
		if sims[w] == nil {
			sims[w] = make([]float32, knnTestBlock*knnTrainBlock)
		}
		sim := sims[w]
		heaps := make([]topK, knnTestBlock)
		for i := range heaps {
			heaps[i] = topK{sim: make([]float32, 0, k), idx: make([]int32, 0, k)}
		}
		votes := make([]float64, c)
		for b := b0; b < b1; b++ {
			lo := b * knnTestBlock
			mb := min(knnTestBlock, m-lo)
			for i := 0; i < mb; i++ {
				heaps[i].sim, heaps[i].idx = heaps[i].sim[:0], heaps[i].idx[:0]
			}
			for j0 := 0; j0 < n; j0 += knnTrainBlock {
				nb := min(knnTrainBlock, n-j0)
				// sim[mb, nb] = te[lo:lo+mb] @ tr[j0:j0+nb]^T
				eng.SgemmSerial(w, false, true, mb, nb, d, 1, te[lo*d:(lo+mb)*d], d, tr[j0*d:(j0+nb)*d], d, 0, sim, nb)
				for i := 0; i < mb; i++ {
					h := &heaps[i]
					for j, s := range sim[i*nb : (i+1)*nb] {
						h.offer(s, int32(j0+j), k)
					}
				}
			}
			for i := 0; i < mb; i++ {
				clear(votes)
				h := &heaps[i]
				for q, s := range h.sim {
					votes[trainLabels[h.idx[q]]] += math.Exp(float64(s) / temp)
				}
				best := 0
				for cl, v := range votes {
					if v > votes[best] {
						best = cl
					}
				}
				pred[lo+i] = best
			}
		}
	})
	return pred, nil
}

// topK keeps the k largest (similarity, -index) pairs seen, as a binary
// min-heap whose root is the weakest: lowest similarity, then highest index.
type topK struct {
	sim []float32
	idx []int32
}

func (h *topK) less(a, b int) bool { // a is weaker than b
	return h.sim[a] < h.sim[b] || (h.sim[a] == h.sim[b] && h.idx[a] > h.idx[b])
}

func (h *topK) swap(a, b int) {
	h.sim[a], h.sim[b] = h.sim[b], h.sim[a]
	h.idx[a], h.idx[b] = h.idx[b], h.idx[a]
}

// offer considers candidate (s, j); indices arrive in increasing order, so a
// candidate equal in similarity to the root never displaces it.
func (h *topK) offer(s float32, j int32, k int) {
	if len(h.sim) < k {
		h.sim, h.idx = append(h.sim, s), append(h.idx, j)
		for c := len(h.sim) - 1; c > 0; {
			p := (c - 1) / 2
			if !h.less(c, p) {
				break
			}
			h.swap(c, p)
			c = p
		}
		return
	}
	if !(s > h.sim[0]) {
		return
	}
	h.sim[0], h.idx[0] = s, j
	for p := 0; ; {
		l, r, w := 2*p+1, 2*p+2, p
		if l < k && h.less(l, w) {
			w = l
		}
		if r < k && h.less(r, w) {
			w = r
		}
		if w == p {
			return
		}
		h.swap(p, w)
		p = w
	}
}

// l2Normalised returns the rows of x: [n, d] divided by max(||row||, 1e-12)
// (torch.nn.functional.normalize).
func l2Normalised(pool *parallel.Pool, x []float32, n, d int) []float32 {
	out := make([]float32, n*d)
	pool.For(n, 256, func(_, lo, hi int) {
		for i := lo; i < hi; i++ {
			row := x[i*d : (i+1)*d]
			ss := 0.0
			for _, v := range row {
				ss += float64(v) * float64(v)
			}
			inv := 1 / math.Max(math.Sqrt(ss), 1e-12)
			for j, v := range row {
				out[i*d+j] = float32(float64(v) * inv)
			}
		}
	})
	return out
}
