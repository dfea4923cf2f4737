// safetensors: the format of checkpoints, artifacts and Hugging Face weights.
//
// Layout: an 8-byte little-endian header length N, N bytes of JSON
// {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}},
// then the data buffer. The reader memory-maps the file and checks everything before trusting
// it: header length against the file, the JSON's shape, every dtype, shape and offset, that the
// byte range matches the shape, and that tensors tile the data buffer exactly (no overlap, no
// hole, nothing past the end). A malformed file is a DataLoss status naming the file and the
// tensor, never a crash. The writer produces files that Python's `safetensors` reads.
//
// Thread-safety: a File is immutable after open() and may be read from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace bitfleet::safetensors {

enum class DType { kF64, kF32, kF16, kBF16, kI64, kI32, kI16, kI8, kU64, kU32, kU16, kU8, kBool, kF8E4M3, kF8E5M2 };

size_t dtype_size(DType dtype);
std::string_view dtype_name(DType dtype);
Result<DType> parse_dtype(std::string_view name);

struct TensorView {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  std::span<const std::byte> data;  // points into the mapped file

  int64_t numel() const;
};

class File {
 public:
  // Maps and validates `path`.
  static Result<File> open(const std::string& path);
  // Validates bytes already in memory (a download); the File keeps them.
  static Result<File> from_bytes(std::string bytes, std::string name);

  File(File&&) noexcept;
  File& operator=(File&&) noexcept;
  File(const File&) = delete;
  File& operator=(const File&) = delete;
  ~File();

  const std::vector<TensorView>& tensors() const { return tensors_; }
  const TensorView* find(std::string_view name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  File() = default;
  Status parse(std::span<const std::byte> bytes, const std::string& name);

  void* mapping_ = nullptr;
  size_t mapping_size_ = 0;
  std::string owned_;
  std::vector<TensorView> tensors_;
  std::map<std::string, std::string> metadata_;
};

// Builds a safetensors file in memory. Tensors are written in the order added.
class Writer {
 public:
  // Copies `bytes`; its size must equal the shape's element count times the dtype's size.
  void add(std::string name, DType dtype, std::vector<int64_t> shape, std::span<const std::byte> bytes);
  void add_f32(std::string name, std::vector<int64_t> shape, std::span<const float> values);
  void set_metadata(std::string key, std::string value);

  std::string to_bytes() const;
  // Atomic: temporary file, fsync, rename.
  Status write_file(const std::string& path) const;

 private:
  struct Entry {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    std::vector<std::byte> bytes;
  };
  std::vector<Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace bitfleet::safetensors
