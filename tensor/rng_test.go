package tensor

import (
	"math"
	"testing"
)

// The Philox4x32-10 known-answer vectors from the Random123 distribution
// (kat_vectors: philox4x32 10).
func TestPhiloxKnownAnswers(t *testing.T) {
	cases := []struct {
		in   [6]uint32
		want [4]uint32
	}{
		{[6]uint32{0, 0, 0, 0, 0, 0}, [4]uint32{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
		{[6]uint32{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, [4]uint32{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
		{[6]uint32{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0}, [4]uint32{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
	}
	for _, c := range cases {
		got := Philox4x32(c.in[0], c.in[1], c.in[2], c.in[3], c.in[4], c.in[5])
		if got != c.want {
			t.Errorf("Philox4x32(%x) = %x, want %x", c.in, got, c.want)
		}
	}
}

func TestRNGMoments(t *testing.T) {
	r := NewRNG(7)
	const n = 200000
	var su, sn, sn2 float64
	for i := 0; i < n; i++ {
		u := float64(r.UniformAt(i))
		if u < 0 || u >= 1 {
			t.Fatalf("uniform draw %v outside [0,1)", u)
		}
		su += u
		x := r.NormalAt(i)
		sn += x
		sn2 += x * x
	}
	if m := su / n; math.Abs(m-0.5) > 0.005 {
		t.Errorf("uniform mean %v", m)
	}
	if m := sn / n; math.Abs(m) > 0.01 {
		t.Errorf("normal mean %v", m)
	}
	if v := sn2 / n; math.Abs(v-1) > 0.02 {
		t.Errorf("normal variance %v", v)
	}
	for i := 0; i < 10000; i++ {
		if x := r.TruncNormalAt(i, 0, 1, -0.5, 0.7); x < -0.5 || x > 0.7 {
			t.Fatalf("trunc normal draw %v outside bounds", x)
		}
	}
}
