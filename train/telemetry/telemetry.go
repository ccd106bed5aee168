// Package telemetry is what a running job exposes over HTTP for Prometheus
// and for orchestrators: /metrics (the Prometheus text format), /healthz
// (the process is alive and serving) and /readyz (it is doing its job: a
// coordinator that is coordinating, a worker inside a generation). The
// coordinator and each worker serve their own (--metrics-listen).
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace prefixes every metric.
const Namespace = "hjepa"

// Server serves one process's /metrics, /healthz and /readyz.
type Server struct {
	srv  *http.Server
	lis  net.Listener
	done chan struct{}
}

// Serve listens on addr ("host:port"; port 0 picks a free one) and serves
// reg's metrics (and the Go runtime's and the process's) until Close;
// ready says whether /readyz answers 200 or 503 (nil: always ready).
func Serve(addr string, reg *prometheus.Registry, ready func() (bool, string)) (*Server, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-listen %q: %w", addr, err)
	}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		ok, why := true, "ready"
		if ready != nil {
			ok, why = ready()
		}
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_, _ = w.Write([]byte(why + "\n"))
	})
	s := &Server{
		// A scrape is small and local: bound what a slow or idle client
		// holds.
		srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
			WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 16 << 10},
		lis: lis, done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(lis)
	}()
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.lis.Addr().String() }

// Close stops the server, letting a scrape in flight finish for up to 2 s.
func (s *Server) Close() {
	if s == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		_ = s.srv.Close()
	}
	<-s.done
}

// Step is one optimizer step as a replica saw it.
type Step struct {
	Step     int64
	Epoch    int
	Loss     float64
	JEPALoss float64
	LR       float64
	GradNorm float64
	Took     time.Duration // the step's wall time
	Images   int           // images this replica processed in it
}

// Worker holds a worker's (or a single training process's) metrics.
type Worker struct {
	Registry *prometheus.Registry

	step, epoch, loss, jepaLoss, lr, gradNorm, imagesPerSec prometheus.Gauge
	generation, rank, worldSize                             prometheus.Gauge
	images                                                  prometheus.Counter
	stepSeconds                                             prometheus.Histogram
	allReduceBytes                                          prometheus.Counter
	allReduceSeconds                                        prometheus.Histogram

	mu      sync.Mutex
	ready   bool
	readyIs string
}

// NewWorker makes a worker's metrics in a registry of their own.
func NewWorker() *Worker {
	reg := prometheus.NewRegistry()
	f := func(name, help string) prometheus.Gauge {
		g := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Name: name, Help: help})
		reg.MustRegister(g)
		return g
	}
	w := &Worker{
		Registry:     reg,
		step:         f("train_step", "Optimizer steps completed."),
		epoch:        f("train_epoch", "Current epoch (0-based)."),
		loss:         f("train_loss", "This replica's loss at the last step (all terms)."),
		jepaLoss:     f("train_jepa_loss", "This replica's JEPA prediction loss at the last step."),
		lr:           f("train_learning_rate", "Learning rate of the last step."),
		gradNorm:     f("train_grad_norm", "Global gradient norm of the last step (before clipping)."),
		imagesPerSec: f("train_images_per_second", "Images this replica processed per second at the last step."),
		generation:   f("job_generation", "Generation of the distributed job this worker trains in (0: none yet)."),
		rank:         f("job_rank", "This worker's rank (-1: none yet)."),
		worldSize:    f("job_world_size", "Ranks in the job."),
		images: prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: "train_images_total",
			Help: "Images this process trained on."}),
		stepSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Name: "train_step_seconds",
			Help: "Wall time of an optimizer step.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 18)}),
		allReduceBytes: prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: "allreduce_bytes_total",
			Help: "Bytes of gradients this rank all-reduced (its whole buffer once per step)."}),
		allReduceSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Name: "allreduce_seconds",
			Help: "Wall time of a gradient all-reduce, from the first bucket's start to the last one's end.", Buckets: prometheus.ExponentialBuckets(0.0001, 2, 20)}),
	}
	reg.MustRegister(w.images, w.stepSeconds, w.allReduceBytes, w.allReduceSeconds)
	w.rank.Set(-1)
	w.readyIs = "not training yet"
	return w
}

// ObserveStep records a step.
func (w *Worker) ObserveStep(s Step) {
	if w == nil {
		return
	}
	w.step.Set(float64(s.Step))
	w.epoch.Set(float64(s.Epoch))
	w.loss.Set(s.Loss)
	w.jepaLoss.Set(s.JEPALoss)
	w.lr.Set(s.LR)
	w.gradNorm.Set(s.GradNorm)
	w.images.Add(float64(s.Images))
	w.stepSeconds.Observe(s.Took.Seconds())
	if s.Took > 0 {
		w.imagesPerSec.Set(float64(s.Images) / s.Took.Seconds())
	}
}

