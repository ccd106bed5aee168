// hjepa.cu: the device kernels of the CUDA backend (package cuda). Every
// kernel is extern "C" and named hjepa_*; cuda/kernels.go has one typed Go
// wrapper per kernel that chooses its launch shape.
//
// The file compiles two ways:
//   - nvcc -ptx -arch=compute_80 (make ptx) for the GPU, JIT-compiled by the
//     driver for the device at hand (A100, H100, H200);
//   - g++ -std=c++17 with emu.h for the host emulator (cuda/emu), which runs
//     the backend and its tests without a GPU.
// Device code therefore keeps to a common subset: static __shared__ arrays,
// __syncthreads, full-mask warp shuffles, no atomics on floats (every result
// is the same from run to run), no dynamic parallelism or cooperative groups.
//
// Conventions: tensors are dense row-major float32 (int for index lists);
// element counts and row offsets are 64-bit; a null pointer marks an optional
// argument as absent. Elementwise arithmetic that the CPU backend does in
// separate float32 operations uses the _rn intrinsics, which nvcc never fuses
// into FMAs, so those kernels give the CPU backend's values bit for bit.
#ifndef __CUDACC__
#include "emu.h"
#endif

// HJEPA_KERNELS lists every kernel; the emulator builds its launch registry
// from it and kernels.Names must list the same names.
#define HJEPA_KERNELS(X)                                                                        \
  X(hjepa_scale) X(hjepa_axpy) X(hjepa_add) X(hjepa_ema) X(hjepa_adamw) X(hjepa_add_row_vector) \
  X(hjepa_bias_add) X(hjepa_gemm_k0) X(hjepa_colsum_partial) X(hjepa_colsum_finish)             \
  X(hjepa_patchify) X(hjepa_ln_fwd) X(hjepa_ln_bwd_dx) X(hjepa_ln_bwd_dwdb_partial)             \
  X(hjepa_gelu_fwd) X(hjepa_gelu_bwd) X(hjepa_gather) X(hjepa_scatter_add)                      \
  X(hjepa_sum_partial) X(hjepa_smooth_l1) X(hjepa_mse)                                          \
  X(hjepa_rand_uniform) X(hjepa_rand_normal) X(hjepa_trunc_normal)                              \
  X(hjepa_attn_fwd_d16) X(hjepa_attn_fwd_d32) X(hjepa_attn_fwd_d64) X(hjepa_attn_fwd_d128)      \
  X(hjepa_attn_bwd_delta)                                                                       \
  X(hjepa_attn_bwd_dq_d16) X(hjepa_attn_bwd_dq_d32) X(hjepa_attn_bwd_dq_d64)                    \
  X(hjepa_attn_bwd_dq_d128)                                                                     \
  X(hjepa_attn_bwd_dkv_d16) X(hjepa_attn_bwd_dkv_d32) X(hjepa_attn_bwd_dkv_d64)                 \
  X(hjepa_attn_bwd_dkv_d128)

#define FULL_MASK 0xffffffffu

// Loops over a thread's rows and columns of a tile have compile-time trip
// counts and must be unrolled so that the tile stays in registers.
#ifdef __CUDACC__
#define UNROLL _Pragma("unroll")
#define UNROLL4 _Pragma("unroll 4")
#else
#define UNROLL
#define UNROLL4
#endif
#define NEG_INF __int_as_float((int)0xff800000)

// Elements per block of the fixed Sum partition: the host adds the
// per-block float64 partials in block order, so sums do not depend on the GPU.
#define SUM_BLOCK 4096
#define SUM_THREADS 256

// Grid-stride loop over [0, n) with a 64-bit index.
#define GRID_STRIDE(i, n)                                                                 \
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n);           \
       i += (long long)gridDim.x * blockDim.x)

__device__ __forceinline__ float warp_sum(float v) {
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(FULL_MASK, v, off);
  return v;
}

// ---- elementwise ----

// x *= alpha
extern "C" __global__ void hjepa_scale(float* x, float alpha, long long n) {
  GRID_STRIDE(i, n) { x[i] = __fmul_rn(x[i], alpha); }
}

// y += alpha * x
extern "C" __global__ void hjepa_axpy(float* y, float alpha, const float* x, long long n) {
  GRID_STRIDE(i, n) { y[i] = __fadd_rn(y[i], __fmul_rn(alpha, x[i])); }
}

// dst = a + b; dst may alias a or b.
extern "C" __global__ void hjepa_add(float* dst, const float* a, const float* b, long long n) {
  GRID_STRIDE(i, n) { dst[i] = __fadd_rn(a[i], b[i]); }
}

// t = t*m + om*s, om = 1-m formed on the host in float64 as the CPU does.
extern "C" __global__ void hjepa_ema(float* __restrict__ t, const float* __restrict__ s, long long n, float m,
                                     float om) {
  GRID_STRIDE(i, n) { t[i] = __fadd_rn(__fmul_rn(t[i], m), __fmul_rn(om, s[i])); }
}

// One AdamW step with the scalar factors formed on the host (tensor/cpu's
// optim.go): decay = 1-lr*wd, stepSize = lr/(1-b1^t), bc2Sqrt = sqrt(1-b2^t).
extern "C" __global__ void hjepa_adamw(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m,
                                       float* __restrict__ v, long long n, float decay, float beta1, float beta2,
                                       float omb1, float omb2, float stepSize, float bc2Sqrt, float eps) {
  GRID_STRIDE(i, n) {
    float gi = g[i];
    float pi = __fmul_rn(p[i], decay);
    float mi = __fadd_rn(__fmul_rn(m[i], beta1), __fmul_rn(omb1, gi));
    float vi = __fadd_rn(__fmul_rn(v[i], beta2), __fmul_rn(__fmul_rn(omb2, gi), gi));
    float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), bc2Sqrt), eps);
    p[i] = __fsub_rn(pi, __fmul_rn(stepSize, __fdiv_rn(mi, denom)));
    m[i] = mi;
    v[i] = vi;
  }
}

