package eval

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/hjepa-go/hjepa/config"
	"github.com/hjepa-go/hjepa/data"
	"github.com/hjepa-go/hjepa/device"
	"github.com/hjepa-go/hjepa/jepa"
	"github.com/hjepa-go/hjepa/tensor"
)

// Request is one evaluation of a checkpoint (`hjepa eval`).
type Request struct {
	// Config is the loaded and validated configuration: the model, the data
	// (the "train" and "val" splits, read with the evaluation transform), the
	// device and the probe protocol (evaluation.*).
	Config config.Config
	// Checkpoint is the checkpoint directory whose target encoder is the
	// "trained" row, or "init": the target encoder at initialisation alone.
	Checkpoint string
	// Pixels adds the raw normalised pixels ("pixels"), CompareInit the
	// target encoder at initialisation ("init"), Context the checkpoint's
	// context encoder ("context").
	Pixels, CompareInit, Context bool
	// NoKNN skips the kNN classifier.
	NoKNN bool
	// JSONPath, when set, receives the reports as MarshalReports writes them.
	JSONPath string
	// Log receives what is not a result (the device fallback line); nil
	// discards it.
	Log io.Writer
}

// Result is what Run evaluated.
type Result struct {
	// Reports are the rows in the order pixels, init, trained, context, each
	// encoder row with the checkpoint it comes from.
	Reports []Report
	// Elapsed is the time of the extraction and scoring (not of opening the
	// device, the checkpoint and the datasets).
	Elapsed time.Duration
}

// evalBatch is the smallest extraction batch (larger GEMMs run closer to the
// machine's peak).
const evalBatch = 256

// Run evaluates the rows req asks for on the device of req.Config: it writes
// each row's line to out as it finishes (WriteRow), then, for several rows,
// the table (WriteTable), then how many rows it evaluated in how long; with
// req.JSONPath it writes the reports there too.
func Run(ctx context.Context, req Request, out io.Writer) (Result, error) {
	cfg := req.Config
	b, fallback, err := device.Open(cfg)
	if err != nil {
		return Result{}, err
	}
	defer device.Close(b)
	if fallback != "" && req.Log != nil {
		fmt.Fprintln(req.Log, fallback)
	}
	rows, err := requestRows(b, req)
	if err != nil {
		return Result{}, err
	}
	opts, err := protocolOptions(cfg, req.NoKNN)
	if err != nil {
		return Result{}, err
	}
	opts.Progress = func(r Report) { WriteRow(out, r) }
	start := time.Now()
	reports, err := Evaluate(ctx, b, opts, rows)
	// A failed device (out of memory: device errors are sticky) returned NaN
	// features; its failure is the cause of whatever followed.
	if derr := device.Err(b); derr != nil {
		return Result{}, fmt.Errorf("evaluation (extraction batches of %d images): %w (free the GPU, or evaluate with --device cpu)", max(cfg.Data.BatchSize, evalBatch), derr)
	}
	if err != nil {
		return Result{}, err
	}
	for i := range reports {
		switch {
		case reports[i].Encoder == "pixels":
		case reports[i].Name == "init":
			reports[i].Checkpoint = "init"
		default:
			reports[i].Checkpoint = req.Checkpoint
		}
	}
	if len(reports) > 1 {
		WriteTable(out, reports)
	}
	res := Result{Reports: reports, Elapsed: time.Since(start)}
	fmt.Fprintf(out, "evaluated %d row(s) in %s\n", len(reports), res.Elapsed.Round(time.Second))
	if req.JSONPath != "" {
		if err := WriteJSON(req.JSONPath, reports); err != nil {
			return res, err
		}
	}
	return res, nil
}

// requestRows builds the rows req asks for, in the order pixels, init,
// trained, context.
func requestRows(b tensor.Backend, req Request) ([]Extractor, error) {
	cfg, ck := req.Config, req.Checkpoint
	var rows []Extractor
	if req.Pixels {
		e, err := cfg.Encoder()
		if err != nil {
			return nil, err
		}
		rows = append(rows, PixelExtractor(e.Channels, e.ImageSize, e.ImageSize))
	}
	if ck == "init" || req.CompareInit {
		m, err := jepa.NewInitialModel(b, cfg)
		if err != nil {
			return nil, err
		}
		rows = append(rows, TargetExtractor("init", m))
	}
	if ck != "init" {
		m, err := jepa.NewInitialModel(b, cfg)
		if err != nil {
			return nil, err
		}
		if err := LoadWeights(b, m, ck); err != nil {
			return nil, err
		}
		rows = append(rows, TargetExtractor("trained", m))
		if req.Context {
			rows = append(rows, ContextExtractor("context", m))
		}
	}
	return rows, nil
}

// protocolOptions opens the splits of cfg ("train" to fit, "val" to score)
// and sets the probe protocol from cfg.Evaluation.
func protocolOptions(cfg config.Config, noKNN bool) (Options, error) {
	tf, err := data.EvalTransform(cfg.Data)
	if err != nil {
		return Options{}, err
	}
	trainDS, err := data.Open(cfg.Data, "train", cfg.Seed)
	if err != nil {
		return Options{}, err
	}
	testDS, err := data.Open(cfg.Data, "val", cfg.Seed)
	if err != nil {
		return Options{}, err
	}
	ev := cfg.Evaluation
	return Options{Train: trainDS, Test: testDS, Transform: tf, TrainLimit: ev.TrainLimit, TestLimit: ev.TestLimit,
		Batch: max(cfg.Data.BatchSize, evalBatch), Workers: cfg.Data.NumWorkers,
		Probe: ProbeOptions{L2: ev.ProbeL2, MaxIter: ev.ProbeMaxIter, Threads: cfg.Threads},
		KNN:   KNNOptions{K: ev.KNNK, T: ev.KNNTemp, Threads: cfg.Threads}, NoKNN: noKNN}, nil
}

// openModel opens the device of cfg and builds its model there with a
// checkpoint's weights ("" or "init" keeps the initialisation: the baseline a
// trained encoder is compared to). The caller closes the backend.
func openModel(cfg config.Config, ck string, log io.Writer) (tensor.Backend, *jepa.Model, error) {
	b, fallback, err := device.Open(cfg)
	if err != nil {
		return nil, nil, err
	}
	if fallback != "" && log != nil {
		fmt.Fprintln(log, fallback)
	}
	m, err := jepa.NewInitialModel(b, cfg)
	if err == nil && ck != "" && ck != "init" {
		err = LoadWeights(b, m, ck)
	}
	if err != nil {
		device.Close(b)
		return nil, nil, err
	}
	return b, m, nil
}
