package main

import "testing"

func TestLayerOf(t *testing.T) {
	for pkg, want := range map[string]int{
		"tensor": 0, "tensor/cpu": 0, "train/checkpoint": 0, "nn": 1, "optim": 1, "jepa": 2, "device": 2,
		"train": 3, "eval": 3, "worker": 4, "bench": 5, "cmd/hjepa": 6, "somewhere/new": -1,
	} {
		if got := layerOf(pkg); got != want {
			t.Errorf("layerOf(%q) = %d, want %d", pkg, got, want)
		}
	}
}
