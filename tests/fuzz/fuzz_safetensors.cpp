// The safetensors reader on arbitrary bytes: a checkpoint or artifact from a worker, a backbone
// from disk. It must refuse what is malformed with a Status, and every tensor it accepts must lie
// inside the buffer.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "common/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto file = bitfleet::safetensors::File::from_bytes(std::string(reinterpret_cast<const char*>(data), size), "fuzz");
  if (!file.is_ok()) return 0;
  for (const auto& view : file->tensors()) {
    // Every accepted tensor's bytes are its shape's worth, and lie inside the buffer (touched, so
    // that ASan sees a view past the end).
    if (static_cast<size_t>(view.numel()) * bitfleet::safetensors::dtype_size(view.dtype) != view.data.size()) __builtin_trap();
    volatile uint8_t sum = 0;
    for (std::byte b : view.data) sum = static_cast<uint8_t>(sum + static_cast<uint8_t>(b));
    (void)sum;
    if (file->find(view.name) != &view) __builtin_trap();
  }
  return 0;
}