// ObserveAllReduce records one gradient all-reduce of n bytes.
func (w *Worker) ObserveAllReduce(n int, took time.Duration) {
	if w == nil {
		return
	}
	w.allReduceBytes.Add(float64(n))
	w.allReduceSeconds.Observe(took.Seconds())
}

// SetJob records the generation this worker trains in, as which rank.
func (w *Worker) SetJob(generation uint64, rank, worldSize int) {
	if w == nil {
		return
	}
	w.generation.Set(float64(generation))
	w.rank.Set(float64(rank))
	w.worldSize.Set(float64(worldSize))
}

// SetReady sets what /readyz answers.
func (w *Worker) SetReady(ready bool, why string) {
	if w == nil {
		return
	}
	w.mu.Lock()
	w.ready, w.readyIs = ready, why
	w.mu.Unlock()
}

// Ready is /readyz's answer.
func (w *Worker) Ready() (bool, string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ready, w.readyIs
}

// Coordinator holds a coordinator's metrics.
type Coordinator struct {
	Registry *prometheus.Registry

	generation, registered, worldSize prometheus.Gauge
	restarts                          prometheus.Counter
	rankStep, rankLoss, rankStepSecs  *prometheus.GaugeVec

	mu       sync.Mutex
	lastBeat map[string]time.Time // by rank label
	ready    bool
	readyIs  string
}

// NewCoordinator makes a coordinator's metrics for a job of worldSize ranks.
func NewCoordinator(worldSize int) *Coordinator {
	reg := prometheus.NewRegistry()
	c := &Coordinator{
		Registry: reg,
		generation: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Name: "job_generation",
			Help: "The job's current generation (1 is the first; each restart forms a new one)."}),
		registered: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Name: "job_ranks_training",
			Help: "Ranks of the current generation that have sent a heartbeat."}),
		worldSize: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Name: "job_world_size", Help: "Ranks in the job."}),
		restarts: prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: "job_restarts_total",
			Help: "Generations formed after this coordinator's first (restarts after a lost or failed worker)."}),
		rankStep: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: Namespace, Name: "rank_step",
			Help: "Steps completed, as the rank's last heartbeat said."}, []string{"rank"}),
		rankLoss: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: Namespace, Name: "rank_loss",
			Help: "The rank's loss at its last reported step."}, []string{"rank"}),
		rankStepSecs: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: Namespace, Name: "rank_step_seconds",
			Help: "Wall time of the rank's last reported step."}, []string{"rank"}),
		lastBeat: map[string]time.Time{},
		readyIs:  "starting",
	}
	c.worldSize.Set(float64(worldSize))
	reg.MustRegister(c.generation, c.registered, c.worldSize, c.restarts, c.rankStep, c.rankLoss, c.rankStepSecs, heartbeatAge{c})
	return c
}

// Generation records that generation formed (restarts count those after
// the first this coordinator formed).
func (c *Coordinator) Generation(generation uint64, first bool) {
	if c == nil {
		return
	}
	c.generation.Set(float64(generation))
	if !first {
		c.restarts.Inc()
	}
	c.mu.Lock()
	clear(c.lastBeat)
	c.mu.Unlock()
	c.rankStep.Reset()
	c.rankLoss.Reset()
	c.rankStepSecs.Reset()
}

// Beat records a heartbeat of rank in the current generation.
func (c *Coordinator) Beat(rank int, step int64, loss, stepSeconds float64) {
	if c == nil {
		return
	}
	r := fmt.Sprint(rank)
	c.rankStep.WithLabelValues(r).Set(float64(step))
	c.rankLoss.WithLabelValues(r).Set(loss)
	c.rankStepSecs.WithLabelValues(r).Set(stepSeconds)
	c.mu.Lock()
	c.lastBeat[r] = time.Now()
	c.registered.Set(float64(len(c.lastBeat)))
	c.mu.Unlock()
}

// SetReady sets what /readyz answers.
func (c *Coordinator) SetReady(ready bool, why string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	c.ready, c.readyIs = ready, why
	c.mu.Unlock()
}

// Ready is /readyz's answer.
func (c *Coordinator) Ready() (bool, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ready, c.readyIs
}

// heartbeatAge computes hjepa_rank_heartbeat_age_seconds at scrape time.
type heartbeatAge struct{ c *Coordinator }

var heartbeatAgeDesc = prometheus.NewDesc(Namespace+"_rank_heartbeat_age_seconds",
	"Seconds since the rank's last heartbeat in the current generation.", []string{"rank"}, nil)

func (h heartbeatAge) Describe(ch chan<- *prometheus.Desc) { ch <- heartbeatAgeDesc }

func (h heartbeatAge) Collect(ch chan<- prometheus.Metric) {
	h.c.mu.Lock()
	defer h.c.mu.Unlock()
	now := time.Now()
	for r, t := range h.c.lastBeat {
		ch <- prometheus.MustNewConstMetric(heartbeatAgeDesc, prometheus.GaugeValue, now.Sub(t).Seconds(), r)
	}
}
