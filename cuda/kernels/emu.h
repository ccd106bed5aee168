// emu.h lets g++ compile hjepa.cu as C++17 for the host emulator of
// cuda.Driver (cuda/emu). It defines the CUDA keywords, built-in variables and
// device functions the kernels use, and runs the threads of a block as
// cooperative fibers on one OS thread:
//
//   - The blocks of a launch run one after another. Within a block, one warp
//     at a time runs until each of its threads has exited or waits in
//     __syncthreads, then the next warp: a warp runs as far ahead of the
//     others as the barriers allow, which exposes a missing barrier between
//     warps. A thread runs until it blocks in __syncthreads or a warp
//     primitive; a warp primitive completes when all 32 lanes reach it.
//   - Static __shared__ arrays are function-local statics: one block (and,
//     under the caller's lock, one launch) is live at a time.
//   - __syncthreads releases when every thread of the block has arrived or
//     exited (exited threads count as arrived, as on sm_70 and later).
//     Threads waiting at different call sites fail the launch ("divergent
//     __syncthreads"), as do a deadlock, a warp primitive in a partial warp
//     and one with a mask other than 0xffffffff.
//   - Runtime::reverse runs the warps, and the lanes of each warp, in reverse
//     order, so a kernel that reads shared memory another thread writes
//     without a barrier in between gives different results in the two orders
//     (on the GPU it would race).
//
// Fibers switch with a few instructions of assembly on x86-64 (glibc's
// swapcontext makes a system call per switch) and with ucontext elsewhere.
#ifndef HJEPA_EMU_H
#define HJEPA_EMU_H

#ifdef __CUDACC__
#error "emu.h is for the host emulator (g++); nvcc compiles hjepa.cu without it"
#endif

#include <math.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include <string>
#include <vector>

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __shared__ static
#define __launch_bounds__(...)

struct uint3 {
  unsigned x, y, z;
};

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