// x [rows, cols] += v [cols] on every row. Block x covers columns, grid y
// strides over rows.
extern "C" __global__ void hjepa_add_row_vector(float* __restrict__ x, const float* __restrict__ v, long long rows,
                                                int cols) {
  int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= cols) return;
  float vj = v[j];
  for (long long r = blockIdx.y; r < rows; r += gridDim.y) {
    float* p = x + r * cols + j;
    *p = __fadd_rn(*p, vj);
  }
}

// ---- GEMM epilogues ----

// C_b [m, n] (row stride ldc, batch stride strideC) += bias [n] on every row.
// Block x covers columns; grid y strides over rows and grid z over batches.
extern "C" __global__ void hjepa_bias_add(float* __restrict__ c, const float* __restrict__ bias, int m, int n,
                                          int ldc, long long strideC, int batch) {
  int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= n) return;
  float bj = bias[j];
  for (int b = blockIdx.z; b < batch; b += gridDim.z) {
    for (int i = blockIdx.y; i < m; i += gridDim.y) {
      float* p = c + b * strideC + (long long)i * ldc + j;
      *p = __fadd_rn(*p, bj);
    }
  }
}

// The GEMM with K == 0: C_b = beta*C_b (+ bias); with beta == 0 C is not
// read. Same launch shape as hjepa_bias_add.
extern "C" __global__ void hjepa_gemm_k0(float* __restrict__ c, const float* __restrict__ bias, float beta, int m,
                                         int n, int ldc, long long strideC, int batch) {
  int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= n) return;
  for (int b = blockIdx.z; b < batch; b += gridDim.z) {
    for (int i = blockIdx.y; i < m; i += gridDim.y) {
      float* p = c + b * strideC + (long long)i * ldc + j;
      float v = beta == 0.0f ? 0.0f : __fmul_rn(*p, beta);
      if (bias) v = __fadd_rn(v, bias[j]);
      *p = v;
    }
  }
}

// ---- column sums (SumRows, LayerNorm dw/db) ----
//
// Rows are cut into blocks of blockRows (a function of the shape only); pass
// one writes each block's float32 column sums, pass two adds the blocks in a
// fixed order in float64. No atomics: the result is the same on every run.

// part [nb, cols] (nb = gridDim.y): part[blk, j] = sum of x[r, j] over the block's rows.
extern "C" __global__ void hjepa_colsum_partial(float* __restrict__ part, const float* __restrict__ x,
                                                long long rows, int cols, int blockRows) {
  int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= cols) return;
  long long r0 = (long long)blockIdx.y * blockRows;
  long long r1 = r0 + blockRows < rows ? r0 + blockRows : rows;
  float acc = 0;
  for (long long r = r0; r < r1; r++) acc += x[r * cols + j];
  part[(long long)blockIdx.y * cols + j] = acc;
}

// dst[j] += sum over blk of part[blk*ldp + j]. Block (32, 8): threadIdx.y
// sums every 8th block in float64, then row 0 adds the eight in order.
extern "C" __global__ void hjepa_colsum_finish(float* __restrict__ dst, const float* __restrict__ part, int nb,
                                               int cols, long long ldp) {
  __shared__ double acc[8][33];
  int j = blockIdx.x * 32 + threadIdx.x;
  double s = 0;
  if (j < cols) {
    for (int blk = threadIdx.y; blk < nb; blk += 8) s += (double)part[blk * ldp + j];
  }
  acc[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && j < cols) {
    double t = 0;
    for (int k = 0; k < 8; k++) t += acc[k][threadIdx.x];
    dst[j] = __fadd_rn(dst[j], (float)t);
  }
}

// ---- Patchify ----

// img [B, C, H, W] -> dst [B, (H/p)*(W/p), C*p*p], one thread per dst element.
extern "C" __global__ void hjepa_patchify(float* __restrict__ dst, const float* __restrict__ img, int B, int C,
                                          int H, int W, int p) {
  int gw = W / p, np = (H / p) * gw, pd = C * p * p;
  long long n = (long long)B * np * pd;
  GRID_STRIDE(i, n) {
    int e = (int)(i % pd);
    long long t = i / pd;
    int patch = (int)(t % np), b = (int)(t / np);
    int ch = e / (p * p), rem = e % (p * p);
    int ii = rem / p, jj = rem % p;
    int py = patch / gw, px = patch % gw;
    dst[i] = img[(((long long)b * C + ch) * H + py * p + ii) * W + px * p + jj];
  }
}

// ---- LayerNorm: one warp per row ----

// out = (x - mean) * rstd * w + b over rows of d; mean and rstd saved. The
// moments use the CPU backend's corrected two-pass scheme: mu0 = sum/d,
// c = sum(x-mu0)/d, var = (sum((x-mu0)^2) - d*c^2)/d, normalising with
// (x-mu0)*rs - c*rs. out may alias x (each lane reads its elements before
// writing them).
extern "C" __global__ void hjepa_ln_fwd(float* out, float* __restrict__ mean, float* __restrict__ rstd,
                                        const float* x, const float* __restrict__ w, const float* __restrict__ b,
                                        long long rows, int d, float eps) {
  long long row = (long long)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
  int lane = threadIdx.x % 32;
  if (row >= rows) return;  // whole warps exit together
  const float* xr = x + row * d;
  float s = 0;
  for (int j = lane; j < d; j += 32) s += xr[j];
  float mu0 = warp_sum(s) / (float)d;
  float sd = 0, ssd = 0;
  for (int j = lane; j < d; j += 32) {
    float v = xr[j] - mu0;
    sd += v;
    ssd += v * v;
  }
  sd = warp_sum(sd);
  ssd = warp_sum(ssd);
  float c = sd / (float)d;
  float var = fmaxf(0.0f, (ssd - sd * c) / (float)d);
  float rs = (float)(1.0 / sqrt((double)(var + eps)));
  if (lane == 0) {
    mean[row] = mu0 + c;
    rstd[row] = rs;
  }
  float k = -c * rs;
  float* o = out + row * d;
  for (int j = lane; j < d; j += 32) {
    float v = (xr[j] - mu0) * rs + k;
    if (w) v *= w[j];
    if (b) v += b[j];
    o[j] = v;
  }
}

