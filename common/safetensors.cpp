#include "common/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>

#include <nlohmann/json.hpp>

#include "common/file_util.h"
#include "common/json_fields.h"

namespace bitfleet::safetensors {
namespace {

struct DTypeInfo {
  DType dtype;
  std::string_view name;
  size_t size;
};

constexpr DTypeInfo kDTypes[] = {
    {DType::kF64, "F64", 8},  {DType::kF32, "F32", 4},        {DType::kF16, "F16", 2},
    {DType::kBF16, "BF16", 2}, {DType::kI64, "I64", 8},       {DType::kI32, "I32", 4},
    {DType::kI16, "I16", 2},  {DType::kI8, "I8", 1},          {DType::kU64, "U64", 8},
    {DType::kU32, "U32", 4},  {DType::kU16, "U16", 2},        {DType::kU8, "U8", 1},
    {DType::kBool, "BOOL", 1}, {DType::kF8E4M3, "F8_E4M3", 1}, {DType::kF8E5M2, "F8_E5M2", 1},
};

// Headers beyond this are not checkpoints but attacks on the JSON parser.
constexpr uint64_t kMaxHeaderBytes = 100u << 20;

Status malformed(const std::string& file, const std::string& what) {
  return data_loss(file + ": not a valid safetensors file: " + what);
}

bool read_u64(const nlohmann::json& v, uint64_t& out) {
  if (v.is_number_unsigned()) {
    out = v.get<uint64_t>();
    return true;
  }
  if (v.is_number_integer() && v.get<int64_t>() >= 0) {
    out = static_cast<uint64_t>(v.get<int64_t>());
    return true;
  }
  return false;
}

}  // namespace

size_t dtype_size(DType dtype) {
  for (const auto& d : kDTypes) {
    if (d.dtype == dtype) return d.size;
  }
  return 0;
}

std::string_view dtype_name(DType dtype) {
  for (const auto& d : kDTypes) {
    if (d.dtype == dtype) return d.name;
  }
  return "?";
}

Result<DType> parse_dtype(std::string_view name) {
  for (const auto& d : kDTypes) {
    if (d.name == name) return d.dtype;
  }
  return invalid_argument("unknown dtype \"" + std::string(name) + "\"");
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

File::File(File&& other) noexcept { *this = std::move(other); }

File& File::operator=(File&& other) noexcept {
  if (this != &other) {
    if (mapping_ != nullptr) ::munmap(mapping_, mapping_size_);
    mapping_ = std::exchange(other.mapping_, nullptr);
    mapping_size_ = std::exchange(other.mapping_size_, 0);
    // Views into an owned string stay valid when the string moves only if its buffer moves too;
    // std::string's small-buffer optimisation would break that, so re-point views explicitly.
    const char* old_base = other.owned_.data();
    owned_ = std::move(other.owned_);
    tensors_ = std::move(other.tensors_);
    metadata_ = std::move(other.metadata_);
    if (mapping_ == nullptr && !owned_.empty() && old_base != owned_.data()) {
      for (auto& t : tensors_) {
        auto offset = reinterpret_cast<const char*>(t.data.data()) - old_base;
        t.data = {reinterpret_cast<const std::byte*>(owned_.data()) + offset, t.data.size()};
      }
    }
  }
  return *this;
}

File::~File() {
  if (mapping_ != nullptr) ::munmap(mapping_, mapping_size_);
}

Result<File> File::open(const std::string& path) {
  common::FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return io_error("opening " + path + ": " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return io_error("stat of " + path + ": " + std::strerror(errno));
  if (st.st_size < 8) return malformed(path, "shorter than the 8-byte header length");
  File file;
  file.mapping_size_ = static_cast<size_t>(st.st_size);
  void* m = ::mmap(nullptr, file.mapping_size_, PROT_READ, MAP_PRIVATE, fd.get(), 0);
  if (m == MAP_FAILED) return io_error("mapping " + path + ": " + std::strerror(errno));
  file.mapping_ = m;
  BITFLEET_RETURN_IF_ERROR(
      file.parse({static_cast<const std::byte*>(m), file.mapping_size_}, path));
  return file;
}

Result<File> File::from_bytes(std::string bytes, std::string name) {
  File file;
  file.owned_ = std::move(bytes);
  if (file.owned_.size() < 8) return malformed(name, "shorter than the 8-byte header length");
  BITFLEET_RETURN_IF_ERROR(file.parse(
      {reinterpret_cast<const std::byte*>(file.owned_.data()), file.owned_.size()}, name));
  return file;
}

namespace {

// One tensor's header entry, checked against the data buffer: its view, and its byte range.
Result<TensorView> tensor_entry(const std::string& key, const nlohmann::json& value, std::span<const std::byte> data,
                                const std::string& name, uint64_t& begin, uint64_t& end) {
  const std::string where = "tensor \"" + key + "\"";
  if (key.empty()) return malformed(name, "a tensor has an empty name");
  if (!value.is_object() || value.size() != 3 || !value.contains("dtype") ||
      !value.contains("shape") || !value.contains("data_offsets")) {
    return malformed(name, where + " must have exactly dtype, shape and data_offsets");
  }
  TensorView t;
  t.name = key;
  if (!value["dtype"].is_string()) return malformed(name, where + ": dtype is not a string");
  auto dtype = parse_dtype(value["dtype"].get<std::string>());
  if (!dtype.is_ok()) return malformed(name, where + ": " + dtype.status().message());
  t.dtype = *dtype;
  const auto& shape = value["shape"];
  if (!shape.is_array()) return malformed(name, where + ": shape is not an array");
  uint64_t numel = 1;
  for (const auto& d : shape) {
    uint64_t dim = 0;
    if (!read_u64(d, dim) || dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return malformed(name, where + ": shape has a dimension that is not a non-negative integer");
    }
    if (dim != 0 && numel > std::numeric_limits<uint64_t>::max() / dim) {
      return malformed(name, where + ": shape overflows");
    }
    numel *= dim;
    t.shape.push_back(static_cast<int64_t>(dim));
  }
  const auto& offsets = value["data_offsets"];
  if (!offsets.is_array() || offsets.size() != 2 || !read_u64(offsets[0], begin) ||
      !read_u64(offsets[1], end)) {
    return malformed(name, where + ": data_offsets must be two non-negative integers");
  }
  const uint64_t size = dtype_size(t.dtype);
  if (numel > std::numeric_limits<uint64_t>::max() / size) {
    return malformed(name, where + ": byte size overflows");
  }
  if (begin > end || end > data.size()) {
    return malformed(name, where + ": data_offsets [" + std::to_string(begin) + ", " +
                               std::to_string(end) + "] fall outside the " +
                               std::to_string(data.size()) + "-byte data buffer");
  }
  if (end - begin != numel * size) {
    return malformed(name, where + ": " + std::to_string(end - begin) + " bytes for a " +
                               std::string(dtype_name(t.dtype)) + " shape of " +
                               std::to_string(numel) + " elements");
  }
  t.data = data.subspan(begin, end - begin);
  return t;
}

}  // namespace

Status File::parse(std::span<const std::byte> bytes, const std::string& name) {
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | std::to_integer<uint64_t>(bytes[i]);
  const uint64_t available = bytes.size() - 8;
  if (header_len == 0 || header_len > available || header_len > kMaxHeaderBytes) {
    return malformed(name, "header length " + std::to_string(header_len) + " does not fit in " +
                               std::to_string(available) + " bytes after it");
  }
  const char* header_begin = reinterpret_cast<const char*>(bytes.data() + 8);
  // parse_json, not json::parse: a number out of range ("8e888", found by fuzz_safetensors) threw
  // an exception that ended the process.
  auto parsed = common::parse_json(std::string_view(header_begin, header_len), "header");
  if (!parsed.is_ok()) return malformed(name, parsed.status().message());
  const nlohmann::json header = std::move(parsed).value();
  if (!header.is_object()) return malformed(name, "header is not a JSON object");

  const std::span<const std::byte> data = bytes.subspan(8 + header_len);
  struct Range {
    uint64_t begin, end;
    size_t index;
  };
  std::vector<Range> ranges;
  for (const auto& [key, value] : header.items()) {
    if (key == "__metadata__") {
      if (!value.is_object()) return malformed(name, "__metadata__ is not an object");
      for (const auto& [mk, mv] : value.items()) {
        if (!mv.is_string()) return malformed(name, "__metadata__." + mk + " is not a string");
        metadata_[mk] = mv.get<std::string>();
      }
      continue;
    }
    uint64_t begin = 0, end = 0;
    BITFLEET_ASSIGN_OR_RETURN(TensorView t, tensor_entry(key, value, data, name, begin, end));
    ranges.push_back({begin, end, tensors_.size()});
    tensors_.push_back(std::move(t));
  }
  std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t cursor = 0;
  for (const auto& r : ranges) {
    if (r.begin != cursor) {
      return malformed(name, "tensor \"" + tensors_[r.index].name + "\" " +
                                 (r.begin < cursor ? "overlaps the one before it"
                                                   : "leaves a gap before it"));
    }
    cursor = r.end;
  }
  if (cursor != data.size()) {
    return malformed(name, std::to_string(data.size() - cursor) +
                               " bytes after the last tensor belong to none");
  }
  return Status::ok();
}

const TensorView* File::find(std::string_view name) const {
  for (const auto& t : tensors_) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

void Writer::add(std::string name, DType dtype, std::vector<int64_t> shape,
                 std::span<const std::byte> bytes) {
  int64_t numel = 1;
  for (int64_t d : shape) numel *= d;
  assert(static_cast<size_t>(numel) * dtype_size(dtype) == bytes.size() &&
         "safetensors::Writer::add: byte count does not match the shape");
  entries_.push_back({std::move(name), dtype, std::move(shape), {bytes.begin(), bytes.end()}});
}

void Writer::add_f32(std::string name, std::vector<int64_t> shape, std::span<const float> values) {
  add(std::move(name), DType::kF32, std::move(shape), std::as_bytes(values));
}

void Writer::set_metadata(std::string key, std::string value) {
  metadata_[std::move(key)] = std::move(value);
}

std::string Writer::to_bytes() const {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata_.empty()) header["__metadata__"] = metadata_;
  uint64_t offset = 0;
  for (const auto& e : entries_) {
    header[e.name] = {{"dtype", dtype_name(e.dtype)},
                      {"shape", e.shape},
                      {"data_offsets", {offset, offset + e.bytes.size()}}};
    offset += e.bytes.size();
  }
  std::string json = header.dump();
  // Pad the header with spaces so the data buffer starts 8-byte aligned, as Python's writer does.
  json.append((8 - json.size() % 8) % 8, ' ');
  std::string out;
  out.reserve(8 + json.size() + offset);
  uint64_t n = json.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  out += json;
  for (const auto& e : entries_) out.append(reinterpret_cast<const char*>(e.bytes.data()), e.bytes.size());
  return out;
}

Status Writer::write_file(const std::string& path) const {
  return common::write_file_atomic(path, to_bytes());
}

}  // namespace bitfleet::safetensors
