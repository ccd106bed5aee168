#!/usr/bin/env bash
# The GPU checks of the CUDA backend, in one script for a GPU machine without
# Go: run `make gpu-build` on a build machine, copy the checkout (with bin/gpu)
# to the GPU machine and run this from the repository root. It prints the
# device, the compliance suite and whole-step parity against the CPU (FP32 and
# TF32), compute-sanitizer's memcheck over the suite when the tool is there,
# the GPU BENCH lines, and a short fmnist-tiny run on the GPU. Each part runs
# even if an earlier one fails; the exit status is that of the first failure.
# Everything is also written to $OUT/gpu-check.log when OUT is set (the
# device tool's folder that comes back), else to /tmp/gpu-check.log.
set -u
log="${OUT:-/tmp}/gpu-check.log"
exec > >(tee "$log") 2>&1
status=0
step() {
	echo "=== $*"
	"$@" || { rc=$?; echo "=== FAILED ($rc): $*"; [ $status -ne 0 ] || status=$rc; }
}
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
step bin/gpu/hjepa devices
step bin/gpu/cuda.test -test.v -test.run 'GPU' -test.timeout 300s
if command -v compute-sanitizer >/dev/null; then
	step compute-sanitizer --tool memcheck --leak-check none --error-exitcode 3 bin/gpu/cuda.test -test.run 'GPUCompliance' -test.short
else
	echo "=== compute-sanitizer not found: memcheck skipped"
fi
step bin/gpu/bench -run 'gpu_gemm|hjepa_step_vits'
if [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || [ -n "${FMNIST:-}" ]; then
	step bin/gpu/hjepa train --config configs/fmnist-tiny.yaml --device cuda --out "${TMPDIR:-/tmp}/hjepa-gpu-run" \
		--set training.max_steps=50 ${FMNIST:+--set data.path=$FMNIST}
else
	step bin/gpu/hjepa train --config configs/fmnist-tiny.yaml --device cuda --out "${TMPDIR:-/tmp}/hjepa-gpu-run" \
		--set data.dataset=synthetic --set training.max_steps=50
fi
exit $status
