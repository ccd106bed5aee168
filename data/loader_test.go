package data

import (
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
)

func trainPipe() *Pipeline {
	return &Pipeline{Size: 12, Channels: 3, RandomResizedCrop: true, Scale: [2]float64{0.3, 1}, Ratio: [2]float64{0.75, 4.0 / 3},
		HorizontalFlip: true, ColorJitter: 0.3, Mean: []float32{0.5}, Std: []float32{0.25}}
}

type epochBatches struct {
	images [][]float32
	labels [][]int
}

func collect(t *testing.T, l *Loader, epochs int) []epochBatches {
	t.Helper()
	var out []epochBatches
	for e := range epochs {
		l.SetEpoch(e)
		var eb epochBatches
		for {
			b, err := l.Next(context.Background())
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			eb.images = append(eb.images, append([]float32(nil), b.Images...))
			eb.labels = append(eb.labels, append([]int(nil), b.Labels...))
			b.Release()
		}
		out = append(out, eb)
	}
	return out
}

func newTestLoader(t *testing.T, ds Dataset, workers, prefetch int, dropLast bool) *Loader {
	t.Helper()
	s, err := NewDistributedSampler(ds.Len(), 1, 0, true, 11, false)
	if err != nil {
		t.Fatal(err)
	}
	l, err := NewLoader(ds, trainPipe(), s, LoaderOptions{BatchSize: 8, NumWorkers: workers, Prefetch: prefetch, DropLast: dropLast, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return l
}

func TestLoaderDeterministicAcrossWorkers(t *testing.T) {
	ds, _ := NewSynthetic(45, 5, 3, 16, 1)
	a := collect(t, newTestLoader(t, ds, 1, 1, true), 2)
	b := collect(t, newTestLoader(t, ds, 6, 4, true), 2)
	if len(a[0].images) != 5 { // 45/8 with drop_last
		t.Fatalf("%d batches, want 5", len(a[0].images))
	}
	if !reflect.DeepEqual(a, b) {
		t.Fatal("batches differ between 1 and 6 workers")
	}
	if reflect.DeepEqual(a[0].images[0], a[1].images[0]) {
		t.Fatal("epochs 0 and 1 gave the same first batch")
	}
	c := collect(t, newTestLoader(t, ds, 3, 2, false), 1)
	if n := len(c[0].images); n != 6 || len(c[0].labels[5]) != 5 {
		t.Fatalf("without drop_last: %d batches, last of %d", n, len(c[0].labels[5]))
	}
}

func TestLoaderResume(t *testing.T) {
	ds, _ := NewSynthetic(40, 4, 3, 16, 2)
	full := collect(t, newTestLoader(t, ds, 4, 2, true), 2)

	l := newTestLoader(t, ds, 2, 3, true)
	l.SetEpoch(1)
	for range 2 {
		b, err := l.Next(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		b.Release()
	}
	st := l.State()
	if st != (LoaderState{Epoch: 1, Position: 16}) {
		t.Fatalf("state %+v", st)
	}
	l2 := newTestLoader(t, ds, 5, 1, true)
	if err := l2.Restore(st); err != nil {
		t.Fatal(err)
	}
	for i := 2; i < 5; i++ {
		b, err := l2.Next(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(b.Images, full[1].images[i]) || !reflect.DeepEqual(b.Labels, full[1].labels[i]) || b.Index != i {
			t.Fatalf("resumed batch %d differs", i)
		}
	}
	if _, err := l2.Next(context.Background()); err != io.EOF {
		t.Fatalf("want EOF, got %v", err)
	}
	if err := l2.Restore(LoaderState{Epoch: 0, Position: 3}); err == nil {
		t.Fatal("position not a multiple of the batch accepted")
	}
}

// failing wraps a dataset and fails on chosen indices.
type failing struct {
	Dataset
	bad map[int]bool
}

func (f failing) Get(i int) (Image, int, error) {
	if f.bad[i] {
		return Image{}, 0, fmt.Errorf("decode /data/img_%d.jpg: %w", i, ErrCorrupt)
	}
	return f.Dataset.Get(i)
}

func TestLoaderErrorsAndCancel(t *testing.T) {
	syn, _ := NewSynthetic(32, 4, 3, 16, 2)
	ds := failing{syn, map[int]bool{5: true, 6: true}}
	s, _ := NewDistributedSampler(32, 1, 0, false, 0, false)
	l, err := NewLoader(ds, trainPipe(), s, LoaderOptions{BatchSize: 4, NumWorkers: 3, DropLast: true})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := l.Next(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, err = l.Next(context.Background())
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "sample 5") || !strings.Contains(err.Error(), "img_5.jpg") {
		t.Fatalf("got %v", err)
	}
	if l.State().Position != 4 {
		t.Fatalf("failed batch advanced the state: %+v", l.State())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.Next(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}

func TestLoaderReusesReleasedBuffers(t *testing.T) {
	ds, _ := NewSynthetic(64, 4, 3, 16, 2)
	l := newTestLoader(t, ds, 2, 1, true)
	seen := map[*float32]bool{}
	for range 8 {
		b, err := l.Next(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		seen[&b.Images[0]] = true
		b.Release()
	}
	if len(seen) > 4 {
		t.Fatalf("%d distinct buffers for 8 batches with Prefetch 1", len(seen))
	}
}
