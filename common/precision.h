// Precision: the dtype a worker group or server computes in, what the CPU it runs on can do, and
// how `--dtype auto` chooses between them.
//
//   fp32: frozen weights, residual stream and matmuls in fp32 (bit-exact promises hold; see
//         docs/user-guide.md "Reproducibility, exactly").
//   bf16: frozen weights stored once in bf16, the residual stream and matmuls in bf16; biases,
//         heads, gradients and AdamW in fp32 (the GPU path's numerics).
//   auto: bf16 on CUDA and on CPUs whose AMX-BF16 tiles the OS has enabled; fp32 elsewhere. With
//         AMX the bf16 step ran 2.2–2.4× the fp32 step; on an AVX512-BF16 CPU without AMX, bf16
//         matmuls run at 0.55–0.92× of fp32 and the step at 0.69–0.75× (measured,
//         docs/performance.md), so auto keeps fp32 there.
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
  std::string model;         // the brand string, e.g. "Intel(R) Xeon(R) Platinum 8481C"
  bool avx512f = false;
  bool avx512_bf16 = false;  // bf16 dot products in AVX-512 (vdpbf16ps)
  bool amx_bf16 = false;     // AMX tiles with bf16, enabled by the OS

  // "MODEL; avx512f avx512_bf16 amx_bf16" (the flags present), for logs, /v1/workers and benches.
  std::string summary() const;
};

CpuIsa detect_cpu_isa();  // cached after the first call

// The dtype for `requested` ("auto", "fp32" or "bf16") on this device; an unknown name is an
// invalid_argument naming `field`.
Result<Dtype> choose_dtype(std::string_view requested, bool cuda, const CpuIsa& isa,
                           const std::string& field = "dtype");

}  // namespace bitfleet::common
