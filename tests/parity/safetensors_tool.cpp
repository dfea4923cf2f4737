// Test tool for tests/parity/test_safetensors.py.
//   safetensors_tool dump FILE    prints {"metadata": {...}, "tensors": [{name, dtype, shape, hex}]}
//   safetensors_tool write FILE   writes the fixed tensors the Python test expects
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/safetensors.h"

using namespace bitfleet;

namespace {

int dump(const std::string& path) {
  auto file = safetensors::File::open(path);
  if (!file.is_ok()) {
    std::cerr << file.status().to_string() << "\n";
    return 1;
  }
  nlohmann::json out = {{"metadata", file->metadata()}, {"tensors", nlohmann::json::array()}};
  static const char* kHex = "0123456789abcdef";
  for (const auto& t : file->tensors()) {
    std::string hex;
    for (std::byte b : t.data) {
      hex.push_back(kHex[std::to_integer<int>(b) >> 4]);
      hex.push_back(kHex[std::to_integer<int>(b) & 15]);
    }
    out["tensors"].push_back({{"name", t.name}, {"dtype", safetensors::dtype_name(t.dtype)},
                              {"shape", t.shape}, {"hex", hex}});
  }
  std::cout << out.dump() << "\n";
  return 0;
}

uint16_t to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  return static_cast<uint16_t>(bits >> 16);  // exact for these values (few mantissa bits)
}

int write(const std::string& path) {
  safetensors::Writer w;
  std::vector<float> f32(12);
  for (int i = 0; i < 12; ++i) f32[i] = static_cast<float>(i) * 0.25f;
  w.add_f32("f32", {3, 4}, f32);
  std::vector<int64_t> i64 = {-2, -1, 0, 1, 2};
  w.add("i64", safetensors::DType::kI64, {5}, std::as_bytes(std::span<const int64_t>(i64)));
  std::vector<uint16_t> bf16;
  for (int i = 0; i < 6; ++i) bf16.push_back(to_bf16(static_cast<float>(i) * 1.5f));
  w.add("bf16", safetensors::DType::kBF16, {6}, std::as_bytes(std::span<const uint16_t>(bf16)));
  w.add("empty", safetensors::DType::kF32, {0, 3}, {});
  w.set_metadata("writer", "bitfleet");
  w.set_metadata("steps", "30");
  Status s = w.write_file(path);
  if (!s.is_ok()) {
    std::cerr << s.to_string() << "\n";
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::string(argv[1]) == "dump") return dump(argv[2]);
  if (argc == 3 && std::string(argv[1]) == "write") return write(argv[2]);
  std::cerr << "usage: safetensors_tool dump|write FILE\n";
  return 2;
}
