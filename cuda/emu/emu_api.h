// The C interface of emu.cc, for cgo.
#ifndef HJEPA_EMU_API_H
#define HJEPA_EMU_API_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

int hjepa_emu_kernel_count(void);
const char* hjepa_emu_kernel_name(int i);
// hjepa_emu_launch runs a kernel to completion. codes has one letter per
// argument (P pointer, i int32, l int64, u uint64, f float32, d float64) and
// slots one 8-byte slot per argument. It returns 0, or 1 with a message in err.
int hjepa_emu_launch(const char* name, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                     int shared, int nargs, const char* codes, uint64_t* slots, int reverse, char* err, int errlen);
uintptr_t hjepa_emu_alloc(long long bytes, long long align);
void hjepa_emu_free(uintptr_t p);
void hjepa_emu_memset32(uintptr_t p, uint32_t v, long long n);
void hjepa_emu_copy(uintptr_t dst, uintptr_t src, long long bytes);
void hjepa_emu_copy_to_host(void* dst, uintptr_t src, long long bytes);
void hjepa_emu_copy_from_host(uintptr_t dst, const void* src, long long bytes);
void hjepa_emu_sgemm(int transA, int transB, int m, int n, int k, float alpha, uintptr_t a, int lda, long long strideA,
                     uintptr_t b, int ldb, long long strideB, float beta, uintptr_t c, int ldc, long long strideC,
                     int batch);

#ifdef __cplusplus
}
#endif

#endif
