package eval

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestSymEigKnown(t *testing.T) {
	vals, vecs, err := SymEig([]float64{3, 0, 0, 0, -1, 0, 0, 0, 2}, 3, true)
	if err != nil {
		t.Fatal(err)
	}
	for i, w := range []float64{-1, 2, 3} {
		if vals[i] != w {
			t.Fatalf("diagonal: values %v", vals)
		}
	}
	// Eigenvector of -1 is +-e1.
	if math.Abs(math.Abs(vecs[1])-1) > 1e-15 {
		t.Fatalf("diagonal: vectors %v", vecs)
	}
	a, b, c := 2.0, 1.5, -0.5
	vals, _, err = SymEig([]float64{a, b, b, c}, 2, false)
	if err != nil {
		t.Fatal(err)
	}
	r := math.Hypot((a-c)/2, b)
	if math.Abs(vals[0]-((a+c)/2-r)) > 1e-14 || math.Abs(vals[1]-((a+c)/2+r)) > 1e-14 {
		t.Fatalf("2x2: %v, want %v %v", vals, (a+c)/2-r, (a+c)/2+r)
	}
	vals, _, err = SymEig([]float64{7}, 1, true)
	if err != nil || vals[0] != 7 {
		t.Fatalf("1x1: %v %v", vals, err)
	}
	if _, _, err := SymEig([]float64{1, 2, 3}, 2, false); err == nil {
		t.Fatal("wrong size accepted")
	}
}

func TestSymEigRandomReconstructs(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{2, 5, 40, 101} {
		a := make([]float64, n*n)
		for i := 0; i < n; i++ {
			for j := 0; j <= i; j++ {
				v := rng.NormFloat64()
				a[i*n+j], a[j*n+i] = v, v
			}
		}
		if n == 40 { // repeated eigenvalues: a low-rank matrix
			for i := range a {
				a[i] = 0
			}
			u := []float64{}
			for i := 0; i < n; i++ {
				u = append(u, rng.NormFloat64())
			}
			for i := 0; i < n; i++ {
				for j := 0; j < n; j++ {
					a[i*n+j] = u[i] * u[j]
				}
			}
		}
		vals, v, err := SymEig(a, n, true)
		if err != nil {
			t.Fatal(err)
		}
		only, _, err := SymEig(a, n, false)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i++ {
			if i > 0 && vals[i] < vals[i-1] {
				t.Fatalf("n=%d: values not ascending", n)
			}
			if math.Abs(only[i]-vals[i]) > 1e-12*math.Max(1, math.Abs(vals[i])) {
				t.Fatalf("n=%d: values-only %v differs from %v", n, only[i], vals[i])
			}
			for j := 0; j < n; j++ {
				// (V^T diag V)[i][j] and V V^T = I
				s, o := 0.0, 0.0
				for k := 0; k < n; k++ {
					s += v[k*n+i] * vals[k] * v[k*n+j]
					o += v[i*n+k] * v[j*n+k]
				}
				if math.Abs(s-a[i*n+j]) > 1e-9 {
					t.Fatalf("n=%d: reconstruction [%d,%d] = %v, want %v", n, i, j, s, a[i*n+j])
				}
				want := 0.0
				if i == j {
					want = 1
				}
				if math.Abs(o-want) > 1e-9 {
					t.Fatalf("n=%d: V V^T [%d,%d] = %v", n, i, j, o)
				}
			}
		}
	}
}
