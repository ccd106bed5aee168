// The C++ half of the host emulator: hjepa.cu compiled with emu.h, a launch
// registry built from HJEPA_KERNELS, and cublasSgemmStridedBatched as plain
// column-major loops.
//
// Nothing may be fused into FMAs (the _rn intrinsics promise that on the
// GPU, and the CPU backend rounds every operation): cgo does not accept
// -ffp-contract=off as a flag, hence the pragma.
#pragma GCC optimize("fp-contract=off")
#include "emu.h"
#include "hjepa.cu"
#include "selftest.h"

#include <mutex>
#include <type_traits>

#include "emu_api.h"

namespace {

// code is the argument letter of a kernel parameter type; emu.go writes the
// same letters for the Go values it marshals (see argCode there).
template <class T>
constexpr char code() {
  if constexpr (std::is_pointer_v<T>) return 'P';
  else if constexpr (std::is_same_v<T, int>) return 'i';
  else if constexpr (std::is_same_v<T, long long>) return 'l';
  else if constexpr (std::is_same_v<T, unsigned long long>) return 'u';
  else if constexpr (std::is_same_v<T, float>) return 'f';
  else if constexpr (std::is_same_v<T, double>) return 'd';
  else static_assert(sizeof(T) == 0, "kernel parameter type the Driver cannot pass");
}

struct Entry {
  const char* name;
  const char* codes;  // one letter per parameter
  void (*body)(void*);
};

// Call is what every thread of a launch runs: the kernel with its arguments
// unpacked from cuLaunchKernel-style slots.
struct Call {
  const void* fn;
  uint64_t* slots;
};

template <class... A, size_t... I>
void invoke(void (*fn)(A...), uint64_t* slots, std::index_sequence<I...>) {
  fn(*reinterpret_cast<std::remove_reference_t<A>*>(&slots[I])...);
}

template <class... A>
struct Kernel {
  static constexpr char codes[] = {code<A>()..., 0};
  static void body(void* p) {
    Call* c = static_cast<Call*>(p);
    invoke(reinterpret_cast<void (*)(A...)>(const_cast<void*>(c->fn)), c->slots, std::index_sequence_for<A...>{});
  }
};

template <class... A>
Entry entry(const char* name, void (*fn)(A...), const void** fnOut) {
  *fnOut = reinterpret_cast<const void*>(fn);
  return Entry{name, Kernel<A...>::codes, &Kernel<A...>::body};
}

struct Registered {
  Entry e;
  const void* fn;
};

std::vector<Registered> build() {
  std::vector<Registered> r;
#define HJEPA_REGISTER(k)           \
  {                                 \
    Registered x;                   \
    x.e = entry(#k, &k, &x.fn);     \
    r.push_back(x);                 \
  }
  HJEPA_KERNELS(HJEPA_REGISTER)
  EMU_SELFTEST_KERNELS(HJEPA_REGISTER)
#undef HJEPA_REGISTER
  return r;
}

const std::vector<Registered>& registry() {
  static const std::vector<Registered> r = build();
  return r;
}

std::mutex launch_mu;  // static shared memory and the fiber runtime are global

void set_err(char* err, int errlen, const std::string& msg) {
  if (errlen <= 0) return;
  snprintf(err, size_t(errlen), "%s", msg.c_str());
}

}  // namespace

extern "C" int hjepa_emu_kernel_count() { return int(registry().size()); }

extern "C" const char* hjepa_emu_kernel_name(int i) { return registry()[size_t(i)].e.name; }

extern "C" int hjepa_emu_launch(const char* name, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                                unsigned bz, int shared, int nargs, const char* codes, uint64_t* slots, int reverse,
                                char* err, int errlen) {
  const Registered* k = nullptr;
  for (const Registered& r : registry()) {
    if (strcmp(r.e.name, name) == 0) {
      k = &r;
      break;
    }
  }
  if (!k) {
    set_err(err, errlen, std::string("no kernel named ") + name);
    return 1;
  }
  int want = int(strlen(k->e.codes));
  if (nargs != want) {
    set_err(err, errlen, std::string(name) + ": " + std::to_string(nargs) + " arguments, kernel takes " +
                             std::to_string(want) + " (" + k->e.codes + ")");
    return 1;
  }
  for (int i = 0; i < nargs; i++) {
    if (codes[i] != k->e.codes[i]) {
      set_err(err, errlen, std::string(name) + ": argument " + std::to_string(i) + " has type '" + codes[i] +
                               "', kernel wants '" + k->e.codes[i] + "' (signature " + k->e.codes + ")");
      return 1;
    }
  }
  if (shared != 0) {
    set_err(err, errlen, std::string(name) + ": dynamic shared memory is not supported by the emulator");
    return 1;
  }
  std::lock_guard<std::mutex> lock(launch_mu);
  Call c{k->fn, slots};
  std::string msg;
  if (!emu::launch(k->e.body, &c, dim3(gx, gy, gz), dim3(bx, by, bz), reverse != 0, &msg)) {
    set_err(err, errlen, std::string(name) + ": " + msg);
    return 1;
  }
  return 0;
}

extern "C" uintptr_t hjepa_emu_alloc(long long bytes, long long align) {
  return reinterpret_cast<uintptr_t>(aligned_alloc(size_t(align), size_t(bytes)));
}

extern "C" void hjepa_emu_free(uintptr_t p) { free(reinterpret_cast<void*>(p)); }

extern "C" void hjepa_emu_memset32(uintptr_t p, uint32_t v, long long n) {
  uint32_t* d = reinterpret_cast<uint32_t*>(p);
  for (long long i = 0; i < n; i++) d[i] = v;
}

extern "C" void hjepa_emu_copy(uintptr_t dst, uintptr_t src, long long bytes) {
  memmove(reinterpret_cast<void*>(dst), reinterpret_cast<const void*>(src), size_t(bytes));
}

extern "C" void hjepa_emu_copy_to_host(void* dst, uintptr_t src, long long bytes) {
  memcpy(dst, reinterpret_cast<const void*>(src), size_t(bytes));
}

extern "C" void hjepa_emu_copy_from_host(uintptr_t dst, const void* src, long long bytes) {
  memcpy(reinterpret_cast<void*>(dst), src, size_t(bytes));
}

// hjepa_emu_sgemm is cublasSgemmStridedBatched: column-major
// C_b = alpha*op(A_b) op(B_b) + beta*C_b, with C not read when beta == 0.
extern "C" void hjepa_emu_sgemm(int transA, int transB, int m, int n, int k, float alpha, uintptr_t a, int lda,
                                long long strideA, uintptr_t b, int ldb, long long strideB, float beta, uintptr_t c,
                                int ldc, long long strideC, int batch) {
  for (int bt = 0; bt < batch; bt++) {
    const float* A = reinterpret_cast<const float*>(a) + bt * strideA;
    const float* B = reinterpret_cast<const float*>(b) + bt * strideB;
    float* C = reinterpret_cast<float*>(c) + bt * strideC;
    for (int j = 0; j < n; j++) {
      for (int i = 0; i < m; i++) {
        float s = 0;
        for (int p = 0; p < k; p++) {
          float x = transA ? A[p + (long long)i * lda] : A[i + (long long)p * lda];
          float y = transB ? B[j + (long long)p * ldb] : B[p + (long long)j * ldb];
          s += x * y;
        }
        float* cij = &C[i + (long long)j * ldc];
        *cij = beta == 0.0f ? alpha * s : alpha * s + beta * *cij;
      }
    }
  }
}
