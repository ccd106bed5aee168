//go:build !amd64 || purego

package cpu

const useAVX2 = false

func geluFwdAVX2(out, x *float32, n int)                    { panic("unreachable") }
func geluBwdAVX2(dx, dout, x *float32, n int)               { panic("unreachable") }
func expShiftAVX2(x *float32, n int, shift float32) float32 { panic("unreachable") }
