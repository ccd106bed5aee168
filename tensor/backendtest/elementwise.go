package backendtest

import (
	"testing"

	"github.com/hjepa-go/hjepa/tensor"
)

// testElementwise: Fill, Copy, Scale, Axpy, Add (also aliased) compared with
// float64 references; exact or relative L2 1e-7.
func testElementwise(t *testing.T, b tensor.Backend) {
	r := newRand(2)
	for _, n := range []int{1, 7, 1000, short(40009, 200003)} {
		xv, yv := randn(r, n, 1), randn(r, n, 2)
		x := upload(b, xv, n)
		y := upload(b, yv, n)

		f := b.New(tensor.Float32, n)
		b.Fill(f, 2.5)
		want := make([]float32, n)
		for i := range want {
			want[i] = 2.5
		}
		checkEqual(t, name("Fill n=%d", n), download(b, f), want)

		b.Copy(f, x)
		checkEqual(t, name("Copy n=%d", n), download(b, f), xv)

		b.Scale(f, -1.5)
		w := make([]float64, n)
		for i := range w {
			w[i] = float64(xv[i]) * -1.5
		}
		checkClose(t, name("Scale n=%d", n), download(b, f), w, 1e-7)

		b.Copy(f, y)
		b.Axpy(f, 0.75, x)
		for i := range w {
			w[i] = float64(yv[i]) + 0.75*float64(xv[i])
		}
		checkClose(t, name("Axpy n=%d", n), download(b, f), w, 1e-7)

		d := b.New(tensor.Float32, n)
		b.Add(d, x, y)
		for i := range w {
			w[i] = float64(xv[i]) + float64(yv[i])
		}
		checkClose(t, name("Add n=%d", n), download(b, d), w, 1e-7)
		b.Add(x, x, y) // dst aliases a
		checkClose(t, name("Add aliased n=%d", n), download(b, x), w, 1e-7)
	}
}

// testRowVector: AddRowVector over a [B, N, D] tensor and as a position
// table over [B, N*D]; SumRows accumulating into a non-zero dst. Relative L2
// 1e-6 (SumRows adds up to 517 rows).
func testRowVector(t *testing.T, b tensor.Backend) {
	r := newRand(3)
	for _, sh := range [][3]int{{1, 1, 1}, {2, 7, 13}, {3, 17, 64}, {1, 517, 3}} {
		bs, n, d := sh[0], sh[1], sh[2]
		xv, vv := randn(r, bs*n*d, 1), randn(r, d, 1)
		x := upload(b, xv, bs, n, d)
		b.AddRowVector(x, upload(b, vv, d))
		want := make([]float64, len(xv))
		for i := range want {
			want[i] = float64(xv[i]) + float64(vv[i%d])
		}
		checkClose(t, name("AddRowVector %v", sh), download(b, x), want, 1e-7)

		pv := randn(r, n*d, 1)
		x2 := upload(b, xv, bs, n*d)
		b.AddRowVector(x2, upload(b, pv, n*d))
		for i := range want {
			want[i] = float64(xv[i]) + float64(pv[i%(n*d)])
		}
		checkClose(t, name("AddRowVector position table %v", sh), download(b, x2), want, 1e-7)

		dv := randn(r, d, 1)
		dst := upload(b, dv, d)
		b.SumRows(dst, upload(b, xv, bs, n, d))
		ws := to64(dv)
		for i, v := range xv {
			ws[i%d] += float64(v)
		}
		checkClose(t, name("SumRows %v", sh), download(b, dst), ws, 1e-6)
	}
}

// testPatchify compares with direct indexing; exact.
func testPatchify(t *testing.T, b tensor.Backend) {
	r := newRand(4)
	for _, c := range []struct{ bs, ch, h, w, p int }{{1, 1, 1, 1, 1}, {2, 3, 8, 12, 4}, {3, 2, 10, 5, 5}} {
		iv := randn(r, c.bs*c.ch*c.h*c.w, 1)
		img := upload(b, iv, c.bs, c.ch, c.h, c.w)
		gh, gw := c.h/c.p, c.w/c.p
		pd := c.ch * c.p * c.p
		dst := b.New(tensor.Float32, c.bs, gh*gw, pd)
		b.Patchify(dst, img, c.p)
		want := make([]float32, dst.Numel())
		for bi := 0; bi < c.bs; bi++ {
			for py := 0; py < gh; py++ {
				for px := 0; px < gw; px++ {
					for ch := 0; ch < c.ch; ch++ {
						for i := 0; i < c.p; i++ {
							for j := 0; j < c.p; j++ {
								want[(bi*gh*gw+py*gw+px)*pd+(ch*c.p+i)*c.p+j] = iv[((bi*c.ch+ch)*c.h+py*c.p+i)*c.w+px*c.p+j]
							}
						}
					}
				}
			}
		}
		checkEqual(t, name("Patchify %+v", c), download(b, dst), want)
	}
}

// testEMA: target = m*target + (1-m)*src; relative L2 1e-7.
func testEMA(t *testing.T, b tensor.Backend) {
	r := newRand(5)
	for _, n := range []int{1, 13, short(30011, 100003)} {
		tv, sv := randn(r, n, 1), randn(r, n, 1)
		tg := upload(b, tv, n)
		for _, m := range []float32{0.996, 1, 0} {
			b.EMA(tg, upload(b, sv, n), m)
			want := make([]float64, n)
			for i := range want {
				want[i] = float64(m)*float64(tv[i]) + (1-float64(m))*float64(sv[i])
			}
			checkClose(t, name("EMA n=%d m=%v", n, m), download(b, tg), want, 1e-7)
			tv = download(b, tg)
		}
	}
}