namespace emu {

enum State : int { kRunnable, kBarrier, kWarp, kDone };
enum WarpOp : int { kShflXor, kShflDown, kShflUp, kShflIdx, kSyncWarp };

struct Fiber {
  void* sp;  // saved stack pointer (x86-64)
#if !defined(__x86_64__)
  ucontext_t uc;
#endif
  uint3 idx;
  int linear;  // threadIdx.x + blockDim.x*(threadIdx.y + blockDim.y*threadIdx.z)
  int state;
  int line;    // call site of the __syncthreads it waits in
  int wop, warg, wwidth;
  uint64_t wval, wres;
};

// Runtime is the state of the launch in progress.
struct Runtime {
  uint3 block_idx{};
  dim3 block_dim, grid_dim;
  Fiber* cur = nullptr;
  std::vector<Fiber> fibers;
  std::vector<char*> stacks;
  void* sched_sp = nullptr;
#if !defined(__x86_64__)
  ucontext_t sched_uc;
#endif
  int nthreads = 0, ndone = 0, nbarrier = 0;
  std::vector<int> warp_arrived;
  void (*body)(void*) = nullptr;
  void* body_arg = nullptr;
  std::string error;
  bool abort = false;
  bool reverse = false;
};

inline Runtime rt;

constexpr size_t kStackBytes = 64 << 10;
constexpr size_t kGuardBytes = 4096;
constexpr int kMaxThreads = 1024;

#if defined(__x86_64__)
// hjepa_emu_switch saves the callee-saved registers on the current stack,
// stores the stack pointer in *save and resumes the stack at next.
// hjepa_emu_start is where a new fiber begins: it calls r13(r12).
extern "C" void hjepa_emu_switch(void** save, void* next);
extern "C" void hjepa_emu_start();
asm(R"(
  .pushsection .text
  .p2align 4
  .globl hjepa_emu_switch
  .hidden hjepa_emu_switch
  .type hjepa_emu_switch, @function
hjepa_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size hjepa_emu_switch, .-hjepa_emu_switch
  .p2align 4
  .globl hjepa_emu_start
  .hidden hjepa_emu_start
  .type hjepa_emu_start, @function
hjepa_emu_start:
  movq %r12, %rdi
  callq *%r13
  ud2
  .size hjepa_emu_start, .-hjepa_emu_start
  .popsection
)");
#endif

inline void to_sched(Fiber* f) {
#if defined(__x86_64__)
  hjepa_emu_switch(&f->sp, rt.sched_sp);
#else
  swapcontext(&f->uc, &rt.sched_uc);
#endif
}

inline void to_fiber(Fiber* f) {
  rt.cur = f;
#if defined(__x86_64__)
  hjepa_emu_switch(&rt.sched_sp, f->sp);
#else
  swapcontext(&rt.sched_uc, &f->uc);
#endif
}

// fail aborts the launch with msg; the calling fiber is never resumed.
[[noreturn]] inline void fail(const std::string& msg) {
  if (!rt.abort) {
    rt.error = msg;
    rt.abort = true;
  }
  for (;;) to_sched(rt.cur);
}

inline void fiber_main(Fiber* f) {
  rt.body(rt.body_arg);
  f->state = kDone;
  rt.ndone++;
  for (;;) to_sched(f);
}

#if !defined(__x86_64__)
inline void fiber_main_uc(unsigned hi, unsigned lo) {
  fiber_main(reinterpret_cast<Fiber*>((uintptr_t(hi) << 32) | uintptr_t(lo)));
}
#endif

inline void fiber_init(Fiber* f, char* stack) {
  char* top = stack + kStackBytes;
#if defined(__x86_64__)
  // After the six pops and the ret of hjepa_emu_switch the stack pointer is
  // sp+56, which must be 16-byte aligned at hjepa_emu_start's call.
  uintptr_t t = (reinterpret_cast<uintptr_t>(top) - 64) & ~uintptr_t(15);
  uint64_t* s = reinterpret_cast<uint64_t*>(t - 56);
  s[0] = 0;                                                 // r15
  s[1] = 0;                                                 // r14
  s[2] = reinterpret_cast<uint64_t>(&fiber_main);           // r13
  s[3] = reinterpret_cast<uint64_t>(f);                     // r12
  s[4] = 0;                                                 // rbx
  s[5] = 0;                                                 // rbp
  s[6] = reinterpret_cast<uint64_t>(&hjepa_emu_start);      // return address
  f->sp = s;
#else
  getcontext(&f->uc);
  f->uc.uc_stack.ss_sp = stack;
  f->uc.uc_stack.ss_size = kStackBytes;
  f->uc.uc_link = nullptr;
  uintptr_t p = reinterpret_cast<uintptr_t>(f);
  makecontext(&f->uc, reinterpret_cast<void (*)()>(&fiber_main_uc), 2, unsigned(p >> 32), unsigned(p));
#endif
}

// ensure_stacks maps n fiber stacks (kept for later launches), each above a
// guard page so that an overflow faults instead of corrupting a neighbour.
inline bool ensure_stacks(int n) {
  while (int(rt.stacks.size()) < n) {
    void* m = mmap(nullptr, kStackBytes + kGuardBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return false;
    mprotect(m, kGuardBytes, PROT_NONE);
    rt.stacks.push_back(static_cast<char*>(m) + kGuardBytes);
  }
  return true;
}

inline std::string where() {
  char buf[96];
  snprintf(buf, sizeof buf, " (block (%u,%u,%u), thread %d)", rt.block_idx.x, rt.block_idx.y, rt.block_idx.z,
           rt.cur ? rt.cur->linear : -1);
  return buf;
}

inline void syncthreads(int line) {
  Fiber* f = rt.cur;
  f->state = kBarrier;
  f->line = line;
  rt.nbarrier++;
  to_sched(f);
}

inline uint64_t warp_op(int op, unsigned mask, uint64_t v, int arg, int width) {
  Fiber* f = rt.cur;
  if (mask != 0xffffffffu) fail("warp primitive with a partial mask (the emulator supports 0xffffffff only)" + where());
  if (width <= 0 || width > 32 || (width & (width - 1)) != 0) fail("warp primitive with width " + std::to_string(width) + where());
  int w = f->linear >> 5;
  if ((w + 1) * 32 > rt.nthreads) fail("warp primitive in a partial warp (block size not a multiple of 32)" + where());
  f->wop = op;
  f->warg = arg;
  f->wwidth = width;
  f->wval = v;
  f->state = kWarp;
  if (++rt.warp_arrived[w] < 32) {
    to_sched(f);
    return f->wres;
  }
  // The last lane to arrive exchanges the values for all 32.
  Fiber* lanes = &rt.fibers[w * 32];
  for (int l = 0; l < 32; l++) {
    if (lanes[l].wop != op || lanes[l].wwidth != width) fail("lanes of a warp in different warp primitives" + where());
  }
  for (int l = 0; l < 32; l++) {
    int seg = l & ~(width - 1), a = lanes[l].warg, src = l;
    switch (op) {
      case kShflXor: src = l ^ a; if (src >= seg + width || src < 0 || src > 31) src = l; break;
      case kShflDown: src = l + a; if (src >= seg + width) src = l; break;
      case kShflUp: src = l - a; if (src < seg) src = l; break;
      case kShflIdx: src = seg + (a & (width - 1)); break;
      default: break;
    }
    lanes[l].wres = lanes[src].wval;
  }
  for (int l = 0; l < 32; l++) lanes[l].state = kRunnable;
  rt.warp_arrived[w] = 0;
  return f->wres;
}

template <class T>
inline T shfl(int op, unsigned mask, T v, int arg, int width) {
  static_assert(sizeof(T) == 4 || sizeof(T) == 8, "shuffles move 32- or 64-bit values");
  uint64_t b = 0;
  memcpy(&b, &v, sizeof(T));
  b = warp_op(op, mask, b, arg, width);
  T r;
  memcpy(&r, &b, sizeof(T));
  return r;
}

// run_block runs the threads of the block rt.block_idx to completion.
inline bool run_block() {
  const int n = rt.nthreads;
  const dim3 bd = rt.block_dim;
  for (int i = 0; i < n; i++) {
    Fiber* f = &rt.fibers[i];
    f->linear = i;
    f->idx = uint3{unsigned(i) % bd.x, (unsigned(i) / bd.x) % bd.y, unsigned(i) / (bd.x * bd.y)};
    f->state = kRunnable;
    f->wop = -1;
    fiber_init(f, rt.stacks[i]);
  }
  rt.ndone = rt.nbarrier = 0;
  for (int& a : rt.warp_arrived) a = 0;
  const int nwarps = (n + 31) / 32;
  while (rt.ndone < n) {
    // Each warp runs until all its lanes wait in __syncthreads or exit
    // (warp primitives resolve as its lanes arrive) before the next warp
    // starts, so a warp runs as far ahead of the others as a barrier allows.
    bool ran = false;
    for (int wk = 0; wk < nwarps; wk++) {
      const int w = rt.reverse ? nwarps - 1 - wk : wk;
      const int lo = w * 32, hi = lo + 32 < n ? lo + 32 : n;
      for (bool progress = true; progress;) {
        progress = false;
        for (int k = lo; k < hi; k++) {
          Fiber* f = &rt.fibers[rt.reverse ? lo + hi - 1 - k : k];
          if (f->state != kRunnable) continue;
          ran = progress = true;
          to_fiber(f);
          if (rt.abort) return false;
        }
      }
    }
    if (rt.nbarrier > 0 && rt.nbarrier + rt.ndone == n) {
      int line = -1;
      for (Fiber& f : rt.fibers) {
        if (&f - rt.fibers.data() >= n || f.state != kBarrier) continue;
        if (line >= 0 && f.line != line) {
          rt.cur = &f;
          rt.error = "divergent __syncthreads: threads wait at lines " + std::to_string(line) + " and " +
                     std::to_string(f.line) + where();
          return false;
        }
        line = f.line;
        f.state = kRunnable;
      }
      rt.nbarrier = 0;
    } else if (!ran) {
      int nwarp = 0;
      for (int i = 0; i < n; i++) nwarp += rt.fibers[i].state == kWarp;
      rt.cur = nullptr;
      rt.error = "deadlock: " + std::to_string(nwarp) + " threads wait in warp primitives whose lanes exited or wait in __syncthreads, " +
                 std::to_string(rt.nbarrier) + " in __syncthreads, " + std::to_string(rt.ndone) + " exited" + where();
      return false;
    }
  }
  return true;
}

// launch runs body(arg) as every thread of every block of the grid. The
// caller holds the lock that serialises launches.
inline bool launch(void (*body)(void*), void* arg, dim3 grid, dim3 block, bool reverse, std::string* err) {
  const long long n = (long long)block.x * block.y * block.z;
  if (block.x == 0 || block.y == 0 || block.z == 0 || n > kMaxThreads || block.z > 64) {
    *err = "invalid block shape";
    return false;
  }
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > 0x7fffffffu || grid.y > 65535 || grid.z > 65535) {
    *err = "invalid grid shape";
    return false;
  }
  if (!ensure_stacks(int(n))) {
    *err = "cannot map fiber stacks";
    return false;
  }
  rt.grid_dim = grid;
  rt.block_dim = block;
  rt.nthreads = int(n);
  rt.fibers.resize(n);
  rt.warp_arrived.assign((n + 31) / 32, 0);
  rt.body = body;
  rt.body_arg = arg;
  rt.reverse = reverse;
  rt.abort = false;
  rt.error.clear();
  for (unsigned z = 0; z < grid.z; z++) {
    for (unsigned y = 0; y < grid.y; y++) {
      for (unsigned x = 0; x < grid.x; x++) {
        rt.block_idx = uint3{x, y, z};
        if (!run_block()) {
          *err = rt.error;
          rt.cur = nullptr;
          return false;
        }
      }
    }
  }
  rt.cur = nullptr;
  return true;
}

}  // namespace emu

