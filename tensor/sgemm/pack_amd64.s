//go:build amd64 && !purego

#include "textflag.h"

// TRANSPOSE4_STORE(off, col) transposes the 4x4 block of floats in X0..X3
// (one row each; X4..X7 scratch) and stores its columns at off(DI),
// off+col(DI), off+2*col(DI) and off+3*col(DI): rows 4g..4g+3 of four
// consecutive packed columns, col bytes apart (48 in 12-row panels, 24 in
// 6-row ones). unpcklps/unpckhps interleave row pairs (r0c0 r1c0 r0c1
// r1c1, ...), then unpcklpd/unpckhpd join the pairs' halves into whole
// columns.
#define TRANSPOSE4_STORE(off, col) \
	VUNPCKLPS X1, X0, X4 \
	VUNPCKLPS X3, X2, X5 \
	VUNPCKHPS X1, X0, X6 \
	VUNPCKHPS X3, X2, X7 \
	VUNPCKLPD X5, X4, X0 \
	VUNPCKHPD X5, X4, X1 \
	VUNPCKLPD X7, X6, X2 \
	VUNPCKHPD X7, X6, X3 \
	VMOVUPS X0, off(DI) \
	VMOVUPS X1, off+col(DI) \
	VMOVUPS X2, off+2*col(DI) \
	VMOVUPS X3, off+3*col(DI)

// func packA12Asm(kc int, src *float32, lda int, dst *float32)
// dst[p*12+r] = src[r*lda+p] for r < 12, p < kc.
//
// Four columns at a time: each group of four rows is loaded as four 4-float
// vectors and transposed in registers (unpck ps then pd), so a step moves 12
// vectors instead of 48 scalars; the last kc%4 columns go one at a time.
TEXT ·packA12Asm(SB), NOSPLIT, $0-32
	MOVQ kc+0(FP), CX
	MOVQ src+8(FP), SI
	MOVQ lda+16(FP), R8
	MOVQ dst+24(FP), DI
	SHLQ $2, R8
	LEAQ (SI)(R8*2), R10
	ADDQ R8, R10          // row 3
	LEAQ (R10)(R8*2), R11
	ADDQ R8, R11          // row 6
	LEAQ (R11)(R8*2), R12
	ADDQ R8, R12          // row 9
	CMPQ CX, $4
	JLT tail
quad:
	VMOVUPS (SI), X0
	VMOVUPS (SI)(R8*1), X1
	VMOVUPS (SI)(R8*2), X2
	VMOVUPS (R10), X3
	TRANSPOSE4_STORE(0, 48)
	VMOVUPS (R10)(R8*1), X0
	VMOVUPS (R10)(R8*2), X1
	VMOVUPS (R11), X2
	VMOVUPS (R11)(R8*1), X3
	TRANSPOSE4_STORE(16, 48)
	VMOVUPS (R11)(R8*2), X0
	VMOVUPS (R12), X1
	VMOVUPS (R12)(R8*1), X2
	VMOVUPS (R12)(R8*2), X3
	TRANSPOSE4_STORE(32, 48)
	ADDQ $16, SI
	ADDQ $16, R10
	ADDQ $16, R11
	ADDQ $16, R12
	ADDQ $192, DI
	SUBQ $4, CX
	CMPQ CX, $4
	JGE quad
	VZEROUPPER
tail:
	TESTQ CX, CX
	JZ done
loop:
	MOVL (SI), AX
	MOVL (SI)(R8*1), BX
	MOVL (SI)(R8*2), DX
	MOVL AX, (DI)
	MOVL BX, 4(DI)
	MOVL DX, 8(DI)
	MOVL (R10), AX
	MOVL (R10)(R8*1), BX
	MOVL (R10)(R8*2), DX
	MOVL AX, 12(DI)
	MOVL BX, 16(DI)
	MOVL DX, 20(DI)
	MOVL (R11), AX
	MOVL (R11)(R8*1), BX
	MOVL (R11)(R8*2), DX
	MOVL AX, 24(DI)
	MOVL BX, 28(DI)
	MOVL DX, 32(DI)
	MOVL (R12), AX
	MOVL (R12)(R8*1), BX
	MOVL (R12)(R8*2), DX
	MOVL AX, 36(DI)
	MOVL BX, 40(DI)
	MOVL DX, 44(DI)
	ADDQ $4, SI
	ADDQ $4, R10
	ADDQ $4, R11
	ADDQ $4, R12
	ADDQ $48, DI
	DECQ CX
	JNZ loop
done:
	RET

