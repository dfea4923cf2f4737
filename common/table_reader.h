// TableReader: the records of a dataset file — TSV (GLUE style: a header line, tab-separated
// fields, no quoting), CSV (RFC 4180: quoted fields, "" escapes, newlines inside quotes) or JSONL
// (one JSON object per line). Used by the coordinator to check an upload (row count, columns)
// and by workers to read training data.
//
// Every malformed record is an error naming the file, the line and what is wrong; nothing is
// skipped silently (only blank lines, which hold no record). Values come back as JSON: strings
// for TSV/CSV fields, whatever the object held for JSONL.
//
// One parser serves both entry points: read_table() keeps every record (workers train on them);
// scan_table_file() streams a file through the same checks holding one record at a time, so the
// coordinator validates an upload of any size in memory bounded by kMaxRecordBytes.
// Thread-safety: values; a Table is immutable once read.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace bitfleet::common {

enum class TableFormat { kTsv, kCsv, kJsonl };

// From a file name's extension: .tsv, .csv, .jsonl / .json / .ndjson.
Result<TableFormat> table_format_from_name(std::string_view filename);
std::string_view table_format_name(TableFormat format);

struct TableRecord {
  int64_t line = 0;  // 1-based line where the record starts
  nlohmann::json values;  // an object: column name -> value
};

struct Table {
  std::string name;                  // for messages: the file name
  TableFormat format = TableFormat::kTsv;
  std::vector<std::string> columns;  // TSV/CSV: the header; JSONL: the union of keys, in order seen
  std::vector<TableRecord> records;
};

// Limits on one record and on a file's columns; a file past them is refused, naming the line.
inline constexpr size_t kMaxRecordBytes = 8u << 20;
inline constexpr size_t kMaxColumns = 1024;

Result<Table> read_table(std::string_view content, TableFormat format, const std::string& name);

// What scan_table_file() learns about a file without keeping its records.
struct TableSummary {
  std::vector<std::string> columns;
  int64_t records = 0;
};

// Checks the file at `path` record by record, exactly as read_table() would; `name` is used in
// messages. Memory: one record (at most kMaxRecordBytes) plus a read buffer.
Result<TableSummary> scan_table_file(const std::string& path, TableFormat format, const std::string& name);

// The byte offset of the first malformed UTF-8 sequence in `s` (overlong forms and surrogates
// included), or std::string_view::npos when it is all valid.
size_t first_invalid_utf8(std::string_view s);

// Resolves a column reference of a task (a column name, or a 0-based index written in digits)
// against a table's columns; the error names `field` (e.g. "task.text_fields[1]").
Result<std::string> resolve_column(const Table& table, const std::string& reference, const std::string& field);

}  // namespace bitfleet::common
