// Package kernels holds the CUDA backend's device code: hjepa.cu, its PTX
// (compiled by `make ptx` with nvcc for compute_80 and committed, like
// generated protobuf code, because CI and users have no nvcc) and emu.h, the
// header that lets g++ compile hjepa.cu for the host emulator (cuda/emu).
package kernels

import _ "embed"

// PTX is hjepa.ptx, loaded by the CUDA driver, which JIT-compiles it for the
// GPU at hand. Its first line is "// source-sha256: <hex>", the SHA-256 of
// the hjepa.cu it was generated from; a test fails when they differ.
//
//go:embed hjepa.ptx
var PTX string

// Source and EmuHeader are hjepa.cu and emu.h. cuda/emu compiles both as
// C++ from this directory, which the go command does not hash for that
// package; it refers to these copies so that the build cache rebuilds the
// emulator whenever the kernels change.
//
//go:embed hjepa.cu
var Source string

//go:embed emu.h
var EmuHeader string

// Names lists every kernel in hjepa.cu (its HJEPA_KERNELS list), each an
// .entry of PTX. The tests check both, and that every kernel the backend
// launches is listed here.
var Names = []string{
	"hjepa_scale", "hjepa_axpy", "hjepa_add", "hjepa_ema", "hjepa_adamw", "hjepa_add_row_vector",
	"hjepa_bias_add", "hjepa_gemm_k0", "hjepa_colsum_partial", "hjepa_colsum_finish",
	"hjepa_patchify", "hjepa_ln_fwd", "hjepa_ln_bwd_dx", "hjepa_ln_bwd_dwdb_partial",
	"hjepa_gelu_fwd", "hjepa_gelu_bwd", "hjepa_gather", "hjepa_scatter_add",
	"hjepa_sum_partial", "hjepa_smooth_l1", "hjepa_mse",
	"hjepa_rand_uniform", "hjepa_rand_normal", "hjepa_trunc_normal",
	"hjepa_attn_fwd_d16", "hjepa_attn_fwd_d32", "hjepa_attn_fwd_d64", "hjepa_attn_fwd_d128",
	"hjepa_attn_bwd_delta",
	"hjepa_attn_bwd_dq_d16", "hjepa_attn_bwd_dq_d32", "hjepa_attn_bwd_dq_d64", "hjepa_attn_bwd_dq_d128",
	"hjepa_attn_bwd_dkv_d16", "hjepa_attn_bwd_dkv_d32", "hjepa_attn_bwd_dkv_d64", "hjepa_attn_bwd_dkv_d128",
}
