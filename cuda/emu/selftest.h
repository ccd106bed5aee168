// Kernels that exercise the emulator's thread model (shuffles, barriers,
// the diagnostics of divergent and racy code). They are registered in the
// emulator only; hjepa.cu and the PTX do not have them.
#ifndef HJEPA_EMU_SELFTEST_H
#define HJEPA_EMU_SELFTEST_H

#define EMU_SELFTEST_KERNELS(X)                                                                   \
  X(emutest_shuffle) X(emutest_barrier) X(emutest_shared_race) X(emutest_divergent_barrier)       \
  X(emutest_early_exit_barrier) X(emutest_partial_warp) X(emutest_warp_deadlock) X(emutest_index)

// out [blockDim.x, 4]: shfl_xor 1, shfl_down 3, shfl_up 2, shfl from lane 7
// of v = lane + 0.5; sums [blockDim.x/32]: the warp sum of lane ids in double.
extern "C" __global__ void emutest_shuffle(float* out, double* sums) {
  int t = threadIdx.x;
  float v = float(t % 32) + 0.5f;
  out[t * 4 + 0] = __shfl_xor_sync(FULL_MASK, v, 1);
  out[t * 4 + 1] = __shfl_down_sync(FULL_MASK, v, 3);
  out[t * 4 + 2] = __shfl_up_sync(FULL_MASK, v, 2);
  out[t * 4 + 3] = __shfl_sync(FULL_MASK, v, 7);
  double s = double(t % 32);
  for (int off = 16; off > 0; off >>= 1) s += __shfl_down_sync(FULL_MASK, s, off);
  if (t % 32 == 0) sums[t / 32] = s;
}

// out[t] = (t+1 mod n)^2 through shared memory, correct in any thread order.
extern "C" __global__ void emutest_barrier(int* out) {
  __shared__ int s[1024];
  int t = threadIdx.x, n = blockDim.x;
  s[t] = t * t;
  __syncthreads();
  out[t] = s[(t + 1) % n];
}

// A shared-memory race: out[t] reads a neighbour's write without a barrier,
// so the result depends on the order the threads run in.
extern "C" __global__ void emutest_shared_race(int* out) {
  __shared__ int s[1024];
  int t = threadIdx.x, n = blockDim.x;
  s[t] = -1;
  __syncthreads();
  s[t] = t;
  out[t] = s[(t + 1) % n];
}

extern "C" __global__ void emutest_divergent_barrier(int* out) {
  if (threadIdx.x < 16) {
    __syncthreads();
  } else {
    __syncthreads();
  }
  out[threadIdx.x] = 1;
}

// Threads 16.. exit before the barrier; the rest must still pass it.
extern "C" __global__ void emutest_early_exit_barrier(int* out) {
  __shared__ int s[16];
  int t = threadIdx.x;
  if (t >= 16) return;
  s[t] = t;
  __syncthreads();
  out[t] = s[15 - t];
}

// A shuffle in a block whose size is not a multiple of 32.
extern "C" __global__ void emutest_partial_warp(float* out) {
  out[threadIdx.x] = __shfl_xor_sync(FULL_MASK, 1.0f, 1);
}

// Half a warp shuffles while the other half waits at a barrier.
extern "C" __global__ void emutest_warp_deadlock(float* out) {
  float v = 1.0f;
  if (threadIdx.x % 32 < 16) {
    v = __shfl_xor_sync(FULL_MASK, v, 1);
  } else {
    __syncthreads();
  }
  out[threadIdx.x] = v;
}

// out [gz, gy, gx, bz, by, bx, 6]: the built-in indices of every thread.
extern "C" __global__ void emutest_index(int* out, int pad) {
  long long blk = ((long long)blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
  long long t = ((long long)threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
  int* o = out + (blk * blockDim.x * blockDim.y * blockDim.z + t) * 6;
  o[0] = blockIdx.x + pad;
  o[1] = blockIdx.y + pad;
  o[2] = blockIdx.z + pad;
  o[3] = threadIdx.x + pad;
  o[4] = threadIdx.y + pad;
  o[5] = threadIdx.z + pad;
}

#endif
