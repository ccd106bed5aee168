package data

import (
	"strings"
	"testing"

	"github.com/hjepa-go/hjepa/config"
)

func TestOpenFromConfig(t *testing.T) {
	dir := t.TempDir()
	writeIDXDir(t, dir, 12, 4, true)
	cfg := config.Data{Dataset: "idx", Path: dir, ImageSize: 4, Channels: 1, Mean: []float64{0.5}, Std: []float64{0.5}}
	tr, err := Open(cfg, "train", 0)
	if err != nil || tr.Len() != 12 {
		t.Fatal(err)
	}
	va, err := Open(cfg, "val", 0)
	if err != nil || va.Len() != 4 {
		t.Fatal(err)
	}
	syn := config.Data{Dataset: "synthetic", ImageSize: 8, Channels: 3, SyntheticSize: 50}
	s, err := Open(syn, "train", 1)
	if err != nil || s.Len() != 50 {
		t.Fatal(err)
	}
	if v, _ := Open(syn, "val", 1); v.Len() != 10 {
		t.Fatalf("synthetic val %d", v.Len())
	}
	if _, err := Open(config.Data{Dataset: "mnistt"}, "train", 0); err == nil || !strings.Contains(err.Error(), "data.dataset") {
		t.Fatalf("got %v", err)
	}
	cfg.Augmentation = config.Augmentation{RandomCrop: true, CropScale: []float64{0.3, 1}, HorizontalFlip: true}
	tf, err := TrainTransform(cfg)
	p, ok := tf.(*Pipeline)
	if err != nil || !ok || !p.RandomResizedCrop || p.Scale != [2]float64{0.3, 1} || p.Ratio != [2]float64{0.75, 4.0 / 3} {
		t.Fatalf("%v %+v", err, tf)
	}
	cfg.Augmentation.Views = 2
	tf, err = TrainTransform(cfg)
	if v, ok := tf.(Views); err != nil || !ok || v.N != 2 {
		t.Fatalf("views 2: %v %+v", err, tf)
	}
	if c, _, _ := tf.OutShape(); c != 2*cfg.Channels {
		t.Fatalf("views 2: %d channels, want %d", c, 2*cfg.Channels)
	}
	cfg.Augmentation.Views = 0
	cfg.Augmentation.CropScale = []float64{0.9, 0.1}
	if _, err := TrainTransform(cfg); err == nil {
		t.Fatal("bad crop scale accepted")
	}
	e, err := EvalTransform(config.Data{Dataset: "imagefolder", ImageSize: 224, Channels: 3})
	if err != nil || e.ResizeTo != 256 {
		t.Fatalf("%v %+v", err, e)
	}
}
