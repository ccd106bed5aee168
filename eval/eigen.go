package eval

import (
	"fmt"
	"math"
	"sort"
)

// SymEig computes the eigenvalues (ascending) of the symmetric n x n matrix a
// (row-major, only symmetric input is meaningful; a is not modified) and,
// when vectors is true, the orthonormal eigenvectors as the rows of vecs:
// a = vecs^T diag(values) vecs, i.e. a @ vecs[i] = values[i] * vecs[i].
//
// Householder reduction to tridiagonal form followed by the implicit QL
// algorithm with Wilkinson-style shifts (EISPACK tred2/tql2, as in JAMA),
// float64 throughout. The working matrix is kept transposed with respect to
// the textbook so that every inner loop walks memory contiguously. Without
// vectors the cost is about 4/3 n^3 flops (n = 1280: a few seconds).
func SymEig(a []float64, n int, vectors bool) (values, vecs []float64, err error) {
	if n <= 0 || len(a) != n*n {
		return nil, nil, fmt.Errorf("symeig: matrix has %d elements, want %d x %d", len(a), n, n)
	}
	for _, v := range a {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, nil, fmt.Errorf("symeig: matrix has non-finite entries")
		}
	}
	m := append([]float64(nil), a...) // m[b*n+a] is the textbook V[a][b]
	d := make([]float64, n)
	e := make([]float64, n)
	tred2(m, n, d, e, vectors)
	if err := tql2(m, n, d, e, vectors); err != nil {
		return nil, nil, err
	}
	// Sort ascending, moving the vectors (rows of m) along.
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(i, j int) bool { return d[idx[i]] < d[idx[j]] })
	values = make([]float64, n)
	for i, k := range idx {
		values[i] = d[k]
	}
	if vectors {
		vecs = make([]float64, n*n)
		for i, k := range idx {
			copy(vecs[i*n:(i+1)*n], m[k*n:(k+1)*n])
		}
	}
	return values, vecs, nil
}

// tred2 reduces the symmetric matrix in m to tridiagonal form: diagonal in d,
// subdiagonal in e[1:] (e[0] = 0). With vectors it leaves the orthogonal
// transformation in m (row i = column i of the textbook V).
func tred2(m []float64, n int, d, e []float64, vectors bool) {
	// V[a][b] = m[b*n+a]; row a of V is strided, column b contiguous.
	for j := 0; j < n; j++ {
		d[j] = m[j*n+n-1]
	}
	for i := n - 1; i > 0; i-- {
		scale, h := 0.0, 0.0
		for k := 0; k < i; k++ {
			scale += math.Abs(d[k])
		}
		if scale == 0 {
			e[i] = d[i-1]
			for j := 0; j < i; j++ {
				d[j] = m[j*n+i-1]
				m[j*n+i] = 0
				m[i*n+j] = 0
			}
			d[i] = h
			continue
		}
		// Householder vector.
		for k := 0; k < i; k++ {
			d[k] /= scale
			h += d[k] * d[k]
		}
		f := d[i-1]
		g := math.Sqrt(h)
		if f > 0 {
			g = -g
		}
		e[i] = scale * g
		h -= f * g
		d[i-1] = f - g
		for j := 0; j < i; j++ {
			e[j] = 0
		}
		// Apply the similarity transformation to the remaining columns.
		for j := 0; j < i; j++ {
			f = d[j]
			m[i*n+j] = f // V[j][i]
			col := m[j*n : j*n+i]
			g = e[j] + col[j]*f
			for k := j + 1; k < i; k++ {
				g += col[k] * d[k]
				e[k] += col[k] * f
			}
			e[j] = g
		}
		f = 0
		for j := 0; j < i; j++ {
			e[j] /= h
			f += e[j] * d[j]
		}
		hh := f / (h + h)
		for j := 0; j < i; j++ {
			e[j] -= hh * d[j]
		}
		for j := 0; j < i; j++ {
			f, g = d[j], e[j]
			col := m[j*n : j*n+i]
			for k := j; k < i; k++ {
				col[k] -= f*e[k] + g*d[k]
			}
			d[j] = m[j*n+i-1]
			m[j*n+i] = 0 // V[i][j]
		}
		d[i] = h
	}
	if !vectors {
		for i := 0; i < n; i++ {
			d[i] = m[i*n+i]
		}
		e[0] = 0
		return
	}
	// Accumulate the transformations.
	for i := 0; i < n-1; i++ {
		m[i*n+n-1] = m[i*n+i] // V[n-1][i] = V[i][i]
		m[i*n+i] = 1
		h := d[i+1]
		vi1 := m[(i+1)*n : (i+1)*n+i+1] // V[0..i][i+1]
		if h != 0 {
			for k := 0; k <= i; k++ {
				d[k] = vi1[k] / h
			}
			for j := 0; j <= i; j++ {
				vj := m[j*n : j*n+i+1]
				g := 0.0
				for k := 0; k <= i; k++ {
					g += vi1[k] * vj[k]
				}
				for k := 0; k <= i; k++ {
					vj[k] -= g * d[k]
				}
			}
		}
		for k := 0; k <= i; k++ {
			vi1[k] = 0
		}
	}
	for j := 0; j < n; j++ {
		d[j] = m[j*n+n-1]
		m[j*n+n-1] = 0
	}
	m[(n-1)*n+n-1] = 1
	e[0] = 0
}