// func packB32Asm(kc int, src *float32, ldb int, dst *float32)
// dst[p*32+j] = src[p*ldb+j] for j < 32, p < kc.
TEXT ·packB32Asm(SB), NOSPLIT, $0-32
	MOVQ kc+0(FP), CX
	MOVQ src+8(FP), SI
	MOVQ ldb+16(FP), R8
	MOVQ dst+24(FP), DI
	SHLQ $2, R8
	TESTQ CX, CX
	JZ done
loop:
	VMOVUPS (SI), Y0
	VMOVUPS 32(SI), Y1
	VMOVUPS 64(SI), Y2
	VMOVUPS 96(SI), Y3
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	VMOVUPS Y2, 64(DI)
	VMOVUPS Y3, 96(DI)
	ADDQ R8, SI
	ADDQ $128, DI
	DECQ CX
	JNZ loop
	VZEROUPPER
done:
	RET

// func packB16Asm(kc int, src *float32, ldb int, dst *float32)
// dst[p*16+j] = src[p*ldb+j] for j < 16, p < kc.
TEXT ·packB16Asm(SB), NOSPLIT, $0-32
	MOVQ kc+0(FP), CX
	MOVQ src+8(FP), SI
	MOVQ ldb+16(FP), R8
	MOVQ dst+24(FP), DI
	SHLQ $2, R8
	TESTQ CX, CX
	JZ done
loop:
	VMOVUPS (SI), Y0
	VMOVUPS 32(SI), Y1
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	ADDQ R8, SI
	ADDQ $64, DI
	DECQ CX
	JNZ loop
	VZEROUPPER
done:
	RET

// func packAT12Asm(kc int, src *float32, lda int, dst *float32)
// dst[p*12+r] = src[p*lda+r] for r < 12, p < kc: a panel of transposed A,
// whose columns are contiguous runs of 12 floats lda apart.
TEXT ·packAT12Asm(SB), NOSPLIT, $0-32
	MOVQ kc+0(FP), CX
	MOVQ src+8(FP), SI
	MOVQ lda+16(FP), R8
	MOVQ dst+24(FP), DI
	SHLQ $2, R8
	TESTQ CX, CX
	JZ done
loop:
	VMOVUPS (SI), Y0
	VMOVUPS 32(SI), X1
	VMOVUPS Y0, (DI)
	VMOVUPS X1, 32(DI)
	ADDQ R8, SI
	ADDQ $48, DI
	DECQ CX
	JNZ loop
	VZEROUPPER
done:
	RET

// func packA6Asm(kc int, src *float32, lda int, dst *float32)
// dst[p*6+r] = src[r*lda+p] for r < 6, p < kc.
//
// Four columns at a time: rows 0-3 as a 4x4 transpose (TRANSPOSE4_STORE),
// rows 4-5 interleaved in pairs (unpcklps/unpckhps) and stored 8 bytes per
// column; the last kc%4 columns one at a time.
TEXT ·packA6Asm(SB), NOSPLIT, $0-32
	MOVQ kc+0(FP), CX
	MOVQ src+8(FP), SI
	MOVQ lda+16(FP), R8
	MOVQ dst+24(FP), DI
	SHLQ $2, R8
	LEAQ (SI)(R8*2), R10
	ADDQ R8, R10          // row 3
	LEAQ (R10)(R8*1), R11 // row 4
	CMPQ CX, $4
	JLT tail6
quad6:
	VMOVUPS (SI), X0
	VMOVUPS (SI)(R8*1), X1
	VMOVUPS (SI)(R8*2), X2
	VMOVUPS (R10), X3
	TRANSPOSE4_STORE(0, 24)
	VMOVUPS (R11), X0
	VMOVUPS (R11)(R8*1), X1
	VUNPCKLPS X1, X0, X4 // r4c0 r5c0 r4c1 r5c1
	VUNPCKHPS X1, X0, X5 // r4c2 r5c2 r4c3 r5c3
	VMOVLPS X4, 16(DI)
	VMOVHPS X4, 40(DI)
	VMOVLPS X5, 64(DI)
	VMOVHPS X5, 88(DI)
	ADDQ $16, SI
	ADDQ $16, R10
	ADDQ $16, R11
	ADDQ $96, DI
	SUBQ $4, CX
	CMPQ CX, $4
	JGE quad6
	VZEROUPPER
tail6:
	TESTQ CX, CX
	JZ done6
loop6:
	MOVL (SI), AX
	MOVL (SI)(R8*1), BX
	MOVL (SI)(R8*2), DX
	MOVL AX, (DI)
	MOVL BX, 4(DI)
	MOVL DX, 8(DI)
	MOVL (R10), AX
	MOVL (R11), BX
	MOVL (R11)(R8*1), DX
	MOVL AX, 12(DI)
	MOVL BX, 16(DI)
	MOVL DX, 20(DI)
	ADDQ $4, SI
	ADDQ $4, R10
	ADDQ $4, R11
	ADDQ $24, DI
	DECQ CX
	JNZ loop6
