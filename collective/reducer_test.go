package collective

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"
)

func TestPlanBuckets(t *testing.T) {
	const KiB = 1024
	cases := []struct {
		name         string
		n            int
		first, other int64
		want         []Range
	}{
		{"empty", 0, 4 * KiB, 8 * KiB, nil},
		{"smaller than the first bucket", 100, 4 * KiB, 8 * KiB, []Range{{0, 100}}},
		{"exactly the first bucket", 1024, 4 * KiB, 8 * KiB, []Range{{0, 1024}}},
		{"first plus exact multiples", 1024 + 2*2048, 4 * KiB, 8 * KiB, []Range{{0, 1024}, {1024, 2048}, {3072, 2048}}},
		{"short last bucket", 1024 + 2048 + 5, 4 * KiB, 8 * KiB, []Range{{0, 1024}, {1024, 2048}, {3072, 5}}},
		{"no first size", 10, 0, 16, []Range{{0, 4}, {4, 4}, {8, 2}}},
		{"no bucket size", 10, 16, 0, []Range{{0, 4}, {4, 6}}},
		{"DDP defaults", 10 << 20, 1 << 20, 25 << 20, []Range{{0, 1 << 18}, {1 << 18, 25 << 18}, {26 << 18, 10<<20 - 26<<18}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := PlanBuckets(c.n, c.first, c.other)
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("PlanBuckets(%d, %d, %d) = %v, want %v", c.n, c.first, c.other, got, c.want)
			}
			covered := 0
			for i, rg := range got { // contiguous, from 0 up to n
				if rg.Off != covered {
					t.Fatalf("bucket %d %v does not start where bucket %d ends", i, rg, i-1)
				}
				covered += rg.Len
			}
			if covered != c.n {
				t.Fatalf("buckets cover %d of %d", covered, c.n)
			}
		})
	}
}

// TestReducer: ranks mark growing prefixes of their arena ready at different
// granularities; the
// buckets are reduced in index order on every rank, each as soon as it is
// covered, and the result is the average, the same bits as all-reducing
// each bucket on its own.
func TestReducer(t *testing.T) {
	const n, size = 3, 50000
	_, rings := newRing(t, n, ringOpts{chunkBytes: minChunkBytes})
	plan := PlanBuckets(size, 16<<10, 40<<10) // 4096 then 10240 floats: 6 buckets
	var wantOrder []int
	for b := range plan {
		wantOrder = append(wantOrder, b)
	}
	inputs := make([][]float32, n)
	for r := range inputs {
		inputs[r] = rankData(21, r, size)
	}
	// The reference: each bucket all-reduced on its own (the segments, and
	// so the summation order, depend on the bucket), then averaged.
	want := make([]float32, size)
	for b, rg := range plan {
		parts := make([][]float32, n)
		for r := range parts {
			parts[r] = inputs[r][rg.Off : rg.Off+rg.Len]
		}
		copy(want[rg.Off:], allReduceOnce(t, rings, int64(-1-b), parts)[0])
	}
	for i := range want {
		want[i] /= n
	}
	avg := make([][]float32, n)
	for r := range avg {
		avg[r] = make([]float32, size)
		for i := range avg[r] {
			avg[r][i] = inputs[r][i] / n
		}
	}
	checkSum(t, want, avg)

	for step := int64(1); step <= 2; step++ {
		data := make([][]float32, n)
		orders := make([][]int, n)
		errs := onAll(n, func(r int) error {
			data[r] = append([]float32(nil), inputs[r]...)
			rd := rings[r].NewReducer(plan, true)
			started := make(chan int, len(plan))
			rd.onBucket = func(b int) {
				orders[r] = append(orders[r], b)
				started <- b
			}
			start := time.Now()
			rd.Start(context.Background(), step, data[r])
			// "Backward": rank r marks growing prefixes in steps of
			// size/(3+4r) floats; after covering the first bucket it waits
			// for that bucket to start before marking anything else.
			stride := size / (3 + 4*r)
			upTo, waited := 0, false
			for upTo < size {
				upTo = min(size, upTo+stride)
				if upTo >= plan[0].Len && !waited {
					waited = true
					rd.MarkReady(plan[0].Len)
					select {
					case b := <-started:
						if b != 0 {
							return fmt.Errorf("first bucket reduced is %d", b)
						}
					case <-time.After(30 * time.Second):
						return fmt.Errorf("bucket 0 did not start once covered")
					}
				}
				rd.MarkReady(upTo)
			}
			exposed, total, err := rd.Wait()
			if err != nil {
				return err
			}
			elapsed := time.Since(start)
			if total <= 0 || total > elapsed || exposed < 0 || exposed > elapsed {
				return fmt.Errorf("exposed %v, total %v after %v", exposed, total, elapsed)
			}
			return nil
		})
		noErrors(t, errs)
		for r := range n {
			if !slices.Equal(orders[r], wantOrder) {
				t.Fatalf("rank %d reduced buckets in order %v", r, orders[r])
			}
			if !sameBits(data[r], want) {
				t.Fatalf("step %d rank %d: differs from the per-bucket all-reduce / %d", step, r, n)
			}
		}
	}
}

// TestReducerFailure: a rank that never finishes backward (its context is
// cancelled instead) fails every rank's Wait.
func TestReducerFailure(t *testing.T) {
	const n, size = 2, 10000
	_, rings := newRing(t, n, ringOpts{timeout: 10 * time.Minute, chunkBytes: minChunkBytes})
	plan := PlanBuckets(size, 8<<10, 8<<10)
	errs := onAll(n, func(r int) error {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		rd := rings[r].NewReducer(plan, false)
		rd.Start(ctx, 1, make([]float32, size))
		if r == 1 {
			rd.MarkReady(plan[0].Len)
			time.Sleep(50 * time.Millisecond)
			cancel()
		}
		_, _, err := rd.Wait()
		return err
	})
	for r, err := range errs {
		if err == nil {
			t.Fatalf("rank %d: Wait succeeded", r)
		}
	}
}