// tql2 diagonalises the tridiagonal matrix (d, e) by implicit QL iterations,
// leaving the eigenvalues in d and, with vectors, rotating the rows of m.
func tql2(m []float64, n int, d, e []float64, vectors bool) error {
	for i := 1; i < n; i++ {
		e[i-1] = e[i]
	}
	e[n-1] = 0
	f, tst1 := 0.0, 0.0
	const eps = 0x1p-52
	for l := 0; l < n; l++ {
		tst1 = math.Max(tst1, math.Abs(d[l])+math.Abs(e[l]))
		mm := l
		for mm < n && math.Abs(e[mm]) > eps*tst1 {
			mm++
		}
		if mm >= n {
			mm = n - 1
		}
		if mm > l {
			for iter := 0; ; iter++ {
				if iter > 100 {
					return fmt.Errorf("symeig: QL iteration did not converge for eigenvalue %d", l)
				}
				// Implicit shift.
				g := d[l]
				p := (d[l+1] - g) / (2 * e[l])
				r := math.Hypot(p, 1)
				if p < 0 {
					r = -r
				}
				d[l] = e[l] / (p + r)
				d[l+1] = e[l] * (p + r)
				dl1 := d[l+1]
				h := g - d[l]
				for i := l + 2; i < n; i++ {
					d[i] -= h
				}
				f += h
				// Implicit QL transformation.
				p = d[mm]
				c, c2, c3 := 1.0, 1.0, 1.0
				el1 := e[l+1]
				s, s2 := 0.0, 0.0
				for i := mm - 1; i >= l; i-- {
					c3 = c2
					c2 = c
					s2 = s
					g = c * e[i]
					h = c * p
					r = math.Hypot(p, e[i])
					e[i+1] = s * r
					s = e[i] / r
					c = p / r
					p = c*d[i] - s*g
					d[i+1] = h + s*(c*g+s*d[i])
					if vectors {
						vi := m[i*n : (i+1)*n]
						vi1 := m[(i+1)*n : (i+2)*n]
						for k := range vi {
							h = vi1[k]
							vi1[k] = s*vi[k] + c*h
							vi[k] = c*vi[k] - s*h
						}
					}
				}
				p = -s * s2 * c3 * el1 * e[l] / dl1
				e[l] = s * p
				d[l] = c * p
				if math.Abs(e[l]) <= eps*tst1 {
					break
				}
			}
		}
		d[l] += f
		e[l] = 0
	}
	return nil
}