// dx += rstd * (g - mean(g) - xhat*mean(g*xhat)), g = dout*w (w may be null),
// one warp per row. dx may alias dout, as on the CPU: a lane reads each of
// its dout elements before it writes that dx element.
extern "C" __global__ void hjepa_ln_bwd_dx(float* dx, const float* dout,
                                           const float* __restrict__ x, const float* __restrict__ mean,
                                           const float* __restrict__ rstd, const float* __restrict__ w,
                                           long long rows, int d) {
  long long row = (long long)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
  int lane = threadIdx.x % 32;
  if (row >= rows) return;
  const float* xr = x + row * d;
  const float* gr = dout + row * d;
  float mu = mean[row], rs = rstd[row];
  float sg = 0, sgx = 0;
  for (int j = lane; j < d; j += 32) {
    float g = w ? gr[j] * w[j] : gr[j];
    sg += g;
    sgx += g * ((xr[j] - mu) * rs);
  }
  sg = warp_sum(sg);
  sgx = warp_sum(sgx);
  float inv = 1.0f / (float)d;
  float mg = sg * inv, mgx = sgx * inv;
  float* dr = dx + row * d;
  for (int j = lane; j < d; j += 32) {
    float g = w ? gr[j] * w[j] : gr[j];
    float xh = (xr[j] - mu) * rs;
    dr[j] += rs * (g - mg - xh * mgx);
  }
}

// part [nb, 2, cols]: per row block, the column sums of dout*xhat (for dw)
// and of dout (for db); hjepa_colsum_finish adds the blocks.
extern "C" __global__ void hjepa_ln_bwd_dwdb_partial(float* __restrict__ part, const float* __restrict__ dout,
                                                     const float* __restrict__ x, const float* __restrict__ mean,
                                                     const float* __restrict__ rstd, long long rows, int cols,
                                                     int blockRows) {
  int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= cols) return;
  long long r0 = (long long)blockIdx.y * blockRows;
  long long r1 = r0 + blockRows < rows ? r0 + blockRows : rows;
  float aw = 0, ab = 0;
  for (long long r = r0; r < r1; r++) {
    float g = dout[r * cols + j];
    aw += g * ((x[r * cols + j] - mean[r]) * rstd[r]);
    ab += g;
  }
  float* p = part + (long long)blockIdx.y * 2 * cols;
  p[j] = aw;
  p[cols + j] = ab;
}

// ---- GELU (erf form) ----

#define INV_SQRT2 0.70710678118654752440f
#define INV_SQRT2PI 0.39894228040143267794f

extern "C" __global__ void hjepa_gelu_fwd(float* out, const float* x, long long n) {
  GRID_STRIDE(i, n) {
    float v = x[i];
    out[i] = 0.5f * v * (1.0f + erff(v * INV_SQRT2));
  }
}

// dx = dout * (Phi(x) + x*phi(x)); dx may alias dout.
extern "C" __global__ void hjepa_gelu_bwd(float* dx, const float* dout, const float* x, long long n) {
  GRID_STRIDE(i, n) {
    float v = x[i];
    float cdf = 0.5f * (1.0f + erff(v * INV_SQRT2));
    float pdf = INV_SQRT2PI * expf(-0.5f * v * v);
    dx[i] = dout[i] * (cdf + v * pdf);
  }
}

// ---- Gather / ScatterAdd (indices validated on the host) ----

// dst [m, cols] row i = src row idx[i]. Block x covers columns, grid y strides rows.
extern "C" __global__ void hjepa_gather(float* __restrict__ dst, const float* __restrict__ src,
                                        const int* __restrict__ idx, int m, int cols) {
  int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= cols) return;
  for (int i = blockIdx.y; i < m; i += gridDim.y) dst[(long long)i * cols + j] = src[(long long)idx[i] * cols + j];
}

// dst row dstRows[u] += src rows srcRows[start[u]..start[u+1]) in that
// (ascending) order: the inverse index built on the host, so every dst
// element is accumulated by one thread in index order, as on the CPU.
extern "C" __global__ void hjepa_scatter_add(float* __restrict__ dst, const float* __restrict__ src,
                                             const int* __restrict__ start, const int* __restrict__ srcRows,
                                             const int* __restrict__ dstRows, int nrows, int cols) {
  int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= cols) return;
  for (int u = blockIdx.y; u < nrows; u += gridDim.y) {
    float* p = dst + (long long)dstRows[u] * cols + j;
    float v = *p;
    for (int k = start[u]; k < start[u + 1]; k++) v = __fadd_rn(v, src[(long long)srcRows[k] * cols + j]);
    *p = v;
  }
}

// ---- reductions: float64 partial per SUM_BLOCK elements ----

// block_sum returns the sum of v over the block (SUM_THREADS threads) to
// thread 0, in a fixed order.
__device__ __forceinline__ double block_sum(double v) {
  __shared__ double warps[SUM_THREADS / 32];
  for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(FULL_MASK, v, off);
  if (threadIdx.x % 32 == 0) warps[threadIdx.x / 32] = v;
  __syncthreads();
  double t = 0;
  if (threadIdx.x == 0) {
    for (int k = 0; k < SUM_THREADS / 32; k++) t += warps[k];
  }
  return t;
}

// part[blk] = sum (or sum of squares) of x over [blk*SUM_BLOCK, (blk+1)*SUM_BLOCK).
extern "C" __global__ void __launch_bounds__(SUM_THREADS)
    hjepa_sum_partial(double* __restrict__ part, const float* __restrict__ x, long long n, int squares) {
  long long lo = (long long)blockIdx.x * SUM_BLOCK;
  long long hi = lo + SUM_BLOCK < n ? lo + SUM_BLOCK : n;
  double acc = 0;
  for (long long i = lo + threadIdx.x; i < hi; i += SUM_THREADS) {
    double v = x[i];
    acc = squares ? __dadd_rn(acc, __dmul_rn(v, v)) : acc + v;
  }
  double t = block_sum(acc);
  if (threadIdx.x == 0) part[blockIdx.x] = t;
}

