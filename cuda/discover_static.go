//go:build !cgo

package cuda

// go-nvml is cgo; a static build (CGO_ENABLED=0) discovers through libcuda.
const nvmlBuilt = false

func discoverNVML() (Discovery, error) { return discoverDriver("") }