#define threadIdx (emu::rt.cur->idx)
#define blockIdx (emu::rt.block_idx)
#define blockDim (emu::rt.block_dim)
#define gridDim (emu::rt.grid_dim)
#define warpSize 32
#define __syncthreads() emu::syncthreads(__LINE__)

template <class T>
inline T __shfl_xor_sync(unsigned mask, T v, int laneMask, int width = 32) {
  return emu::shfl<T>(emu::kShflXor, mask, v, laneMask, width);
}
template <class T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  return emu::shfl<T>(emu::kShflDown, mask, v, int(delta), width);
}
template <class T>
inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  return emu::shfl<T>(emu::kShflUp, mask, v, int(delta), width);
}
template <class T>
inline T __shfl_sync(unsigned mask, T v, int srcLane, int width = 32) {
  return emu::shfl<T>(emu::kShflIdx, mask, v, srcLane, width);
}
inline void __syncwarp(unsigned mask = 0xffffffffu) { emu::warp_op(emu::kSyncWarp, mask, 0, 0, 32); }

// Device math the kernels use beyond <math.h>. The _rn intrinsics are plain
// operations: emu.cc turns floating-point contraction off, so nothing is
// fused, as the intrinsics guarantee on the GPU.
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fsqrt_rn(float a) { return sqrtf(a); }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __ddiv_rn(double a, double b) { return a / b; }
inline float __int_as_float(int i) {
  float f;
  memcpy(&f, &i, 4);
  return f;
}
inline int __float_as_int(float f) {
  int i;
  memcpy(&i, &f, 4);
  return i;
}
inline unsigned __umulhi(unsigned a, unsigned b) { return unsigned((uint64_t(a) * b) >> 32); }

#endif  // HJEPA_EMU_H
