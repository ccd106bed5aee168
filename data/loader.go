package data

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
)

// LoaderOptions configure a Loader.
type LoaderOptions struct {
	// BatchSize is B, images per batch (per process).
	BatchSize int
	// NumWorkers goroutines decode and augment samples (<= 0: 1).
	NumWorkers int
	// Prefetch is the number of batches being prepared ahead of the
	// consumer (<= 0: 2).
	Prefetch int
	// DropLast drops the final partial batch of an epoch (training, as
	// I-JEPA's loader); otherwise it is delivered with B smaller.
	DropLast bool
	// Seed seeds the per-sample augmentation streams.
	Seed int64
}

// Batch is B transformed images and their labels. Images: [B, C, H, W].
// A batch stays valid until Release; after Release its memory is reused by a
// later batch. A batch that is never released is simply garbage collected.
type Batch struct {
	Images     []float32
	Labels     []int
	Indices    []int // dataset index of each image
	B, C, H, W int
	Epoch      int
	// Index is the batch's position within its epoch (0-based).
	Index int

	loader   *Loader
	released atomic.Bool
}

// Release hands the batch's memory back to the loader for reuse.
func (b *Batch) Release() {
	if b == nil || b.loader == nil || b.released.Swap(true) {
		return
	}
	select {
	case b.loader.free <- b:
	default:
	}
}

// LoaderState is where a loader stands, saved in checkpoints for exact
// resume: Position images of this rank's shard of Epoch have been delivered
// (a multiple of the batch size, or the epoch's end).
type LoaderState struct {
	Epoch    int `json:"epoch"`
	Position int `json:"position"`
}

// Loader produces batches in sampler order on a bounded pool of goroutines.
// The batches are the same whatever NumWorkers and whatever the timing:
// order comes from the sampler and each sample's augmentation randomness
// from (Seed, epoch, dataset index). Next, SetEpoch, Restore and Close must
// be called from one goroutine.
type Loader struct {
	ds      Dataset
	tf      Transform
	sampler *DistributedSampler
	opts    LoaderOptions
	c, h, w int

	free  chan *Batch
	state LoaderState
	run   *epochRun
}

// NewLoader builds a loader over ds with transform tf and sampler s.
func NewLoader(ds Dataset, tf Transform, s *DistributedSampler, opts LoaderOptions) (*Loader, error) {
	if opts.BatchSize <= 0 {
		return nil, fmt.Errorf("loader: batch size must be positive, got %d", opts.BatchSize)
	}
	if s == nil || s.N != ds.Len() {
		return nil, fmt.Errorf("loader: sampler must cover the dataset's %d images", ds.Len())
	}
	opts.NumWorkers = max(opts.NumWorkers, 1)
	if opts.Prefetch <= 0 {
		opts.Prefetch = 2
	}
	if ro, ok := ds.(rankOrderer); ok {
		if err := ro.checkReplicas(s.Replicas); err != nil {
			return nil, err
		}
	}
	if opts.DropLast && s.NumSamples() < opts.BatchSize {
		return nil, fmt.Errorf("loader: %d images per rank is less than one batch of %d with drop_last; lower data.batch_size", s.NumSamples(), opts.BatchSize)
	}
	c, h, w := tf.OutShape()
	return &Loader{
		ds: ds, tf: tf, sampler: s, opts: opts, c: c, h: h, w: w,
		free:  make(chan *Batch, opts.Prefetch+2),
		state: LoaderState{Epoch: s.Epoch()},
	}, nil
}

// BatchesPerEpoch is the number of batches Next delivers per epoch.
func (l *Loader) BatchesPerEpoch() int {
	n := l.sampler.NumSamples()
	if l.opts.DropLast {
		return n / l.opts.BatchSize
	}
	return (n + l.opts.BatchSize - 1) / l.opts.BatchSize
}

// epochLimit is the number of images Next delivers per epoch.
func (l *Loader) epochLimit() int {
	return min(l.BatchesPerEpoch()*l.opts.BatchSize, l.sampler.NumSamples())
}

// State is the position to save in a checkpoint.
func (l *Loader) State() LoaderState { return l.state }

// Restore continues from a saved state: the next batch is the one that
// followed it in the original run.
func (l *Loader) Restore(st LoaderState) error {
	if st.Position < 0 || st.Position > l.epochLimit() || (st.Position%l.opts.BatchSize != 0 && st.Position != l.epochLimit()) {
		return fmt.Errorf("loader: cannot restore position %d with batch size %d and %d batches per epoch", st.Position, l.opts.BatchSize, l.BatchesPerEpoch())
	}
	l.stop()
	l.sampler.SetEpoch(st.Epoch)
	l.state = st
	return nil
}

// SetEpoch starts epoch e from its first batch (the sampler reshuffles).
func (l *Loader) SetEpoch(e int) {
	l.stop()
	l.sampler.SetEpoch(e)
	l.state = LoaderState{Epoch: e}
}

// Close stops the workers and waits for them.
func (l *Loader) Close() { l.stop() }