// Smooth L1 loss partials; grad (may be null) = gradScale * dl/dpred.
extern "C" __global__ void __launch_bounds__(SUM_THREADS)
    hjepa_smooth_l1(double* __restrict__ part, float* __restrict__ grad, const float* __restrict__ pred,
                    const float* __restrict__ target, long long n, float beta, float gradScale) {
  long long lo = (long long)blockIdx.x * SUM_BLOCK;
  long long hi = lo + SUM_BLOCK < n ? lo + SUM_BLOCK : n;
  float half = __fmul_rn(0.5f, beta), inv = __fdiv_rn(1.0f, beta);
  double acc = 0;
  for (long long i = lo + threadIdx.x; i < hi; i += SUM_THREADS) {
    float d = __fsub_rn(pred[i], target[i]);
    float ad = fabsf(d);
    float l, dl;
    if (ad < beta) {
      l = __fmul_rn(__fmul_rn(__fmul_rn(0.5f, d), d), inv);
      dl = __fmul_rn(d, inv);
    } else {
      l = __fsub_rn(ad, half);
      dl = d < 0 ? -1.0f : 1.0f;
    }
    acc += (double)l;
    if (grad) grad[i] = __fmul_rn(gradScale, dl);
  }
  double t = block_sum(acc);
  if (threadIdx.x == 0) part[blockIdx.x] = t;
}

// MSE loss partials; grad (may be null) = gradScale * 2 * (pred - target).
extern "C" __global__ void __launch_bounds__(SUM_THREADS)
    hjepa_mse(double* __restrict__ part, float* __restrict__ grad, const float* __restrict__ pred,
              const float* __restrict__ target, long long n, float gradScale) {
  long long lo = (long long)blockIdx.x * SUM_BLOCK;
  long long hi = lo + SUM_BLOCK < n ? lo + SUM_BLOCK : n;
  float g2 = __fmul_rn(gradScale, 2.0f);
  double acc = 0;
  for (long long i = lo + threadIdx.x; i < hi; i += SUM_THREADS) {
    float d = __fsub_rn(pred[i], target[i]);
    acc += (double)__fmul_rn(d, d);
    if (grad) grad[i] = __fmul_rn(g2, d);
  }
  double t = block_sum(acc);
  if (threadIdx.x == 0) part[blockIdx.x] = t;
}

// ---- random numbers: tensor.RNG's Philox4x32-10 stream ----

struct U4 {
  unsigned x, y, z, w;
};