done6:
	RET

// func packAT6Asm(kc int, src *float32, lda int, dst *float32)
// dst[p*6+r] = src[p*lda+r] for r < 6, p < kc: six contiguous floats per
// column of a transposed A (a copy() per column would call memmove).
TEXT ·packAT6Asm(SB), NOSPLIT, $0-32
	MOVQ kc+0(FP), CX
	MOVQ src+8(FP), SI
	MOVQ lda+16(FP), R8
	MOVQ dst+24(FP), DI
	SHLQ $2, R8
	TESTQ CX, CX
	JZ doneT6
loopT6:
	VMOVUPS (SI), X0
	MOVQ 16(SI), AX
	VMOVUPS X0, (DI)
	MOVQ AX, 16(DI)
	ADDQ R8, SI
	ADDQ $24, DI
	DECQ CX
	JNZ loopT6
doneT6:
	RET

// func packBT8Asm(kc8 int, src *float32, ldb int, dst *float32, nr int)
// Transposes kc8 blocks of 8 x 8: dst[p*nr+r] = src[r*ldb+p] for r < 8 and
// p < 8*kc8, i.e. 8 rows of a transposed B (8 columns of op(B)) into 8
// columns of an nr-wide packed panel. Each block: 8 row loads, the usual
// unpack/shuffle/permute transpose, 8 stores nr floats apart.
TEXT ·packBT8Asm(SB), NOSPLIT, $0-40
	MOVQ kc8+0(FP), CX
	MOVQ src+8(FP), SI
	MOVQ ldb+16(FP), R8
	MOVQ dst+24(FP), DI
	MOVQ nr+32(FP), R11
	SHLQ $2, R8
	SHLQ $2, R11
	LEAQ (R8)(R8*2), R9   // 3 rows of src
	LEAQ (SI)(R8*4), R10  // src row 4
	LEAQ (R11)(R11*2), R12 // 3 rows of dst
	LEAQ (DI)(R11*4), R13 // dst row 4
	MOVQ R11, R14
	SHLQ $3, R14          // 8 rows of dst
	TESTQ CX, CX
	JZ doneBT8
loopBT8:
	VMOVUPS (SI), Y0
	VMOVUPS (SI)(R8*1), Y1
	VMOVUPS (SI)(R8*2), Y2
	VMOVUPS (SI)(R9*1), Y3
	VMOVUPS (R10), Y4
	VMOVUPS (R10)(R8*1), Y5
	VMOVUPS (R10)(R8*2), Y6
	VMOVUPS (R10)(R9*1), Y7
	VUNPCKLPS Y1, Y0, Y8
	VUNPCKHPS Y1, Y0, Y9
	VUNPCKLPS Y3, Y2, Y10
	VUNPCKHPS Y3, Y2, Y11
	VUNPCKLPS Y5, Y4, Y12
	VUNPCKHPS Y5, Y4, Y13
	VUNPCKLPS Y7, Y6, Y14
	VUNPCKHPS Y7, Y6, Y15
	VSHUFPS $0x44, Y10, Y8, Y0
	VSHUFPS $0xEE, Y10, Y8, Y1
	VSHUFPS $0x44, Y11, Y9, Y2
	VSHUFPS $0xEE, Y11, Y9, Y3
	VSHUFPS $0x44, Y14, Y12, Y4
	VSHUFPS $0xEE, Y14, Y12, Y5
	VSHUFPS $0x44, Y15, Y13, Y6
	VSHUFPS $0xEE, Y15, Y13, Y7
	VPERM2F128 $0x20, Y4, Y0, Y8
	VPERM2F128 $0x20, Y5, Y1, Y9
	VPERM2F128 $0x20, Y6, Y2, Y10
	VPERM2F128 $0x20, Y7, Y3, Y11
	VPERM2F128 $0x31, Y4, Y0, Y12
	VPERM2F128 $0x31, Y5, Y1, Y13
	VPERM2F128 $0x31, Y6, Y2, Y14
	VPERM2F128 $0x31, Y7, Y3, Y15
	VMOVUPS Y8, (DI)
	VMOVUPS Y9, (DI)(R11*1)
	VMOVUPS Y10, (DI)(R11*2)
	VMOVUPS Y11, (DI)(R12*1)
	VMOVUPS Y12, (R13)
	VMOVUPS Y13, (R13)(R11*1)
	VMOVUPS Y14, (R13)(R11*2)
	VMOVUPS Y15, (R13)(R12*1)
	ADDQ $32, SI
	ADDQ $32, R10
	ADDQ R14, DI
	ADDQ R14, R13
	DECQ CX
	JNZ loopBT8
	VZEROUPPER
doneBT8:
	RET