// Next returns the epoch's next batch, or io.EOF when the epoch is done
// (call SetEpoch for the next one). A sample that fails to load ends the
// epoch's run with an error naming the sample and its file; the state is
// not advanced, so Next may be retried.
func (l *Loader) Next(ctx context.Context) (*Batch, error) {
	if l.state.Position >= l.epochLimit() {
		return nil, io.EOF
	}
	first := l.state.Position / l.opts.BatchSize
	if l.run == nil {
		l.run = l.startRun(first)
	}
	r := l.run
	pb := r.head
	r.head = nil
	if pb == nil {
		select {
		case pb = <-r.pending:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	select {
	case <-pb.done:
	case <-ctx.Done():
		// The batch is still being built; put it back at the head.
		r.head = pb
		return nil, ctx.Err()
	}
	<-r.sem
	if pb.err != nil {
		l.stop()
		return nil, pb.err
	}
	l.state.Position += pb.batch.B
	return pb.batch, nil
}

// epochRun is one epoch's producer: a dispatcher goroutine and NumWorkers
// workers, all stopped by cancel.
type epochRun struct {
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	pending chan *pendingBatch
	sem     chan struct{}
	head    *pendingBatch
}

type pendingBatch struct {
	batch     *Batch
	remaining atomic.Int32
	done      chan struct{}
	mu        sync.Mutex
	errAt     int
	err       error
}

func (pb *pendingBatch) finish(k int, err error) {
	if err != nil {
		pb.mu.Lock()
		if pb.err == nil || k < pb.errAt {
			pb.err, pb.errAt = err, k
		}
		pb.mu.Unlock()
	}
	if pb.remaining.Add(-1) == 0 {
		close(pb.done)
	}
}

type sampleJob struct {
	pb *pendingBatch
	k  int
}

func (l *Loader) stop() {
	if l.run == nil {
		return
	}
	l.run.cancel()
	l.run.wg.Wait()
	l.run = nil
}

// getBatch returns a reusable batch buffer of b images.
func (l *Loader) getBatch(b int) *Batch {
	var bt *Batch
	select {
	case bt = <-l.free:
	default:
		n := l.opts.BatchSize
		bt = &Batch{
			Images:  make([]float32, n*l.c*l.h*l.w),
			Labels:  make([]int, n),
			Indices: make([]int, n),
			loader:  l,
		}
	}
	full := l.opts.BatchSize
	bt.Images = bt.Images[:full*l.c*l.h*l.w][:b*l.c*l.h*l.w]
	bt.Labels, bt.Indices = bt.Labels[:full][:b], bt.Indices[:full][:b]
	bt.B, bt.C, bt.H, bt.W = b, l.c, l.h, l.w
	bt.released.Store(false)
	return bt
}

func (l *Loader) startRun(first int) *epochRun {
	ctx, cancel := context.WithCancel(context.Background())
	r := &epochRun{
		cancel:  cancel,
		pending: make(chan *pendingBatch, l.opts.Prefetch),
		sem:     make(chan struct{}, l.opts.Prefetch),
	}
	indices := l.indices()
	epoch, nb, bs := l.state.Epoch, l.BatchesPerEpoch(), l.opts.BatchSize
	jobs := make(chan sampleJob, bs)
	r.wg.Add(1 + l.opts.NumWorkers)
	go func() {
		defer r.wg.Done()
		defer close(jobs)
		for bi := first; bi < nb; bi++ {
			select {
			case r.sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			lo := bi * bs
			b := min(bs, len(indices)-lo)
			pb := &pendingBatch{batch: l.getBatch(b), done: make(chan struct{})}
			pb.batch.Epoch, pb.batch.Index = epoch, bi
			copy(pb.batch.Indices, indices[lo:lo+b])
			pb.remaining.Store(int32(b))
			r.pending <- pb // cannot block: sem bounds the batches in flight
			for k := range b {
				select {
				case jobs <- sampleJob{pb, k}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	per := l.c * l.h * l.w
	for range l.opts.NumWorkers {
		go func() {
			defer r.wg.Done()
			for j := range jobs {
				if ctx.Err() != nil {
					continue
				}
				bt := j.pb.batch
				idx := bt.Indices[j.k]
				j.pb.finish(j.k, l.loadSample(bt.Images[j.k*per:(j.k+1)*per], &bt.Labels[j.k], idx, epoch))
			}
		}()
	}
	return r
}

// rankOrderer is a dataset that may define its own training order
// (WebDataset with data.shard_shuffle "shard"). rankOrder returns rank
// s.Rank's indices for s's epoch, s.NumSamples() of them, or nil for the
// sampler's order; checkReplicas says whether it can serve s.Replicas ranks.
type rankOrderer interface {
	checkReplicas(replicas int) error
	rankOrder(s *DistributedSampler) []int
}

// indices is this rank's order for the current epoch.
func (l *Loader) indices() []int {
	if ro, ok := l.ds.(rankOrderer); ok {
		if idx := ro.rankOrder(l.sampler); idx != nil {
			return idx
		}
	}
	return l.sampler.Indices()
}

// loadSample decodes and transforms dataset image idx into dst.
func (l *Loader) loadSample(dst []float32, label *int, idx, epoch int) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
		if err != nil {
			err = fmt.Errorf("load sample %d of %s (epoch %d): %w", idx, l.ds.Info().Path, epoch, err)
		}
	}()
	img, lab, err := l.ds.Get(idx)
	if err != nil {
		return err
	}
	*label = lab
	return l.tf.Apply(dst, img, SampleRNG(l.opts.Seed, epoch, idx))
}

// SampleRNG is the augmentation stream of dataset image idx in epoch.
func SampleRNG(seed int64, epoch, idx int) *rand.Rand {
	return rand.New(rand.NewPCG(uint64(seed), mix64(uint64(epoch), uint64(idx))))
}
