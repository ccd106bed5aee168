package collective

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/hjepa-go/hjepa/collective/rpcsec"
)

const testToken = "test-job-token"

// testLogger logs to stderr when HJEPA_TEST_LOG is set (goroutines may log
// after a test ends, which a testing.T logger does not allow).
func testLogger() *zap.Logger {
	if os.Getenv("HJEPA_TEST_LOG") == "" {
		return zap.NewNop()
	}
	l, _ := zap.NewDevelopment()
	return l
}

func newEndpoint(t testing.TB, chunkBytes int) *Endpoint {
	t.Helper()
	e, err := Listen(EndpointOptions{
		Listen:     "127.0.0.1:0",
		Security:   rpcsec.Options{Token: testToken},
		ChunkBytes: chunkBytes,
		Logger:     testLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

type ringOpts struct {
	run        string
	generation uint64
	chunkBytes int
	timeout    time.Duration
}

// newRing makes n endpoints and joins them into one ring.
func newRing(t testing.TB, n int, o ringOpts) ([]*Endpoint, []*Ring) {
	t.Helper()
	eps := make([]*Endpoint, n)
	for i := range eps {
		eps[i] = newEndpoint(t, max(o.chunkBytes, DefaultChunkBytes))
	}
	return eps, joinRing(t, eps, o)
}

func joinRing(t testing.TB, eps []*Endpoint, o ringOpts) []*Ring {
	t.Helper()
	if o.run == "" {
		o.run = "run-test"
	}
	if o.generation == 0 {
		o.generation = 1
	}
	if o.timeout == 0 {
		o.timeout = 30 * time.Second
	}
	n := len(eps)
	rings := make([]*Ring, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range eps {
		wg.Go(func() {
			rings[i], errs[i] = eps[i].Join(context.Background(), RingConfig{
				RunID: o.run, Generation: o.generation, Rank: i, WorldSize: n,
				Next: eps[(i+1)%n].Addr(), ChunkBytes: o.chunkBytes, Timeout: o.timeout,
			})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", i, err)
		}
	}
	t.Cleanup(func() { closeAll(rings) })
	return rings
}

// closeAll closes the rings concurrently, as the workers of a job would.
func closeAll(rings []*Ring) {
	onAll(len(rings), func(r int) error { return rings[r].Close() })
}

// onAll runs f for every rank concurrently and returns the errors by rank.
func onAll(n int, f func(rank int) error) []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = f(i) })
	}
	wg.Wait()
	return errs
}

func noErrors(t testing.TB, errs []error) {
	t.Helper()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", i, err)
		}
	}
}

// rankData is rank's deterministic input: values in [-1, 1) with a spread of
// magnitudes, so rounding differs between summation orders.
func rankData(seed uint64, rank, n int) []float32 {
	rng := rand.New(rand.NewPCG(seed, uint64(rank)))
	d := make([]float32, n)
	for i := range d {
		d[i] = (rng.Float32()*2 - 1) * float32(math.Ldexp(1, rng.IntN(12)-6))
	}
	return d
}

// checkSum checks got against the float64 sum of inputs at every element:
// |got - want| <= N * 2^-23 * sum|x_i| + tiny.
func checkSum(t testing.TB, got []float32, inputs [][]float32) {
	t.Helper()
	n := float64(len(inputs))
	bad := 0
	for i, g := range got {
		var want, abs float64
		for _, in := range inputs {
			want += float64(in[i])
			abs += math.Abs(float64(in[i]))
		}
		if math.Abs(float64(g)-want) > n*math.Ldexp(1, -23)*abs+1e-30 {
			if bad++; bad <= 5 {
				t.Errorf("element %d: got %v, want %v (sum|x| %v)", i, g, want, abs)
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d elements off", bad, len(got))
	}
}

func digest(f []float32) string {
	h := sha256.Sum256(float32Bytes(f))
	return hex.EncodeToString(h[:8])
}

// allReduceOnce copies inputs, all-reduces the copies and returns them.
func allReduceOnce(t testing.TB, rings []*Ring, step int64, inputs [][]float32) [][]float32 {
	t.Helper()
	out := make([][]float32, len(rings))
	for i := range out {
		out[i] = append([]float32(nil), inputs[i]...)
	}
	noErrors(t, onAll(len(rings), func(i int) error {
		return rings[i].AllReduceSum(context.Background(), step, 0, out[i])
	}))
	return out
}

func sameBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

// waitErr waits for an error from ch, failing the test after d.
func waitErr(t testing.TB, ch <-chan error, d time.Duration, what string) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(d):
		t.Fatalf("%s: no result within %v", what, d)
		return fmt.Errorf("unreachable")
	}
}
