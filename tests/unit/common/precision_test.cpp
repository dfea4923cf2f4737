#include "common/precision.h"

#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

namespace bitfleet::common {
namespace {

// --dtype auto: bf16 where the hardware makes it fast (a GPU, AMX tiles, AMD's AVX512-BF16), fp32
// elsewhere — an Intel AVX512-BF16 CPU without AMX runs bf16 matmuls slower than fp32
// (docs/performance.md).
TEST(PrecisionTest, AutoChoosesBf16WhereBf16MatmulsAreMeasuredFaster) {
  CpuIsa plain, intel_avx512_bf16, amd_avx512_bf16, amd_avx512, amx;
  intel_avx512_bf16.vendor = amx.vendor = "GenuineIntel";
  amd_avx512_bf16.vendor = amd_avx512.vendor = plain.vendor = "AuthenticAMD";
  intel_avx512_bf16.avx512f = intel_avx512_bf16.avx512_bf16 = true;
  amd_avx512_bf16.avx512f = amd_avx512_bf16.avx512_bf16 = true;
  amd_avx512.avx512f = true;
  amx.avx512f = amx.avx512_bf16 = amx.amx_bf16 = true;
  EXPECT_EQ(*choose_dtype("auto", false, plain), Dtype::kFp32);
  EXPECT_EQ(*choose_dtype("auto", false, intel_avx512_bf16), Dtype::kFp32);
  EXPECT_EQ(*choose_dtype("auto", false, amd_avx512), Dtype::kFp32);
  EXPECT_EQ(*choose_dtype("auto", false, amd_avx512_bf16), Dtype::kBf16);
  EXPECT_EQ(*choose_dtype("auto", false, amx), Dtype::kBf16);
  EXPECT_EQ(*choose_dtype("auto", true, plain), Dtype::kBf16);
  // An explicit choice is taken as given, whatever the hardware.
  EXPECT_EQ(*choose_dtype("fp32", true, amx), Dtype::kFp32);
  EXPECT_EQ(*choose_dtype("bf16", false, plain), Dtype::kBf16);
}

TEST(PrecisionTest, UnknownNamesAreRejectedNamingTheField) {
  for (const char* bad : {"", "fp16", "BF16", "float32", "auto "}) {
    auto r = choose_dtype(bad, false, {}, "--dtype");
    ASSERT_FALSE(r.is_ok()) << bad;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(r.status().field(), "--dtype");
    EXPECT_NE(r.status().message().find("auto, fp32 or bf16"), std::string::npos) << r.status().message();
  }
  EXPECT_EQ(parse_dtype("bf16"), Dtype::kBf16);
  EXPECT_EQ(dtype_name(Dtype::kFp32), "fp32");
  EXPECT_FALSE(parse_dtype("any").has_value()) << "any is a job's wildcard, not a dtype";
}

std::string squeezed(const std::string& text) {  // runs of blanks as one, none at the ends
  std::istringstream words(text);
  std::string out;
  for (std::string w; words >> w;) out += (out.empty() ? "" : " ") + w;
  return out;
}

// What CPUID and XCR0 say agrees with the kernel's own reading (/proc/cpuinfo), on whatever CPU
// this runs: the flags that decide --dtype auto are the ones the OS reports.
TEST(PrecisionTest, DetectedIsaMatchesTheKernelsCpuFlags) {
  std::ifstream in("/proc/cpuinfo");
  if (!in) GTEST_SKIP() << "no /proc/cpuinfo";
  std::set<std::string> flags;
  std::string model, vendor;
  for (std::string line; std::getline(in, line);) {
    if (model.empty() && line.rfind("model name", 0) == 0) model = line.substr(line.find(':') + 2);
    if (vendor.empty() && line.rfind("vendor_id", 0) == 0) vendor = squeezed(line.substr(line.find(':') + 1));
    if (line.rfind("flags", 0) != 0) continue;
    std::istringstream words(line.substr(line.find(':') + 1));
    for (std::string w; words >> w;) flags.insert(w);
    break;  // the first processor's
  }
  if (flags.empty()) GTEST_SKIP() << "no flags line in /proc/cpuinfo (not x86)";
  const CpuIsa isa = detect_cpu_isa();
  EXPECT_EQ(isa.avx512f, flags.count("avx512f") == 1);
  EXPECT_EQ(isa.avx512_bf16, flags.count("avx512_bf16") == 1);
  EXPECT_EQ(isa.amx_bf16, flags.count("amx_bf16") == 1 && flags.count("amx_tile") == 1);
  EXPECT_EQ(squeezed(isa.model), squeezed(model));
  EXPECT_EQ(isa.vendor, vendor);
  EXPECT_EQ(isa.summary().rfind(isa.model + ";", 0), 0u) << isa.summary();
}

}  // namespace
}  // namespace bitfleet::common
