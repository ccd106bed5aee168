package worker

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math"
	"time"

	"github.com/hjepa-go/hjepa/collective"
	"github.com/hjepa-go/hjepa/device"
	"github.com/hjepa-go/hjepa/tensor"
	"github.com/hjepa-go/hjepa/train"
	"github.com/hjepa-go/hjepa/train/telemetry"
)

// ringSync is the trainer's GradSync over one generation's ring: DDP's
// gradient averaging (bucketed ring all-reduce), the initial broadcast of
// rank 0's parameters, loss averaging, and the periodic parameter checksum.
// Nothing of a failed device (device.Err: its values are NaN) reaches the
// other ranks: every exchange returns that failure instead, and the worker
// reports it to the coordinator, which tells the others.
type ringSync struct {
	ring          *collective.Ring
	b             tensor.Backend
	firstBucket   int64
	bucketBytes   int64
	checksumEvery int

	plan    []collective.Range
	reducer *collective.Reducer
	begun   bool      // BeginBackward started this step's reduction
	host    []float32 // staging for tensors that do not live in host memory

	// Exposed and Total accumulate the all-reduce time not hidden behind
	// backward, and all of it (the ddp_step benchmark reports them).
	Exposed, Total time.Duration
	// metrics, when set, records every gradient all-reduce.
	metrics *telemetry.Worker
}

var _ train.OverlappingSync = (*ringSync)(nil)

func (s *ringSync) Rank() int      { return s.ring.Rank() }
func (s *ringSync) WorldSize() int { return s.ring.WorldSize() }

// hostView returns t's values as a host slice: the tensor's own memory on
// the CPU backend (no copy), else a staging buffer filled by Download.
func (s *ringSync) hostView(t *tensor.Tensor) (data []float32, staged bool) {
	if _, ok := t.Storage().(*tensor.HostStorage); ok {
		return t.F32(), false
	}
	if cap(s.host) < t.Numel() {
		s.host = make([]float32, t.Numel())
	}
	data = s.host[:t.Numel()]
	s.b.Download(data, t)
	return data, true
}

// reducerFor returns the bucketed reducer for an arena of n gradients.
func (s *ringSync) reducerFor(n int) *collective.Reducer {
	if s.reducer == nil || coverage(s.plan) != n {
		s.plan = collective.PlanBuckets(n, s.firstBucket, s.bucketBytes)
		s.reducer = s.ring.NewReducer(s.plan, true)
	}
	return s.reducer
}

// BeginBackward starts the step's bucketed all-reduce before backward, so
// each bucket is reduced as soon as backward has finished it (DDP's
// overlap). Only gradients in host memory qualify: device gradients are
// reduced after backward, through one download.
func (s *ringSync) BeginBackward(ctx context.Context, step int64, grads *tensor.Tensor) bool {
	if _, ok := grads.Storage().(*tensor.HostStorage); !ok {
		return false
	}
	data := grads.F32()
	s.reducerFor(len(data)).Start(ctx, step, data)
	s.begun = true
	return true
}

// GradsReady says grads[:upTo] are final.
func (s *ringSync) GradsReady(upTo int) { s.reducer.MarkReady(upTo) }

func (s *ringSync) AllReduceMean(ctx context.Context, step int64, grads *tensor.Tensor) error {
	if err := device.Err(s.b); err != nil {
		return err
	}
	data, staged := s.hostView(grads)
	rd := s.reducerFor(len(data))
	if !s.begun {
		rd.Start(ctx, step, data)
	}
	s.begun = false
	rd.MarkReady(len(data))
	exposed, total, err := rd.Wait()
	s.Exposed += exposed
	s.Total += total
	if err != nil {
		return err
	}
	s.metrics.ObserveAllReduce(4*len(data), total)
	if staged {
		s.b.Upload(grads, data)
	}
	return nil
}

func coverage(plan []collective.Range) int {
	n := 0
	for _, r := range plan {
		n += r.Len
	}
	return n
}

