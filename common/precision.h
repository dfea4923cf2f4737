// Precision: the dtype a worker group or server computes in, what the CPU it runs on can do, and
// how `--dtype auto` chooses between them.
//
//   fp32: frozen weights, residual stream and matmuls in fp32 (bit-exact promises hold; see
//         docs/user-guide.md "Reproducibility, exactly").
//   bf16: frozen weights stored once in bf16, the residual stream and matmuls in bf16; biases,
//         heads, gradients and AdamW in fp32 (the GPU path's numerics).
//   auto: bf16 on CUDA and on CPUs whose bf16 matmuls are measured faster than fp32
//         (CpuIsa::bf16_matmuls_faster); fp32 elsewhere.
// No LibTorch here: the coordinator, the CLI and job validation use the names.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"

namespace bitfleet::common {

enum class Dtype { kFp32, kBf16 };

std::string_view dtype_name(Dtype dtype);           // "fp32" | "bf16"
std::optional<Dtype> parse_dtype(std::string_view name);  // "fp32" | "bf16"

// What the CPU reports (CPUID, and XCR0 for the state the OS has enabled). x86-64 only; elsewhere
// every flag is false and `model` is empty.
struct CpuIsa {
  std::string vendor;        // CPUID's vendor: "GenuineIntel", "AuthenticAMD", ...
  std::string model;         // the brand string, e.g. "Intel(R) Xeon(R) Platinum 8481C"
  bool avx512f = false;
  bool avx512_bf16 = false;  // bf16 dot products in AVX-512 (vdpbf16ps)
  bool amx_bf16 = false;     // AMX tiles with bf16, enabled by the OS

  // "MODEL; avx512f avx512_bf16 amx_bf16" (the flags present), for logs, /v1/workers and benches.
  std::string summary() const;

  // Whether LibTorch's bf16 matmuls (oneDNN) run faster than its fp32 ones (MKL) on this CPU, by
  // what was measured (docs/performance.md, "bf16 on the CPU"; 2 threads, torch 2.11):
  //   - AMX-BF16, any vendor: bf16 4.6–5.4× fp32, the step 2.2–2.4× (Intel Xeon, 2026-12-03);
  //   - AVX512-BF16 on AMD (Zen 4 and later; Zen 4 measured): bf16 2.4–4.0× fp32, the step
  //     1.75–1.92×, 2.4–2.5× with the block attention kernel (AMD EPYC, family 25 model 17,
  //     2026-12-04) — Zen 4's fp32 FMAs run 256 bits wide and MKL's fp32 takes its AVX2 path
  //     there, while vdpbf16ps does twice the work;
  //   - AVX512-BF16 on Intel without AMX: bf16 0.55–0.92× fp32, the step 0.69–0.75× (Intel Xeon,
  //     2026-12-03) — its two 512-bit FMA ports match vdpbf16ps's throughput, so bf16 loses.
  bool bf16_matmuls_faster() const;
};

CpuIsa detect_cpu_isa();  // cached after the first call

// The dtype for `requested` ("auto", "fp32" or "bf16") on this device; an unknown name is an
// invalid_argument naming `field`.
Result<Dtype> choose_dtype(std::string_view requested, bool cuda, const CpuIsa& isa,
                           const std::string& field = "dtype");

}  // namespace bitfleet::common
