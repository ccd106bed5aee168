package device

import (
	"bytes"
	"strings"
	"testing"

	"github.com/hjepa-go/hjepa/config"
	"github.com/hjepa-go/hjepa/tensor"
)

// Device selection on a machine without a usable GPU (the CI machines):
// auto falls back to the CPU and says why in one line; cuda is an error that
// names the device and the way out. On a GPU machine auto must pick the GPU.
func TestOpenDevice(t *testing.T) {
	c := config.Default()
	c.Threads = 1
	_, gpuErr := openGPU(0, false)

	c.Device = "auto"
	b, fallback, err := Open(c)
	if err != nil {
		t.Fatal(err)
	}
	if gpuErr == nil {
		if b.Device().Type != tensor.CUDA || fallback != "" {
			t.Errorf("auto with a GPU: %s, fallback %q", b.Name(), fallback)
		}
		return
	}
	if b.Device().Type != tensor.CPU || !strings.HasPrefix(fallback, "device auto: ") || !strings.HasSuffix(fallback, "using the CPU") || strings.Contains(fallback, "\n") {
		t.Errorf("auto without a GPU: backend %s, fallback %q", b.Name(), fallback)
	}
	t.Logf("fallback line: %s", fallback)

	for _, dev := range []string{"cuda", "cuda:1"} {
		c.Device = dev
		_, _, err := Open(c)
		if err == nil || !strings.Contains(err.Error(), "device "+dev+": ") || !strings.Contains(err.Error(), "--device cpu") {
			t.Errorf("%s without a GPU: err = %v", dev, err)
		}
	}
	c.Device = "cuda:x"
	if _, _, err := Open(c); err == nil || !strings.Contains(err.Error(), "cuda:K") {
		t.Errorf("cuda:x: err = %v", err)
	}
}

// List always says something: the GPUs, or why training runs on the CPU.
func TestListSaysWhy(t *testing.T) {
	var out bytes.Buffer
	if err := List(&out); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	if _, err := Discover(); err == nil {
		if !strings.Contains(s, "GPU") {
			t.Errorf("List with a driver: %q", s)
		}
		return
	}
	if !strings.Contains(s, "training runs on the CPU") {
		t.Errorf("List without a GPU: %q", s)
	}
}
