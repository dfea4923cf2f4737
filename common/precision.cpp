#include "common/precision.h"

#include <cstdint>
#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace bitfleet::common {

std::string_view dtype_name(Dtype dtype) { return dtype == Dtype::kBf16 ? "bf16" : "fp32"; }

std::optional<Dtype> parse_dtype(std::string_view name) {
  if (name == "fp32") return Dtype::kFp32;
  if (name == "bf16") return Dtype::kBf16;
  return std::nullopt;
}

std::string CpuIsa::summary() const {
  std::string out = model.empty() ? "unknown CPU" : model;
  std::string flags;
  if (avx512f) flags += " avx512f";
  if (avx512_bf16) flags += " avx512_bf16";
  if (amx_bf16) flags += " amx_bf16";
  return out + ";" + (flags.empty() ? " no avx512" : flags);
}

bool CpuIsa::bf16_matmuls_faster() const { return amx_bf16 || (avx512_bf16 && vendor == "AuthenticAMD"); }

namespace {

CpuIsa read_cpu_isa() {
  CpuIsa isa;
#if defined(__x86_64__) || defined(__i386__)
  unsigned a = 0, b = 0, c = 0, d = 0;
  __cpuid(0, a, b, c, d);  // the vendor string is EBX, EDX, ECX
  char vendor[13] = {};
  std::memcpy(vendor, &b, 4);
  std::memcpy(vendor + 4, &d, 4);
  std::memcpy(vendor + 8, &c, 4);
  isa.vendor = vendor;
  if (__get_cpuid_max(0x80000000, nullptr) >= 0x80000004) {
    char brand[49] = {};
    for (unsigned leaf = 0; leaf < 3; ++leaf) {
      __cpuid(0x80000002 + leaf, a, b, c, d);
      std::memcpy(brand + 16 * leaf, &a, 4);
      std::memcpy(brand + 16 * leaf + 4, &b, 4);
      std::memcpy(brand + 16 * leaf + 8, &c, 4);
      std::memcpy(brand + 16 * leaf + 12, &d, 4);
    }
    isa.model = brand;
    while (!isa.model.empty() && isa.model.back() == ' ') isa.model.pop_back();
    while (!isa.model.empty() && isa.model.front() == ' ') isa.model.erase(0, 1);
  }
  if (__get_cpuid_max(0, nullptr) < 7) return isa;
  __cpuid(1, a, b, c, d);
  const bool osxsave = (c >> 27) & 1;
  uint64_t xcr0 = 0;
  if (osxsave) {
    uint32_t lo = 0, hi = 0;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    xcr0 = (static_cast<uint64_t>(hi) << 32) | lo;
  }
  // The OS saves the AVX-512 state (opmask, ZMM halves: XCR0 bits 5–7) and the AMX tile state
  // (XTILECFG, XTILEDATA: bits 17–18); Linux grants the latter per process on first request, which
  // oneDNN makes.
  const bool os_avx512 = (xcr0 & 0xe6) == 0xe6, os_amx = ((xcr0 >> 17) & 3) == 3;
  __cpuid_count(7, 0, a, b, c, d);
  const unsigned max_sub = a;
  isa.avx512f = os_avx512 && ((b >> 16) & 1);
  isa.amx_bf16 = os_amx && ((d >> 22) & 1) && ((d >> 24) & 1);  // AMX-BF16 and AMX-TILE
  if (max_sub >= 1) {
    __cpuid_count(7, 1, a, b, c, d);
    isa.avx512_bf16 = isa.avx512f && ((a >> 5) & 1);
  }
#endif
  return isa;
}

}  // namespace

CpuIsa detect_cpu_isa() {
  static const CpuIsa isa = read_cpu_isa();
  return isa;
}

Result<Dtype> choose_dtype(std::string_view requested, bool cuda, const CpuIsa& isa, const std::string& field) {
  if (requested == "auto") return cuda || isa.bf16_matmuls_faster() ? Dtype::kBf16 : Dtype::kFp32;
  if (auto d = parse_dtype(requested)) return *d;
  return invalid_argument(field + " must be auto, fp32 or bf16, got \"" + std::string(requested) + "\"", field);
}

}  // namespace bitfleet::common