// ReduceMean averages small float64 vectors exactly: every rank gathers all
// values and sums them in rank order, so all get the same bits.
func (s *ringSync) ReduceMean(ctx context.Context, step int64, v []float64) error {
	if err := device.Err(s.b); err != nil {
		return err
	}
	mine := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(mine[8*i:], math.Float64bits(x))
	}
	all, err := s.ring.AllGather(ctx, step, mine)
	if err != nil {
		return err
	}
	for i := range v {
		sum := 0.0
		for r, b := range all {
			if len(b) != len(mine) {
				return fmt.Errorf("rank %d sent %d values, this rank has %d", r, len(b)/8, len(v))
			}
			sum += math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:]))
		}
		v[i] = sum / float64(len(all))
	}
	return nil
}

// AllGather returns every rank's local, indexed by rank, exactly (the bits
// travel as they are), in rounds of at most collective.MaxGatherBytes.
func (s *ringSync) AllGather(ctx context.Context, step int64, local []float32) ([][]float32, error) {
	if err := device.Err(s.b); err != nil {
		return nil, err
	}
	const per = collective.MaxGatherBytes / 4
	out := make([][]float32, s.ring.WorldSize())
	for r := range out {
		out[r] = make([]float32, 0, len(local))
	}
	buf := make([]byte, 0, 4*min(len(local), per))
	for off := 0; off < len(local) || off == 0; off += per {
		part := local[off:min(off+per, len(local))]
		buf = buf[:4*len(part)]
		for i, x := range part {
			binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(x))
		}
		all, err := s.ring.AllGather(ctx, step, buf)
		if err != nil {
			return nil, err
		}
		for r, b := range all {
			if len(b) != len(buf) {
				return nil, fmt.Errorf("all-gather: rank %d sent %d values, this rank has %d (batch sizes differ)", r, len(b)/4, len(part))
			}
			for i := 0; i < len(b); i += 4 {
				out[r] = append(out[r], math.Float32frombits(binary.LittleEndian.Uint32(b[i:])))
			}
		}
		if len(local) == 0 {
			break
		}
	}
	return out, nil
}

func (s *ringSync) Broadcast(ctx context.Context, t *tensor.Tensor) error {
	if err := device.Err(s.b); err != nil {
		return err
	}
	data, staged := s.hostView(t)
	if err := s.ring.Broadcast(ctx, -1, 0, data); err != nil {
		return err
	}
	if staged {
		s.b.Upload(t, data)
	}
	return nil
}

// AfterStep compares an FNV-1a checksum of the parameters (context
// encoder, predictor, heads and the EMA target) across ranks every
// checksumEvery steps. DDP keeps them bitwise equal; a difference means a
// non-deterministic kernel or a bug, and training on would silently average
// gradients of different models.
func (s *ringSync) AfterStep(ctx context.Context, step int64, params, target *tensor.Tensor) error {
	if s.checksumEvery <= 0 || step%int64(s.checksumEvery) != 0 {
		return nil
	}
	if err := device.Err(s.b); err != nil {
		return err
	}
	h := fnv.New64a()
	var buf []byte
	for _, t := range []*tensor.Tensor{params, target} {
		data, _ := s.hostView(t)
		if cap(buf) < 4*len(data) {
			buf = make([]byte, 4*len(data))
		}
		b := buf[:4*len(data)]
		for i, x := range data {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
		}
		h.Write(b)
	}
	mine := binary.LittleEndian.AppendUint64(nil, h.Sum64())
	all, err := s.ring.AllGather(ctx, step, mine)
	if err != nil {
		return fmt.Errorf("parameter checksum: %w", err)
	}
	for r, b := range all {
		if string(b) != string(all[0]) {
			return fmt.Errorf("%w: at step %d the parameters of rank %d (checksum %x) differ from rank 0's (%x); "+
				"DDP keeps replicas bitwise equal, so a kernel is non-deterministic or a replica was corrupted: "+
				"rerun with --resume from the last checkpoint, and report it if it repeats",
				train.ErrDiverged, step, r, binary.LittleEndian.Uint64(b), binary.LittleEndian.Uint64(all[0]))
		}
	}
	return nil
}
