// Package train is the training loop shared by `hjepa train` and every
// distributed worker (DESIGN.md section 5) and what it writes: Run builds
// the trainer phase by phase (device, data, model, setup and resume,
// sinks), then runs one step function per optimizer step (micro-batches
// in, statistics out: forward and backward, the gradient all-reduce through
// a GradSync, clipping and the NaN guard, AdamW, the EMA of the target
// encoder), with validation and collapse monitoring, checkpoints
// (train/checkpoint), metric sinks (metrics.jsonl, train/tfevents,
// train/plot) and the progress bar (train/progress) between steps.
//
// The optimiser and schedules are package optim, the model's construction
// package jepa, the device package device; only cmd, worker and bench
// import train (`make imports` checks it).
package train
