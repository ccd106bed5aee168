package tfevents

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// fileCounter makes file names unique within a process, like TensorBoard's
// global uid suffix.
var fileCounter atomic.Int64

// DefaultFlushInterval is how often buffered events reach the file when no
// option says otherwise (TensorBoard's own writer uses 120 s).
const DefaultFlushInterval = 10 * time.Second

// Option configures a Writer.
type Option func(*options)

type options struct {
	flushInterval time.Duration
	now           func() time.Time
	hostname      string
}

// WithFlushInterval sets the period of the background flush; d <= 0 disables
// it, so events reach the file only on Flush and Close.
func WithFlushInterval(d time.Duration) Option {
	return func(o *options) { o.flushInterval = d }
}

// WithClock sets the source of event wall times and of the file name's time.
func WithClock(now func() time.Time) Option {
	return func(o *options) { o.now = now }
}

// WithHostname overrides the host name in the file name.
func WithHostname(h string) Option {
	return func(o *options) { o.hostname = h }
}

// Writer appends events to one event file. It is safe for concurrent use.
// Errors are sticky: after a failed write every later call returns it.
type Writer struct {
	path string
	now  func() time.Time

	mu     sync.Mutex
	f      *os.File
	bw     *bufio.Writer
	err    error
	closed bool

	stopOnce sync.Once
	stop     chan struct{} // nil when there is no background flusher
	done     chan struct{}
}

// TagValue is one scalar of a Scalars call.
type TagValue struct {
	Tag   string
	Value float64
}

// NewWriter creates dir if needed and opens a new event file in it, named
// events.out.tfevents.<unix-time>.<hostname>.<pid>.<n>, whose first record is
// the file_version event. Close it to flush and stop the background flusher.
func NewWriter(dir string, opts ...Option) (*Writer, error) {
	o := options{flushInterval: DefaultFlushInterval, now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	if o.hostname == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "localhost"
		}
		o.hostname = h
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("tensorboard dir: %w", err)
	}
	now := o.now()
	name := fmt.Sprintf("events.out.tfevents.%010d.%s.%d.%d",
		now.Unix(), o.hostname, os.Getpid(), fileCounter.Add(1)-1)
	path := filepath.Join(dir, name)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, fmt.Errorf("create event file: %w", err)
	}
	w := &Writer{path: path, now: o.now, f: f, bw: bufio.NewWriterSize(f, 64<<10)}
	err = writeRecord(w.bw, encodeEvent(now, 0, fileVersion, nil))
	if err == nil {
		err = w.bw.Flush()
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("write event file %s: %w", path, err)
	}
	if o.flushInterval > 0 {
		w.stop, w.done = make(chan struct{}), make(chan struct{})
		go w.flushLoop(o.flushInterval)
	}
	return w, nil
}

// Path is the event file's path.
func (w *Writer) Path() string { return w.path }

func (w *Writer) flushLoop(every time.Duration) {
	defer close(w.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
			_ = w.Flush() // a failure is sticky and surfaces on the next call
		}
	}
}

// write frames one encoded event into the buffer.
func (w *Writer) write(event []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return errors.New("tfevents: write after Close")
	}
	if w.err != nil {
		return w.err
	}
	if err := writeRecord(w.bw, event); err != nil {
		w.err = fmt.Errorf("write event file %s: %w", w.path, err)
	}
	return w.err
}

// Scalar logs one scalar. TensorBoard stores simple_value as float32.
func (w *Writer) Scalar(tag string, step int64, v float64) error {
	return w.write(encodeEvent(w.now(), step, "", appendScalarValue(nil, tag, v)))
}

// Scalars logs several scalars of one step as a single event, in sorted tag
// order.
func (w *Writer) Scalars(step int64, values map[string]float64) error {
	tvs := make([]TagValue, 0, len(values))
	for tag, v := range values {
		tvs = append(tvs, TagValue{tag, v})
	}
	sort.Slice(tvs, func(i, j int) bool { return tvs[i].Tag < tvs[j].Tag })
	return w.ScalarList(step, tvs)
}

// ScalarList logs several scalars of one step as a single event, in the given
// order.
func (w *Writer) ScalarList(step int64, values []TagValue) error {
	if len(values) == 0 {
		return nil
	}
	var summary []byte
	for _, tv := range values {
		summary = appendScalarValue(summary, tv.Tag, tv.Value)
	}
	return w.write(encodeEvent(w.now(), step, "", summary))
}

// WriteHParams records the run's hyperparameters for TensorBoard's HParams
// tab: an experiment summary declaring every hparam (with its type) and the
// metric tags to show beside them, then the session start info with the
// values. Values must be strings, bools or numbers (a fmt.Stringer is written
// as its string). Call it once, before training.
func (w *Writer) WriteHParams(hparams map[string]any, metricTags []string) error {
	now := w.now()
	ssi, exp, err := encodeHParams(hparams, metricTags, now)
	if err != nil {
		return fmt.Errorf("tfevents hparams: %w", err)
	}
	if err := w.write(encodeEvent(now, 0, "", pluginSummary(experimentTag, hparamsPlugin, exp))); err != nil {
		return err
	}
	return w.write(encodeEvent(now, 0, "", pluginSummary(sessionStartInfoTag, hparamsPlugin, ssi)))
}

// EndHParamsSession records the session end info, marking the run as a
// success or a failure in the HParams tab.
func (w *Writer) EndHParamsSession(ok bool, step int64) error {
	now := w.now()
	return w.write(encodeEvent(now, step, "", pluginSummary(sessionEndInfoTag, hparamsPlugin, encodeSessionEnd(ok, now))))
}

// Flush writes buffered events to the file.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	return w.flushLocked()
}

func (w *Writer) flushLocked() error {
	if w.err != nil {
		return w.err
	}
	if err := w.bw.Flush(); err != nil {
		w.err = fmt.Errorf("flush event file %s: %w", w.path, err)
	}
	return w.err
}

// Close stops the background flusher, flushes, syncs and closes the file.
// Calling it again is a no-op.
func (w *Writer) Close() error {
	w.stopOnce.Do(func() {
		if w.stop != nil {
			close(w.stop)
			<-w.done
		}
	})
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	err := w.flushLocked()
	if err == nil {
		if serr := w.f.Sync(); serr != nil {
			err = fmt.Errorf("sync event file %s: %w", w.path, serr)
		}
	}
	if cerr := w.f.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("close event file %s: %w", w.path, cerr)
	}
	return err
}
