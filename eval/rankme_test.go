package eval

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestEffectiveRankKnownSpectra(t *testing.T) {
	const eps = 1e-7
	h := func(ps ...float64) float64 {
		s := 0.0
		for _, p := range ps {
			s -= p * math.Log(p)
		}
		return math.Exp(s)
	}
	for _, tc := range []struct {
		sigma []float64
		want  float64
	}{
		{[]float64{1, 1, 1, 1}, h(0.25+eps, 0.25+eps, 0.25+eps, 0.25+eps)},
		{[]float64{3, 1}, h(0.75+eps, 0.25+eps)},
		{[]float64{2, 0, 0}, h(1+eps, eps, eps)},
		{[]float64{0, 0}, h(eps, eps)},
	} {
		if got := EffectiveRank(tc.sigma); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("%v: %v, want %v", tc.sigma, got, tc.want)
		}
	}
	if got := EffectiveRank([]float64{5, 5, 5, 0, 0}); math.Abs(got-3) > 1e-5 {
		t.Errorf("three equal values: %v", got)
	}
}

// orthonormalColumns returns a [n, r] matrix with orthonormal columns.
func orthonormalColumns(rng *rand.Rand, n, r int) []float64 {
	q := make([]float64, n*r)
	for j := 0; j < r; j++ {
		v := make([]float64, n)
		for i := range v {
			v[i] = rng.NormFloat64()
		}
		for pass := 0; pass < 2; pass++ { // Gram-Schmidt, twice for accuracy
			for p := 0; p < j; p++ {
				s := 0.0
				for i := 0; i < n; i++ {
					s += q[i*r+p] * v[i]
				}
				for i := 0; i < n; i++ {
					v[i] -= s * q[i*r+p]
				}
			}
		}
		nv := norm2(v)
		for i := 0; i < n; i++ {
			q[i*r+j] = v[i] / nv
		}
	}
	return q
}

// lowRank returns U diag(s) V^T as float32 [n, d].
func lowRank(rng *rand.Rand, n, d int, s []float64) []float32 {
	r := len(s)
	u, v := orthonormalColumns(rng, n, r), orthonormalColumns(rng, d, r)
	x := make([]float32, n*d)
	for i := 0; i < n; i++ {
		for j := 0; j < d; j++ {
			acc := 0.0
			for k := 0; k < r; k++ {
				acc += u[i*r+k] * s[k] * v[j*r+k]
			}
			x[i*d+j] = float32(acc)
		}
	}
	return x
}

func TestRankMeOfRankRMatrix(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	for _, tc := range []struct{ n, d, r int }{{500, 64, 5}, {40, 100, 7}} { // tall and wide
		s := make([]float64, tc.r)
		for i := range s {
			s[i] = 10
		}
		x := lowRank(rng, tc.n, tc.d, s)
		rm, err := RankMe(x, tc.n, tc.d)
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(rm-float64(tc.r)) > 0.01*float64(tc.r) {
			t.Errorf("%+v: RankMe %v, want about %d", tc, rm, tc.r)
		}
	}
	// Known unequal spectrum: singular values recovered.
	want := []float64{9, 4, 1, 0.5}
	x := lowRank(rng, 300, 20, want)
	sv, err := SingularValues(x, 300, 20, 2)
	if err != nil {
		t.Fatal(err)
	}
	for i, w := range want {
		if math.Abs(sv[i]-w) > 1e-4*want[0] {
			t.Fatalf("singular values %v, want %v then zeros", sv[:5], want)
		}
	}
	for _, v := range sv[len(want):] {
		if v > 1e-2 {
			t.Fatalf("spurious singular value %v", v)
		}
	}
}

func TestPerDimStd(t *testing.T) {
	// Columns: constant (std 0), [0,2,0,2] (std 2/sqrt(3)*... unbiased), 1000+[0,2,0,2].
	x := []float32{5, 0, 1000, 5, 2, 1002, 5, 0, 1000, 5, 2, 1002}
	st, err := PerDimStd(x, 4, 3)
	if err != nil {
		t.Fatal(err)
	}
	sd := math.Sqrt(4.0 / 3) // squared deviations 4*1, over n-1 = 3
	if st.Min != 0 || math.Abs(st.Mean-2*sd/3) > 1e-12 {
		t.Fatalf("%+v, want min 0 mean %v", st, 2*sd/3)
	}
	if _, err := PerDimStd(x[:3], 1, 3); err == nil {
		t.Fatal("one row accepted")
	}
}

// Rows that differ only by a shared offset have an uncentred rank near 1
// but a centred rank equal to the dimension of their spread.
func TestCenteredRankMe(t *testing.T) {
	const n, d = 400, 6
	x := make([]float32, n*d)
	for i := 0; i < n; i++ {
		for j := 0; j < d; j++ {
			x[i*d+j] = 100 // shared offset
		}
		// Spread along dims 0..2 only, equal variance, uncorrelated.
		x[i*d+i%3] += float32(1 - 2*((i/3)%2))
	}
	u, _ := RankMe(x, n, d)
	c, err := CenteredRankMe(x, n, d)
	if err != nil {
		t.Fatal(err)
	}
	if u > 1.2 {
		t.Errorf("uncentred RankMe %v, want ~1", u)
	}
	if c < 2.9 || c > 3.1 {
		t.Errorf("centred RankMe %v, want ~3", c)
	}
}
