package eval

import (
	"fmt"
	"math"

	"github.com/hjepa-go/hjepa/tensor/parallel"
	"github.com/hjepa-go/hjepa/tensor/sgemm"
)

// rankMeEps is the epsilon added to the normalised singular values before the
// entropy, as in Garrido et al. (2023).
const rankMeEps = 1e-7

// newPool starts a pool of threads workers (<= 0: GOMAXPROCS).
func newPool(threads int) *parallel.Pool { return parallel.New(threads) }

// RankMe is the effective rank of the feature matrix x: [n, d] (Garrido et
// al., "RankMe", 2023): exp(-sum_k p_k log p_k) with p_k = sigma_k /
// sum(sigma) + 1e-7 over the min(n, d) singular values sigma_k of x (not
// centred). It lies in [1, min(n, d)] up to the epsilon; a collapsed
// representation scores near 1.
func RankMe(x []float32, n, d int) (float64, error) {
	sigma, err := SingularValues(x, n, d, 0)
	if err != nil {
		return 0, fmt.Errorf("rankme: %w", err)
	}
	return EffectiveRank(sigma), nil
}

// EffectiveRank is exp(H(p)) with p_k = sigma_k / sum(sigma) + 1e-7 for the
// non-negative spectrum sigma. A spectrum with r equal non-zero values gives
// r (to about 1e-6); an all-zero one gives about 1.
func EffectiveRank(sigma []float64) float64 {
	sum := 0.0
	for _, s := range sigma {
		sum += s
	}
	h := 0.0
	for _, s := range sigma {
		p := rankMeEps
		if sum > 0 {
			p += s / sum
		}
		h -= p * math.Log(p)
	}
	return math.Exp(h)
}

// SingularValues returns the min(n, d) singular values of x: [n, d],
// descending, as the square roots of the eigenvalues of the smaller Gram
// matrix (x^T x or x x^T). The Gram matrix is formed with float32 products
// over row blocks of 2048 accumulated in float64, so singular values below
// about 1e-3 of the largest are not resolved (they barely move RankMe).
func SingularValues(x []float32, n, d, threads int) ([]float64, error) {
	if n <= 0 || d <= 0 || len(x) != n*d {
		return nil, fmt.Errorf("features have %d elements, want %d x %d", len(x), n, d)
	}
	pool := newPool(threads)
	defer pool.Close()
	eng := sgemm.New(pool, "")
	const block = 2048
	var g []float64
	var m int
	if d <= n {
		m = d
		g = make([]float64, m*m)
		tmp := make([]float32, m*m)
		for lo := 0; lo < n; lo += block {
			nb := min(block, n-lo)
			xb := x[lo*d : (lo+nb)*d]
			// tmp[d, d] = xb^T @ xb, xb: [nb, d]
			eng.Sgemm(true, false, d, d, nb, 1, xb, d, xb, d, 0, tmp, d)
			addF32(pool, g, tmp)
		}
	} else {
		m = n
		g = make([]float64, m*m)
		tmp := make([]float32, m*m)
		for lo := 0; lo < d; lo += block {
			kb := min(block, d-lo)
			// tmp[n, n] = x[:, lo:lo+kb] @ x[:, lo:lo+kb]^T
			eng.Sgemm(false, true, n, n, kb, 1, x[lo:], d, x[lo:], d, 0, tmp, n)
			addF32(pool, g, tmp)
		}
	}
	// Symmetrise exactly: the two triangles come from different kernel tiles.
	for i := 0; i < m; i++ {
		for j := i + 1; j < m; j++ {
			v := 0.5 * (g[i*m+j] + g[j*m+i])
			g[i*m+j], g[j*m+i] = v, v
		}
	}
	lambda, _, err := SymEig(g, m, false)
	if err != nil {
		return nil, err
	}
	sigma := make([]float64, m)
	for i, l := range lambda {
		sigma[m-1-i] = math.Sqrt(math.Max(l, 0))
	}
	return sigma, nil
}

// addF32 adds src to dst elementwise in float64.
func addF32(pool *parallel.Pool, dst []float64, src []float32) {
	pool.For(len(dst), 1<<16, func(_, lo, hi int) {
		for i := lo; i < hi; i++ {
			dst[i] += float64(src[i])
		}
	})
}

// DimStd summarises the per-dimension standard deviations of a feature
// matrix: their mean and their minimum. A dimension whose std sinks to 0 has
// collapsed to a constant.
type DimStd struct {
	Mean, Min float64
}

// PerDimStd computes the unbiased (n-1) standard deviation of every column of
// x: [n, d] in float64 (two passes: means, then squared deviations) and
// returns their mean and minimum. n must be at least 2.
func PerDimStd(x []float32, n, d int) (DimStd, error) {
	if n < 2 || d <= 0 || len(x) != n*d {
		return DimStd{}, fmt.Errorf("per-dim std: features have %d elements, want %d x %d with at least 2 rows", len(x), n, d)
	}
	pool := newPool(0)
	defer pool.Close()
	// Fixed chunks (not per worker) so the sums do not depend on scheduling.
	const rows = 4096
	chunks := (n + rows - 1) / rows
	part := make([]float64, chunks*d)
	colSums := func(mean []float64) []float64 {
		clear(part)
		pool.For(chunks, 1, func(_, c0, c1 int) {
			for c := c0; c < c1; c++ {
				acc := part[c*d : (c+1)*d]
				for i := c * rows; i < min(n, (c+1)*rows); i++ {
					row := x[i*d : (i+1)*d]
					if mean == nil {
						for j, v := range row {
							acc[j] += float64(v)
						}
					} else {
						for j, v := range row {
							t := float64(v) - mean[j]
							acc[j] += t * t
						}
					}
				}
			}
		})
		out := make([]float64, d)
		for c := 0; c < chunks; c++ {
			for j := range out {
				out[j] += part[c*d+j]
			}
		}
		return out
	}
	mean := colSums(nil)
	for j := range mean {
		mean[j] /= float64(n)
	}
	ss := colSums(mean)
	res := DimStd{Min: math.Inf(1)}
	for _, s := range ss {
		sd := math.Sqrt(s / float64(n-1))
		res.Mean += sd
		res.Min = math.Min(res.Min, sd)
	}
	res.Mean /= float64(d)
	return res, nil
}

// CenteredRankMe is RankMe of x with its column means removed. Mean-pooled
// ViT features share a large common component (the fixed positions and the
// final LayerNorm's bias), so the uncentred spectrum is dominated by one
// direction at initialisation as much as after a collapse; only the centred
// spectrum says how many directions actually tell images apart, which is
// what the collapse monitor needs. A collapsed representation scores ~1.
func CenteredRankMe(x []float32, n, d int) (float64, error) {
	if n <= 0 || d <= 0 || len(x) != n*d {
		return 0, fmt.Errorf("rankme: features have %d elements, want %d x %d", len(x), n, d)
	}
	mean := make([]float64, d)
	for i := 0; i < n; i++ {
		for j, v := range x[i*d : (i+1)*d] {
			mean[j] += float64(v)
		}
	}
	c := make([]float32, n*d)
	for i := 0; i < n; i++ {
		for j, v := range x[i*d : (i+1)*d] {
			c[i*d+j] = float32(float64(v) - mean[j]/float64(n))
		}
	}
	return RankMe(c, n, d)
}
