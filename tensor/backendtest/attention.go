package backendtest

import (
	"math"
	"testing"

	"github.com/hjepa-go/hjepa/tensor"
)

// attnRef is float64 attention on the packed [B, N, 3, H, Dh] layout; it
// returns out [B, N, H*Dh], lse [B, H, N] and the probabilities [B, H, N, N].
func attnRef(qkv []float64, bs, n, h, dh int, scale float64) (out, lse, prob []float64) {
	hd := h * dh
	out, lse, prob = make([]float64, bs*n*hd), make([]float64, bs*h*n), make([]float64, bs*h*n*n)
	at := func(bi, i, which, hh, d int) float64 { return qkv[((bi*n+i)*3+which)*hd+hh*dh+d] }
	for bi := 0; bi < bs; bi++ {
		for hh := 0; hh < h; hh++ {
			for i := 0; i < n; i++ {
				p := prob[((bi*h+hh)*n+i)*n:][:n]
				m := math.Inf(-1)
				for j := 0; j < n; j++ {
					var s float64
					for d := 0; d < dh; d++ {
						s += at(bi, i, 0, hh, d) * at(bi, j, 1, hh, d)
					}
					p[j] = s * scale
					m = math.Max(m, p[j])
				}
				var sum float64
				for j := range p {
					p[j] = math.Exp(p[j] - m)
					sum += p[j]
				}
				lse[(bi*h+hh)*n+i] = m + math.Log(sum)
				for j := range p {
					p[j] /= sum
				}
				for d := 0; d < dh; d++ {
					var o float64
					for j := 0; j < n; j++ {
						o += p[j] * at(bi, j, 2, hh, d)
					}
					out[(bi*n+i)*hd+hh*dh+d] = o
				}
			}
		}
	}
	return out, lse, prob
}

// attnGradRef is the float64 backward of attnRef for L = sum(dout * out).
func attnGradRef(qkv, dout []float64, bs, n, h, dh int, scale float64) []float64 {
	hd := h * dh
	_, _, prob := attnRef(qkv, bs, n, h, dh, scale)
	g := make([]float64, len(qkv))
	idx := func(bi, i, which, hh, d int) int { return ((bi*n+i)*3+which)*hd + hh*dh + d }
	dp := make([]float64, n)
	for bi := 0; bi < bs; bi++ {
		for hh := 0; hh < h; hh++ {
			for i := 0; i < n; i++ {
				p := prob[((bi*h+hh)*n+i)*n:][:n]
				do := dout[(bi*n+i)*hd+hh*dh:][:dh]
				var delta float64
				for j := 0; j < n; j++ {
					var s float64
					for d := 0; d < dh; d++ {
						s += do[d] * qkv[idx(bi, j, 2, hh, d)]
						g[idx(bi, j, 2, hh, d)] += p[j] * do[d] // dV
					}
					dp[j] = s
					delta += p[j] * s
				}
				for j := 0; j < n; j++ {
					ds := p[j] * (dp[j] - delta) * scale
					for d := 0; d < dh; d++ {
						g[idx(bi, i, 0, hh, d)] += ds * qkv[idx(bi, j, 1, hh, d)]
						g[idx(bi, j, 1, hh, d)] += ds * qkv[idx(bi, i, 0, hh, d)]
					}
				}
			}
		}
	}
	return g
}

type attnCase struct{ b, n, h, dh int }

var attnCases = []attnCase{{1, 1, 1, 1}, {2, 7, 3, 5}, {1, 13, 2, 8}, {2, 37, 2, 16}, {1, 67, 1, 32}}

// testAttentionForward: out and lse against float64 (relative L2 2e-6).
// Inputs are scaled so that softmax rows are far from uniform.
func testAttentionForward(t *testing.T, b tensor.Backend) {
	r := newRand(9)
	for _, c := range attnCases {
		qv := randn(r, c.b*c.n*3*c.h*c.dh, 1.5)
		scale := 1 / math.Sqrt(float64(c.dh))
		qkv := upload(b, qv, c.b, c.n, 3*c.h*c.dh)
		out := b.New(tensor.Float32, c.b, c.n, c.h*c.dh)
		lse := b.New(tensor.Float32, c.b, c.h, c.n)
		b.AttentionForward(out, lse, qkv, c.h, float32(scale))
		wo, wl, _ := attnRef(to64(qv), c.b, c.n, c.h, c.dh, scale)
		checkClose(t, name("AttentionForward out %+v", c), download(b, out), wo, 2e-6)
		checkClose(t, name("AttentionForward lse %+v", c), download(b, lse), wl, 1e-6)
	}
}

// testAttentionBackward: the float64 reference backward is checked against
// central finite differences on the small cases (relative L2 1e-6), and the
// backend's dqkv (which must be overwritten: it starts as NaN) against the
// reference (relative L2 1e-5).
func testAttentionBackward(t *testing.T, b tensor.Backend) {
	r := newRand(10)
	for _, c := range attnCases {
		qv := randn(r, c.b*c.n*3*c.h*c.dh, 1.5)
		gv := randn(r, c.b*c.n*c.h*c.dh, 1)
		scale := 1 / math.Sqrt(float64(c.dh))
		q64, g64 := to64(qv), to64(gv)
		ref := memo(name("attention %+v", c), func() [][]float64 {
			res := [][]float64{attnGradRef(q64, g64, c.b, c.n, c.h, c.dh, scale)}
			if len(qv) <= 700 {
				res = append(res, fdGrad(q64, func(x []float64) float64 {
					o, _, _ := attnRef(x, c.b, c.n, c.h, c.dh, scale)
					return dot64(o, g64)
				}))
			}
			return res
		})
		want := ref[0]
		if len(ref) > 1 {
			fd := ref[1]
			got := make([]float32, len(want))
			for i, w := range want {
				got[i] = float32(w)
			}
			checkClose(t, name("attention reference gradient vs finite differences %+v", c), got, fd, 1e-6)
		}
		qkv := upload(b, qv, c.b, c.n, 3*c.h*c.dh)
		out := b.New(tensor.Float32, c.b, c.n, c.h*c.dh)
		lse := b.New(tensor.Float32, c.b, c.h, c.n)
		b.AttentionForward(out, lse, qkv, c.h, float32(scale))
		dqkv := b.New(tensor.Float32, c.b, c.n, 3*c.h*c.dh)
		b.Fill(dqkv, float32(math.NaN()))
		b.AttentionBackward(dqkv, upload(b, gv, c.b, c.n, c.h*c.dh), qkv, out, lse, c.h, float32(scale))
		checkClose(t, name("AttentionBackward dqkv %+v", c), download(b, dqkv), want, 1e-5)
	}
}
