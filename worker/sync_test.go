package worker

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hjepa-go/hjepa/collective"
	"github.com/hjepa-go/hjepa/collective/rpcsec"
	hjepav1 "github.com/hjepa-go/hjepa/proto/hjepa/v1"
	"github.com/hjepa-go/hjepa/tensor"
	"github.com/hjepa-go/hjepa/tensor/cpu"
	"github.com/hjepa-go/hjepa/train"
)

// ringSyncs joins n in-process endpoints into one ring (real gRPC on
// 127.0.0.1) and returns one ringSync per rank. Buckets are tiny so that a
// few hundred gradients make several of them.
func ringSyncs(t *testing.T, n int) []*ringSync {
	t.Helper()
	eps := make([]*collective.Endpoint, n)
	for i := range eps {
		e, err := collective.Listen(collective.EndpointOptions{Listen: "127.0.0.1:0", Security: rpcsec.Options{Token: "t"}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(e.Close)
		eps[i] = e
	}
	out := make([]*ringSync, n)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for r := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ring, err := eps[r].Join(context.Background(), collective.RingConfig{RunID: "run", Generation: 1, Rank: r, WorldSize: n,
				Next: eps[(r+1)%n].Addr(), Timeout: 30 * time.Second})
			errs[r] = err
			if err == nil {
				t.Cleanup(func() { _ = ring.Close() })
				out[r] = &ringSync{ring: ring, b: cpu.New(1), firstBucket: 64, bucketBytes: 256, checksumEvery: 2}
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// onAll runs f on every rank concurrently and fails on the first error.
func onAll(t *testing.T, syncs []*ringSync, f func(r int, s *ringSync) error) []error {
	t.Helper()
	errs := make([]error, len(syncs))
	var wg sync.WaitGroup
	for r, s := range syncs {
		wg.Add(1)
		go func() { defer wg.Done(); errs[r] = f(r, s) }()
	}
	wg.Wait()
	return errs
}

func randVec(seed uint64, n int) []float32 {
	rng := rand.New(rand.NewPCG(seed, 7))
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return v
}

// TestGradientMeanOverlapped: the overlapped path (BeginBackward, then
// GradsReady for growing prefixes as backward would) gives every rank the
// same bits as the plain AllReduceMean, and the mean within rounding.
func TestGradientMeanOverlapped(t *testing.T) {
	const n, world = 1000, 3
	syncs := ringSyncs(t, world)
	want := make([]float64, n)
	for r := range world {
		for i, x := range randVec(uint64(r), n) {
			want[i] += float64(x) / world
		}
	}
	results := make([][]float32, world)
	for _, overlapped := range []bool{false, true} {
		errs := onAll(t, syncs, func(r int, s *ringSync) error {
			g := tensor.FromFloat32s(randVec(uint64(r), n), n)
			if overlapped {
				if !s.BeginBackward(context.Background(), 1, g) {
					return errors.New("BeginBackward refused host gradients")
				}
				for upTo := 100; upTo < n; upTo += 150 {
					s.GradsReady(upTo)
				}
			}
			if err := s.AllReduceMean(context.Background(), 1, g); err != nil {
				return err
			}
			if overlapped && results[r] != nil {
				for i, x := range g.F32() {
					if x != results[r][i] {
						t.Errorf("rank %d: overlapped result differs from the plain one at %d", r, i)
						break
					}
				}
			}
			results[r] = append([]float32(nil), g.F32()...)
			return nil
		})
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	for r := 1; r < world; r++ {
		for i := range results[r] {
			if results[r][i] != results[0][i] {
				t.Fatalf("rank %d differs from rank 0 at %d", r, i)
			}
		}
	}
	for i, x := range results[0] {
		if d := float64(x) - want[i]; d > 1e-6 || d < -1e-6 {
			t.Fatalf("mean[%d] = %v, want %v", i, x, want[i])
		}
	}
}

// TestReduceMeanExact: losses are averaged in float64, the same on every rank.
func TestReduceMeanExact(t *testing.T) {
	syncs := ringSyncs(t, 3)
	got := make([][]float64, 3)
	errs := onAll(t, syncs, func(r int, s *ringSync) error {
		v := []float64{float64(r), 0.1 * float64(r+1)}
		got[r] = v
		return s.ReduceMean(context.Background(), 1, v)
	})
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	// In rank order, in float64 (constants would be exact).
	want := 0.0
	for r := range 3 {
		want += 0.1 * float64(r+1)
	}
	want /= 3
	for r := range got {
		if got[r][0] != 1 || got[r][1] != want {
			t.Fatalf("rank %d: %v", r, got[r])
		}
	}
}

// TestChecksumCatchesDivergence: equal parameters pass; one differing bit
// on rank 1 fails every rank with ErrDiverged naming rank 1; steps that are
// not a multiple of checksumEvery are not checked.
func TestChecksumCatchesDivergence(t *testing.T) {
	syncs := ringSyncs(t, 2)
	params := func(r int, flip bool) (*tensor.Tensor, *tensor.Tensor) {
		p := randVec(1, 300)
		if flip && r == 1 {
			p[123] = -p[123]
		}
		return tensor.FromFloat32s(p, 300), tensor.FromFloat32s(randVec(2, 50), 50)
	}
	for _, c := range []struct {
		step int64
		flip bool
		fail bool
	}{{2, false, false}, {3, true, false}, {4, true, true}} {
		errs := onAll(t, syncs, func(r int, s *ringSync) error {
			p, tg := params(r, c.flip)
			return s.AfterStep(context.Background(), c.step, p, tg)
		})
		for r, err := range errs {
			if !c.fail && err != nil {
				t.Fatalf("step %d rank %d: %v", c.step, r, err)
			}
			if c.fail && (!errors.Is(err, train.ErrDiverged) || !strings.Contains(err.Error(), "rank 1")) {
				t.Fatalf("step %d rank %d: %v, want ErrDiverged naming rank 1", c.step, r, err)
			}
		}
	}
}

// failedDevice is a backend whose device has failed (tensor.Faulter).
type failedDevice struct {
	tensor.Backend
	err error
}

func (f failedDevice) Err() error { return f.err }

// TestFailedDeviceSendsNothing: a rank whose device failed returns the
// failure from every exchange without sending its NaNs to the others.
func TestFailedDeviceSendsNothing(t *testing.T) {
	syncs := ringSyncs(t, 2)
	oom := fmt.Errorf("cuda: out of memory on cuda:0: %w", tensor.ErrOutOfMemory)
	s := syncs[0]
	s.b = failedDevice{Backend: s.b, err: oom}
	ctx := context.Background()
	g := tensor.NewHost(300)
	for name, err := range map[string]error{
		"AllReduceMean": s.AllReduceMean(ctx, 0, g),
		"ReduceMean":    s.ReduceMean(ctx, 0, []float64{1}),
		"Broadcast":     s.Broadcast(ctx, g),
		"AfterStep":     s.AfterStep(ctx, 2, g, g),
	} {
		if err != oom {
			t.Errorf("%s on a failed device: %v, want the device's failure", name, err)
		}
	}
	if _, err := s.AllGather(ctx, 0, []float32{1}); err != oom {
		t.Errorf("AllGather on a failed device: %v", err)
	}
}

// TestFailureKind: what the coordinator is told a device failure was.
func TestFailureKind(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want hjepav1.FailureKind
	}{
		{fmt.Errorf("step 3: %w", fmt.Errorf("cuda: out of memory: %w", tensor.ErrOutOfMemory)), hjepav1.FailureKind_FAILURE_KIND_OUT_OF_MEMORY},
		{fmt.Errorf("cuda: launch: %w", tensor.ErrDeviceFault), hjepav1.FailureKind_FAILURE_KIND_DEVICE},
		{errors.New("bad record"), hjepav1.FailureKind_FAILURE_KIND_OTHER},
	} {
		if got := failureKind(tc.err); got != tc.want {
			t.Errorf("failureKind(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
