// The dataset reader (TSV, CSV, JSONL) on arbitrary bytes, in memory and streamed from a file:
// both must accept and refuse the same inputs, with the same records counted.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "common/table_reader.h"

using namespace bitfleet::common;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const TableFormat format = static_cast<TableFormat>(data[0] % 3);
  const std::string content(reinterpret_cast<const char*>(data + 1), size - 1);
  auto table = read_table(content, format, "fuzz");
  static const std::string path = "/tmp/bitfleet-fuzz-table-" + std::to_string(::getpid());
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return 0;
  std::fwrite(content.data(), 1, content.size(), f);
  std::fclose(f);
  auto summary = scan_table_file(path, format, "fuzz");
  if (table.is_ok() != summary.is_ok()) __builtin_trap();
  if (table.is_ok()) {
    if (static_cast<int64_t>(table->records.size()) != summary->records || table->columns != summary->columns) {
      __builtin_trap();
    }
    for (const auto& r : table->records) {
      if (!r.values.is_object()) __builtin_trap();
    }
    (void)resolve_column(*table, content.substr(0, 8), "task.label_field");
  } else if (table.status().message() != summary.status().message()) {
    __builtin_trap();
  }
  return 0;
}