// philox is tensor.Philox4x32 at counter c with key seed.
__device__ __forceinline__ U4 philox(unsigned long long c, unsigned long long seed) {
  unsigned c0 = (unsigned)c, c1 = (unsigned)(c >> 32), c2 = 0, c3 = 0;
  unsigned k0 = (unsigned)seed, k1 = (unsigned)(seed >> 32);
  for (int round = 0; round < 10; round++) {
    unsigned lo0 = 0xD2511F53u * c0, hi0 = __umulhi(0xD2511F53u, c0);
    unsigned lo1 = 0xCD9E8D57u * c2, hi1 = __umulhi(0xCD9E8D57u, c2);
    unsigned n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return U4{c0, c1, c2, c3};
}

// Uniform in [0, 1) with 24 random bits, as tensor.RNG.UniformAt.
__device__ __forceinline__ float uniform24(unsigned w) { return (float)(w >> 8) * (1.0f / 16777216.0f); }

#define POLY8(r, p) \
  __dadd_rn(__dmul_rn(__dadd_rn(__dmul_rn(__dadd_rn(__dmul_rn(__dadd_rn(__dmul_rn(__dadd_rn(__dmul_rn(__dadd_rn(__dmul_rn(__dadd_rn(__dmul_rn(p##7, r), p##6), r), p##5), r), p##4), r), p##3), r), p##2), r), p##1), r), p##0)

// hjepa_erfinv is Go's math.Erfinv (rational approximations of Giles'
// algorithm, double precision) with every operation rounded as Go does on
// amd64, so TruncNormal gives the CPU backend's values.
__device__ __forceinline__ double hjepa_erfinv(double x) {
  const double a0 = 1.1975323115670912564578e0, a1 = 4.7072688112383978012285e1, a2 = 6.9706266534389598238465e2,
               a3 = 4.8548868893843886794648e3, a4 = 1.6235862515167575384252e4, a5 = 2.3782041382114385731252e4,
               a6 = 1.1819493347062294404278e4, a7 = 8.8709406962545514830200e2;
  const double b0 = 1.0000000000000000000e0, b1 = 4.2313330701600911252e1, b2 = 6.8718700749205790830e2,
               b3 = 5.3941960214247511077e3, b4 = 2.1213794301586595867e4, b5 = 3.9307895800092710610e4,
               b6 = 2.8729085735721942674e4, b7 = 5.2264952788528545610e3;
  const double c0 = 1.42343711074968357734e0, c1 = 4.63033784615654529590e0, c2 = 5.76949722146069140550e0,
               c3 = 3.64784832476320460504e0, c4 = 1.27045825245236838258e0, c5 = 2.41780725177450611770e-1,
               c6 = 2.27238449892691845833e-2, c7 = 7.74545014278341407640e-4;
  const double d0 = 1.4142135623730950488016887e0, d1 = 2.9036514445419946173133295e0,
               d2 = 2.3707661626024532365971225e0, d3 = 9.7547832001787427186894837e-1,
               d4 = 2.0945065210512749128288442e-1, d5 = 2.1494160384252876777097297e-2,
               d6 = 7.7441459065157709165577218e-4, d7 = 1.4859850019840355905497876e-9;
  const double e0 = 6.65790464350110377720e0, e1 = 5.46378491116411436990e0, e2 = 1.78482653991729133580e0,
               e3 = 2.96560571828504891230e-1, e4 = 2.65321895265761230930e-2, e5 = 1.24266094738807843860e-3,
               e6 = 2.71155556874348757815e-5, e7 = 2.01033439929228813265e-7;
  const double f0 = 1.414213562373095048801689e0, f1 = 8.482908416595164588112026e-1,
               f2 = 1.936480946950659106176712e-1, f3 = 2.103693768272068968719679e-2,
               f4 = 1.112800997078859844711555e-3, f5 = 2.611088405080593625138020e-5,
               f6 = 2.010321207683943062279931e-7, f7 = 2.891024605872965461538222e-15;
  const double ln2 = 0x1.62e42fefa39efp-1;
  bool sign = x < 0;
  if (sign) x = -x;
  double ans;
  if (x <= 0.85) {
    double r = __dsub_rn(0.180625, __dmul_rn(__dmul_rn(0.25, x), x));
    double z1 = POLY8(r, a), z2 = POLY8(r, b);
    ans = __ddiv_rn(__dmul_rn(x, z1), z2);
  } else {
    double r = sqrt(__dsub_rn(ln2, log(__dsub_rn(1.0, x))));
    double z1, z2;
    if (r <= 5.0) {
      r = __dsub_rn(r, 1.6);
      z1 = POLY8(r, c);
      z2 = POLY8(r, d);
    } else {
      r = __dsub_rn(r, 5.0);
      z1 = POLY8(r, e);
      z2 = POLY8(r, f);
    }
    ans = __ddiv_rn(z1, z2);
  }
  return sign ? -ans : ans;
}

// x[i] = lo + span*UniformAt(i) at counter offset+i.
extern "C" __global__ void hjepa_rand_uniform(float* __restrict__ x, long long n, unsigned long long seed,
                                              unsigned long long offset, float lo, float span) {
  GRID_STRIDE(i, n) {
    U4 w = philox(offset + (unsigned long long)i, seed);
    x[i] = __fadd_rn(lo, __fmul_rn(span, uniform24(w.x)));
  }
}

// x[i] = mean + std*float32(NormalAt(i)): Box-Muller in float64 on two words.
extern "C" __global__ void hjepa_rand_normal(float* __restrict__ x, long long n, unsigned long long seed,
                                             unsigned long long offset, float mean, float std) {
  const double twoPi = 0x1.921fb54442d18p+2;
  GRID_STRIDE(i, n) {
    U4 w = philox(offset + (unsigned long long)i, seed);
    double u1 = __dmul_rn(__dadd_rn((double)(w.x >> 8), 1.0), 1.0 / 16777216.0);
    double u2 = __dmul_rn((double)(w.y >> 8), 1.0 / 16777216.0);
    double z = __dmul_rn(sqrt(__dmul_rn(-2.0, log(u1))), cos(__dmul_rn(twoPi, u2)));
    x[i] = __fadd_rn(mean, __fmul_rn(std, (float)z));
  }
}

// x[i] = TruncNormalAt(i): a = 2*cdf(hi')-2*cdf(lo'), b = 2*cdf(lo')-1 come
// from the host (math.Erf), the rest as tensor.RNG.TruncNormalAt.
extern "C" __global__ void hjepa_trunc_normal(float* __restrict__ x, long long n, unsigned long long seed,
                                              unsigned long long offset, double a, double b, double mean,
                                              double std, double lo, double hi) {
  const double sqrt2 = 0x1.6a09e667f3bcdp+0;
  const double lim = 0x1.fffffca501acbp-1;  // 1 - 1e-7 as Go rounds it
  GRID_STRIDE(i, n) {
    U4 w = philox(offset + (unsigned long long)i, seed);
    double u = __dadd_rn(__dmul_rn((double)uniform24(w.x), a), b);
    u = fmax(-lim, fmin(lim, u));
    double v = __dadd_rn(__dmul_rn(__dmul_rn(hjepa_erfinv(u), std), sqrt2), mean);
    x[i] = (float)fmax(lo, fmin(hi, v));
  }
}

// ---- attention ----
//
// qkv [B, N, 3*H*Dh] is viewed as [B, N, 3, H, Dh], out and dout are
// [B, N, H*Dh], lse and delta [B, H, N]. Each kernel is a template over DH, a
// compile-time bound on the head dimension (the runtime dh <= DH; the tile
// columns past dh are zero), and the tile shape: a block of NT threads owns
// BR rows of the "row" operand (queries, or keys in the dK/dV kernel) and
// streams the other operand through shared memory BC rows at a time.
// Thread (ty, tx) = (tid / LC, tid % LC) holds rows ty*4 .. ty*4+3 of the
// tile and columns tx, tx+LC, ...: the LC lanes of a row group are adjacent
// lanes of one warp, so row maxima and sums reduce by xor shuffles. Shared
// tiles are stored transposed ([d][row], pitch BR+1 or BC+1, odd so that
// neither the transposing store nor the reads conflict on banks).

#define ATTN_TR 4

// load_t stores rows r0..r0+R-1 (zero past N) of a [*, ld] operand at src,
// columns 0..dh-1 (zero up to DH), transposed into dst[d*(R+1) + r].
// Consecutive threads read consecutive columns (coalesced).
template <int DH, int R, int NT>
__device__ __forceinline__ void load_t(float* __restrict__ dst, const float* __restrict__ src, long long ld, int r0,
                                       int N, int dh) {
  for (int e = threadIdx.x; e < R * DH; e += NT) {
    int r = e / DH, d = e % DH;
    float v = 0;
    if (r0 + r < N && d < dh) v = src[(long long)(r0 + r) * ld + d];
    dst[d * (R + 1) + r] = v;
  }
}

// load_n is load_t without the transpose: dst[r*DH + d].
template <int DH, int R, int NT>
__device__ __forceinline__ void load_n(float* __restrict__ dst, const float* __restrict__ src, long long ld, int r0,
                                       int N, int dh) {
  for (int e = threadIdx.x; e < R * DH; e += NT) {
    int r = e / DH, d = e % DH;
    float v = 0;
    if (r0 + r < N && d < dh) v = src[(long long)(r0 + r) * ld + d];
    dst[e] = v;
  }
}

template <int LC>
__device__ __forceinline__ float group_max(float v) {
  for (int off = LC / 2; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(FULL_MASK, v, off));
  return v;
}

template <int LC>
__device__ __forceinline__ float group_sum(float v) {
  for (int off = LC / 2; off > 0; off >>= 1) v += __shfl_xor_sync(FULL_MASK, v, off);
  return v;
}

// attn_fwd: block (blockIdx.x = b*H + h, blockIdx.y = query tile). Flash
// attention: K and V tiles pass through shared memory (one buffer, K then
// V), the softmax is kept online (running max m and per-thread partial sums
// l, rescaled when the max grows), and lse = m + log(l) is saved.
template <int DH, int BR, int BC, int NT>
__device__ __forceinline__ void attn_fwd(float* __restrict__ out, float* __restrict__ lse,
                                         const float* __restrict__ qkv, int N, int H, int dh, float scale) {
  constexpr int TR = ATTN_TR, RG = BR / TR, LC = NT / RG, CPT = BC / LC, DPT = DH / LC;
  static_assert(RG * LC == NT && 32 % LC == 0 && CPT * LC == BC && DPT * LC == DH, "attention tile shape");
  constexpr int KVN = DH * (BC + 1) > BC * DH ? DH * (BC + 1) : BC * DH;
  static_assert((DH * (BR + 1) + KVN + BC * (BR + 1)) * 4 <= 48 * 1024, "attention shared memory");
  __shared__ float Qs[DH * (BR + 1)];  // Q tile, [d][r]
  __shared__ float KV[KVN];            // K tile [d][c] (pitch BC+1), then V tile [c][d]
  __shared__ float Ps[BC * (BR + 1)];  // probabilities, [c][r]

  const int ty = threadIdx.x / LC, tx = threadIdx.x % LC;
  const int b = blockIdx.x / H, h = blockIdx.x % H;
  const int q0 = blockIdx.y * BR;
  const int HD = H * dh;
  const long long ld = 3LL * HD;
  const float* base = qkv + (long long)b * N * ld + (long long)h * dh;  // Q; K at +HD, V at +2*HD

  load_t<DH, BR, NT>(Qs, base, ld, q0, N, dh);
  float o[TR][DPT], m[TR], l[TR];
  UNROLL for (int i = 0; i < TR; i++) {
    m[i] = NEG_INF;
    l[i] = 0;
    UNROLL for (int k = 0; k < DPT; k++) o[i][k] = 0;
  }
  for (int k0 = 0; k0 < N; k0 += BC) {
    __syncthreads();  // the previous tile's readers of KV and Ps are done
    load_t<DH, BC, NT>(KV, base + HD, ld, k0, N, dh);
    __syncthreads();
    float s[TR][CPT];
    UNROLL for (int i = 0; i < TR; i++)
      UNROLL for (int j = 0; j < CPT; j++) s[i][j] = 0;
    UNROLL4 for (int d = 0; d < DH; d++) {
      float qv[TR], kv[CPT];
      UNROLL for (int i = 0; i < TR; i++) qv[i] = Qs[d * (BR + 1) + ty * TR + i];
      UNROLL for (int j = 0; j < CPT; j++) kv[j] = KV[d * (BC + 1) + tx + j * LC];
      UNROLL for (int i = 0; i < TR; i++)
        UNROLL for (int j = 0; j < CPT; j++) s[i][j] += qv[i] * kv[j];
    }
    UNROLL for (int i = 0; i < TR; i++) {
      float mx = NEG_INF;
      UNROLL for (int j = 0; j < CPT; j++) {
        s[i][j] = k0 + tx + j * LC < N ? s[i][j] * scale : NEG_INF;
        mx = fmaxf(mx, s[i][j]);
      }
      float mn = fmaxf(m[i], group_max<LC>(mx));  // finite: key k0 < N is in the tile
      float alpha = expf(m[i] - mn);
      float ps = 0;
      UNROLL for (int j = 0; j < CPT; j++) {
        float p = expf(s[i][j] - mn);
        ps += p;
        Ps[(tx + j * LC) * (BR + 1) + ty * TR + i] = p;
      }
      l[i] = l[i] * alpha + ps;
      m[i] = mn;
      UNROLL for (int k = 0; k < DPT; k++) o[i][k] *= alpha;
    }
    __syncthreads();  // K reads done, Ps written
    load_n<DH, BC, NT>(KV, base + 2 * HD, ld, k0, N, dh);
    __syncthreads();
    UNROLL4 for (int c = 0; c < BC; c++) {
      float pv[TR], vv[DPT];
      UNROLL for (int i = 0; i < TR; i++) pv[i] = Ps[c * (BR + 1) + ty * TR + i];
      UNROLL for (int k = 0; k < DPT; k++) vv[k] = KV[c * DH + tx + k * LC];
      UNROLL for (int i = 0; i < TR; i++)
        UNROLL for (int k = 0; k < DPT; k++) o[i][k] += pv[i] * vv[k];
    }
  }
  UNROLL for (int i = 0; i < TR; i++) {
    float lt = group_sum<LC>(l[i]);
    int r = q0 + ty * TR + i;
    if (r >= N) continue;
    float inv = 1.0f / lt;
    float* orow = out + ((long long)b * N + r) * HD + (long long)h * dh;
    UNROLL for (int k = 0; k < DPT; k++) {
      int d = tx + k * LC;
      if (d < dh) orow[d] = o[i][k] * inv;
    }
    if (tx == 0) lse[((long long)b * H + h) * N + r] = m[i] + logf(lt);
  }
}

// delta [B, H, N] = rowsum(dout * out) per head, one warp per (b, n, h).
extern "C" __global__ void hjepa_attn_bwd_delta(float* __restrict__ delta, const float* __restrict__ dout,
                                                const float* __restrict__ out, int B, int N, int H, int dh) {
  long long row = (long long)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;  // (b*N + n)*H + h
  int lane = threadIdx.x % 32;
  if (row >= (long long)B * N * H) return;
  const float* g = dout + row * dh;
  const float* o = out + row * dh;
  float s = 0;
  for (int d = lane; d < dh; d += 32) s += g[d] * o[d];
  s = warp_sum(s);
  if (lane == 0) {
    int h = (int)(row % H);
    long long bn = row / H;
    int n = (int)(bn % N), b = (int)(bn / N);
    delta[((long long)b * H + h) * N + n] = s;
  }
}

// tile_dots forms the two score tiles both backward kernels recompute:
//   s[i][j]  = sum_d X1[d][ty*TR + i] * Y1[d][tx + j*LC],
//   dp[i][j] = sum_d X2[d][ty*TR + i] * Y2[d][tx + j*LC],
// X1, X2 being [DH][BR+1] tiles of this block's rows (queries for dQ, keys
// and values for dK/dV) and Y1, Y2 [DH][BC+1] tiles of the other side.
template <int DH, int BR, int BC, int TR, int LC, int CPT>
__device__ __forceinline__ void tile_dots(const float* X1, const float* X2, const float* Y1, const float* Y2, int ty,
                                          int tx, float (&s)[TR][CPT], float (&dp)[TR][CPT]) {
  UNROLL for (int i = 0; i < TR; i++)
    UNROLL for (int j = 0; j < CPT; j++) s[i][j] = dp[i][j] = 0;
  UNROLL4 for (int d = 0; d < DH; d++) {
    float x1[TR], x2[TR], y1[CPT], y2[CPT];
    UNROLL for (int i = 0; i < TR; i++) {
      x1[i] = X1[d * (BR + 1) + ty * TR + i];
      x2[i] = X2[d * (BR + 1) + ty * TR + i];
    }
    UNROLL for (int j = 0; j < CPT; j++) {
      y1[j] = Y1[d * (BC + 1) + tx + j * LC];
      y2[j] = Y2[d * (BC + 1) + tx + j * LC];
    }
    UNROLL for (int i = 0; i < TR; i++)
      UNROLL for (int j = 0; j < CPT; j++) {
        s[i][j] += x1[i] * y1[j];
        dp[i][j] += x2[i] * y2[j];
      }
  }
}

// attn_bwd_dq: block (b*H + h, query tile). For each key tile, recompute
// P = exp(scale*Q K^T - lse) and dP = dO V^T, form dS = P*(dP - delta) in
// shared memory, and accumulate dQ += dS K; dQ = scale*sum is written once.
template <int DH, int BR, int BC, int NT>
__device__ __forceinline__ void attn_bwd_dq(float* __restrict__ dqkv, const float* __restrict__ dout,
                                            const float* __restrict__ qkv, const float* __restrict__ lse,
                                            const float* __restrict__ delta, int N, int H, int dh, float scale) {
  constexpr int TR = ATTN_TR, RG = BR / TR, LC = NT / RG, CPT = BC / LC, DPT = DH / LC;
  static_assert(RG * LC == NT && 32 % LC == 0 && CPT * LC == BC && DPT * LC == DH, "attention tile shape");
  static_assert((2 * DH * (BR + 1) + 2 * DH * (BC + 1) + BC * (BR + 1)) * 4 <= 48 * 1024, "attention shared memory");
  __shared__ float Qs[DH * (BR + 1)];  // [d][r]
  __shared__ float Gs[DH * (BR + 1)];  // dO tile, [d][r]
  __shared__ float Ks[DH * (BC + 1)];  // [d][c]
  __shared__ float Vs[DH * (BC + 1)];  // [d][c]
  __shared__ float Ss[BC * (BR + 1)];  // dS, [c][r]

  const int ty = threadIdx.x / LC, tx = threadIdx.x % LC;
  const int b = blockIdx.x / H, h = blockIdx.x % H;
  const int q0 = blockIdx.y * BR;
  const int HD = H * dh;
  const long long ld = 3LL * HD;
  const float* base = qkv + (long long)b * N * ld + (long long)h * dh;
  const float* gbase = dout + (long long)b * N * HD + (long long)h * dh;
  const float* lrow = lse + ((long long)b * H + h) * N;
  const float* drow = delta + ((long long)b * H + h) * N;

  load_t<DH, BR, NT>(Qs, base, ld, q0, N, dh);
  load_t<DH, BR, NT>(Gs, gbase, HD, q0, N, dh);
  float lr[TR], dr[TR], acc[TR][DPT];
  UNROLL for (int i = 0; i < TR; i++) {
    int r = q0 + ty * TR + i;
    lr[i] = r < N ? lrow[r] : 0.0f;
    dr[i] = r < N ? drow[r] : 0.0f;
    UNROLL for (int k = 0; k < DPT; k++) acc[i][k] = 0;
  }
  for (int k0 = 0; k0 < N; k0 += BC) {
    __syncthreads();
    load_t<DH, BC, NT>(Ks, base + HD, ld, k0, N, dh);
    load_t<DH, BC, NT>(Vs, base + 2 * HD, ld, k0, N, dh);
    __syncthreads();
    float s[TR][CPT], dp[TR][CPT];
    tile_dots<DH, BR, BC, TR, LC, CPT>(Qs, Gs, Ks, Vs, ty, tx, s, dp);
    UNROLL for (int i = 0; i < TR; i++)
      UNROLL for (int j = 0; j < CPT; j++) {
        float p = k0 + tx + j * LC < N ? expf(s[i][j] * scale - lr[i]) : 0.0f;
        Ss[(tx + j * LC) * (BR + 1) + ty * TR + i] = p * (dp[i][j] - dr[i]);
      }
    __syncthreads();
    UNROLL4 for (int c = 0; c < BC; c++) {
      float sv[TR], kv[DPT];
      UNROLL for (int i = 0; i < TR; i++) sv[i] = Ss[c * (BR + 1) + ty * TR + i];
      UNROLL for (int k = 0; k < DPT; k++) kv[k] = Ks[(tx + k * LC) * (BC + 1) + c];
      UNROLL for (int i = 0; i < TR; i++)
        UNROLL for (int k = 0; k < DPT; k++) acc[i][k] += sv[i] * kv[k];
    }
  }
  UNROLL for (int i = 0; i < TR; i++) {
    int r = q0 + ty * TR + i;
    if (r >= N) continue;
    float* dq = dqkv + ((long long)b * N + r) * ld + (long long)h * dh;
    UNROLL for (int k = 0; k < DPT; k++) {
      int d = tx + k * LC;
      if (d < dh) dq[d] = acc[i][k] * scale;
    }
  }
}

// attn_bwd_dkv: block (b*H + h, key tile). For each query tile, recompute
// P^T = exp(scale*K Q^T - lse) and dP^T = V dO^T, and accumulate
// dV += P^T dO and dK += dS^T Q with dS^T = P^T*(dP^T - delta).
template <int DH, int BR, int BC, int NT>
__device__ __forceinline__ void attn_bwd_dkv(float* __restrict__ dqkv, const float* __restrict__ dout,
                                             const float* __restrict__ qkv, const float* __restrict__ lse,
                                             const float* __restrict__ delta, int N, int H, int dh, float scale) {
  constexpr int TR = ATTN_TR, RG = BR / TR, LC = NT / RG, CPT = BC / LC, DPT = DH / LC;
  static_assert(RG * LC == NT && 32 % LC == 0 && CPT * LC == BC && DPT * LC == DH, "attention tile shape");
  static_assert((2 * DH * (BR + 1) + 2 * DH * (BC + 1) + 2 * BC * (BR + 1) + 2 * BC) * 4 <= 48 * 1024,
                "attention shared memory");
  __shared__ float Ks[DH * (BR + 1)];  // this block's keys, [d][r]
  __shared__ float Vs[DH * (BR + 1)];
  __shared__ float Qs[DH * (BC + 1)];  // query tile, [d][c]
  __shared__ float Gs[DH * (BC + 1)];  // dO tile, [d][c]
  __shared__ float Ps[BC * (BR + 1)];  // P^T, [c][r]
  __shared__ float Ss[BC * (BR + 1)];  // dS^T, [c][r]
  __shared__ float Ls[BC], Ds[BC];

  const int ty = threadIdx.x / LC, tx = threadIdx.x % LC;
  const int b = blockIdx.x / H, h = blockIdx.x % H;
  const int k0 = blockIdx.y * BR;
  const int HD = H * dh;
  const long long ld = 3LL * HD;
  const float* base = qkv + (long long)b * N * ld + (long long)h * dh;
  const float* gbase = dout + (long long)b * N * HD + (long long)h * dh;
  const float* lrow = lse + ((long long)b * H + h) * N;
  const float* drow = delta + ((long long)b * H + h) * N;

  load_t<DH, BR, NT>(Ks, base + HD, ld, k0, N, dh);
  load_t<DH, BR, NT>(Vs, base + 2 * HD, ld, k0, N, dh);
  float dk[TR][DPT], dv[TR][DPT];
  UNROLL for (int i = 0; i < TR; i++)
    UNROLL for (int k = 0; k < DPT; k++) dk[i][k] = dv[i][k] = 0;
  for (int q0 = 0; q0 < N; q0 += BC) {
    __syncthreads();
    load_t<DH, BC, NT>(Qs, base, ld, q0, N, dh);
    load_t<DH, BC, NT>(Gs, gbase, HD, q0, N, dh);
    for (int e = threadIdx.x; e < BC; e += NT) {
      Ls[e] = q0 + e < N ? lrow[q0 + e] : 0.0f;
      Ds[e] = q0 + e < N ? drow[q0 + e] : 0.0f;
    }
    __syncthreads();
    float s[TR][CPT], dp[TR][CPT];
    tile_dots<DH, BR, BC, TR, LC, CPT>(Ks, Vs, Qs, Gs, ty, tx, s, dp);
    UNROLL for (int i = 0; i < TR; i++)
      UNROLL for (int j = 0; j < CPT; j++) {
        int c = tx + j * LC;
        float p = q0 + c < N ? expf(s[i][j] * scale - Ls[c]) : 0.0f;
        Ps[c * (BR + 1) + ty * TR + i] = p;
        Ss[c * (BR + 1) + ty * TR + i] = p * (dp[i][j] - Ds[c]);
      }
    __syncthreads();
    UNROLL4 for (int c = 0; c < BC; c++) {
      float pv[TR], sv[TR], gv[DPT], qv[DPT];
      UNROLL for (int i = 0; i < TR; i++) {
        pv[i] = Ps[c * (BR + 1) + ty * TR + i];
        sv[i] = Ss[c * (BR + 1) + ty * TR + i];
      }
      UNROLL for (int k = 0; k < DPT; k++) {
        gv[k] = Gs[(tx + k * LC) * (BC + 1) + c];
        qv[k] = Qs[(tx + k * LC) * (BC + 1) + c];
      }
      UNROLL for (int i = 0; i < TR; i++)
        UNROLL for (int k = 0; k < DPT; k++) {
          dv[i][k] += pv[i] * gv[k];
          dk[i][k] += sv[i] * qv[k];
        }
    }
  }
  UNROLL for (int i = 0; i < TR; i++) {
    int r = k0 + ty * TR + i;
    if (r >= N) continue;
    float* row = dqkv + ((long long)b * N + r) * ld + (long long)h * dh;
    UNROLL for (int k = 0; k < DPT; k++) {
      int d = tx + k * LC;
      if (d < dh) {
        row[HD + d] = dk[i][k] * scale;
        row[2 * HD + d] = dv[i][k];
      }
    }
  }
}

// Instances per head-dimension bound; the Go wrappers hold the same tile
// shapes (attnFwdTiles, attnBwdTiles in cuda/kernels.go).
#define ATTN_FWD(DH, BR, BC, NT)                                                                           \
  extern "C" __global__ void __launch_bounds__(NT)                                                         \
      hjepa_attn_fwd_d##DH(float* out, float* lse, const float* qkv, int N, int H, int dh, float scale) { \
    attn_fwd<DH, BR, BC, NT>(out, lse, qkv, N, H, dh, scale);                                             \
  }
#define ATTN_BWD(DH, BR, BC, NT)                                                                        \
  extern "C" __global__ void __launch_bounds__(NT)                                                      \
      hjepa_attn_bwd_dq_d##DH(float* dqkv, const float* dout, const float* qkv, const float* lse,       \
                              const float* delta, int N, int H, int dh, float scale) {                  \
    attn_bwd_dq<DH, BR, BC, NT>(dqkv, dout, qkv, lse, delta, N, H, dh, scale);                          \
  }                                                                                                     \
  extern "C" __global__ void __launch_bounds__(NT)                                                      \
      hjepa_attn_bwd_dkv_d##DH(float* dqkv, const float* dout, const float* qkv, const float* lse,      \
                               const float* delta, int N, int H, int dh, float scale) {                 \
    attn_bwd_dkv<DH, BR, BC, NT>(dqkv, dout, qkv, lse, delta, N, H, dh, scale);                         \
  }

ATTN_FWD(16, 64, 64, 128)
ATTN_FWD(32, 64, 64, 128)
ATTN_FWD(64, 64, 32, 128)
ATTN_FWD(128, 32, 32, 128)
ATTN_BWD(16, 64, 32, 128)
ATTN_BWD(32, 64, 32, 128)
ATTN_BWD(64, 32, 32, 128)
ATTN_BWD(128, 16, 16, 64)
