package data

import (
	"fmt"
	"math"
	"os"
	"path/filepath"

	"github.com/hjepa-go/hjepa/config"
)

// SyntheticClasses is the number of classes of the synthetic dataset
// (config.Data has no field for it).
var SyntheticClasses = 10

// Open opens split ("train" or "val") of the dataset cfg describes.
// data.val_path, when set, is the validation split's location; otherwise
// the dataset's own test split (IDX t10k, CIFAR test, ImageFolder val/ or
// test/) is used; WebDataset shards have none, so their val split needs
// data.val_path. seed only matters for the synthetic dataset.
func Open(cfg config.Data, split string, seed int64) (Dataset, error) {
	val := split == "val" || split == "test"
	path := cfg.Path
	if val && cfg.ValPath != "" {
		path = cfg.ValPath
	}
	switch cfg.Dataset {
	case "idx":
		if st, err := os.Stat(path); err == nil && !st.IsDir() {
			return OpenIDXFiles(path, IDXLabelsPath(path))
		}
		sp := "train"
		if val {
			sp = "test"
		}
		return OpenIDX(path, sp)
	case "cifar10", "cifar100":
		sp := "train"
		if val && cfg.ValPath == "" {
			sp = "test"
		}
		return OpenCIFAR(path, cfg.Dataset, sp)
	case "imagefolder":
		ch := cfg.Channels
		if ch == 0 {
			ch = 3
		}
		return OpenImageFolder(imageFolderSplit(path, val && cfg.ValPath == ""), ch, cfg.MaxImagePixels)
	case "webdataset":
		if val && cfg.ValPath == "" {
			return nil, fmt.Errorf("webdataset %q: shards have no built-in validation split; set data.val_path to the validation shards (e.g. shards/val-{000000..000007}.tar)", cfg.Path)
		}
		ch := cfg.Channels
		if ch == 0 {
			ch = 3
		}
		sp := "train"
		if val {
			sp = "val"
		}
		return OpenWebDataset(path, WebDatasetOptions{Channels: ch, MaxPixels: cfg.MaxImagePixels, Split: sp, ShardShuffle: cfg.ShardShuffle == "shard"})
	case "synthetic":
		n := cfg.SyntheticSize
		if n <= 0 {
			n = 1000
		}
		s := seed
		if val {
			n, s = max(n/5, 1), seed+1_000_003
		}
		ch := cfg.Channels
		if ch == 0 {
			ch = 3
		}
		d, err := NewSynthetic(n, SyntheticClasses, ch, cfg.ImageSize, s)
		if err == nil && val {
			d.info.Split = "val"
		}
		return d, err
	}
	return nil, fmt.Errorf("data.dataset %q: unknown (want idx, cifar10, cifar100, imagefolder, synthetic or webdataset)", cfg.Dataset)
}

// imageFolderSplit picks root/train or root/{val,test} when they exist.
func imageFolderSplit(root string, val bool) string {
	names := []string{"train"}
	if val {
		names = []string{"val", "test"}
	}
	for _, n := range names {
		if p := filepath.Join(root, n); isDir(p) {
			return p
		}
	}
	return root
}

func toF32(v []float64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}

func pair(v []float64, def [2]float64) [2]float64 {
	if len(v) == 2 {
		return [2]float64{v[0], v[1]}
	}
	return def
}

// TrainTransform is the I-JEPA training transform from cfg: random resized
// crop (default scale [0.3, 1], ratio [3/4, 4/3]) or the eval geometry,
// optional flip and colour jitter, then normalisation.
func TrainTransform(cfg config.Data) (Transform, error) {
	a := cfg.Augmentation
	p := &Pipeline{
		Size:              cfg.ImageSize,
		Channels:          cfg.Channels,
		RandomResizedCrop: a.RandomCrop,
		Scale:             pair(a.CropScale, [2]float64{0.3, 1}),
		Ratio:             pair(a.CropRatio, [2]float64{3.0 / 4, 4.0 / 3}),
		HorizontalFlip:    a.HorizontalFlip,
		ColorJitter:       a.ColorJitter,
		Mean:              toF32(cfg.Mean),
		Std:               toF32(cfg.Std),
	}
	if variableSize(cfg.Dataset) {
		p.ResizeTo = EvalResize(cfg.ImageSize)
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if a.Views > 1 {
		return Views{T: p, N: a.Views}, nil
	}
	return p, nil
}

// EvalTransform is resize + centre crop + normalisation. For ImageFolder and
// WebDataset the shorter side goes to round(size / 0.875) first (ImageNet
// practice); the small fixed-size datasets are resized to exactly
// image_size, so 28x28 Fashion-MNIST at image_size 28 keeps its pixels
// unchanged.
func EvalTransform(cfg config.Data) (*Pipeline, error) {
	p := &Pipeline{Size: cfg.ImageSize, Channels: cfg.Channels, Mean: toF32(cfg.Mean), Std: toF32(cfg.Std)}
	if variableSize(cfg.Dataset) {
		p.ResizeTo = EvalResize(cfg.ImageSize)
	}
	return p, p.Validate()
}

// variableSize reports whether the dataset's images differ in size (photos:
// ImageFolder and WebDataset shards), which the transforms first resize.
func variableSize(dataset string) bool { return dataset == "imagefolder" || dataset == "webdataset" }

// EvalResize is the ImageNet evaluation resize for a crop of size: size/0.875.
func EvalResize(size int) int { return int(math.Round(float64(size) / 0.875)) }
