// A thin RAII layer over SQLite: Database (one connection), Statement (prepared, reset on reuse),
// Transaction (BEGIN IMMEDIATE ... COMMIT, rolled back unless committed). Every sqlite3_* call
// that can fail goes through BITFLEET_SQLITE_CHECK, which returns a Status naming the file, line,
// call and SQLite's own message.
// Thread-safety: none; the Store serialises every use of its Database.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"

#define BITFLEET_SQLITE_CHECK(db, call)                                                                      \
  do {                                                                                                       \
    int bitfleet_sqlite_rc_ = (call);                                                                        \
    if (bitfleet_sqlite_rc_ != SQLITE_OK && bitfleet_sqlite_rc_ != SQLITE_DONE && bitfleet_sqlite_rc_ != SQLITE_ROW) { \
      return ::bitfleet::Status(::bitfleet::StatusCode::kInternal,                                           \
                                std::string(__FILE__) + ":" + std::to_string(__LINE__) + ": " #call ": " +    \
                                    sqlite3_errmsg(db));                                                     \
    }                                                                                                        \
  } while (false)

namespace bitfleet::coordinator {

class Statement {
 public:
  Statement(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  Statement(Statement&&) = delete;
  ~Statement() { sqlite3_finalize(stmt_); }

  // Binding is 1-based, as in SQLite. A failed bind is remembered and returned by step()/run().
  Statement& bind(int index, int64_t value);
  Statement& bind(int index, double value);
  Statement& bind(int index, std::string_view value);
  Statement& bind_null(int index);
  Statement& bind_optional(int index, const std::optional<int64_t>& value);

  // True while rows come; false when done.
  Result<bool> step();
  Status run();  // step() to completion for statements that return no rows

  int64_t integer(int column) const { return sqlite3_column_int64(stmt_, column); }
  double real(int column) const { return sqlite3_column_double(stmt_, column); }
  std::string text(int column) const;
  bool is_null(int column) const { return sqlite3_column_type(stmt_, column) == SQLITE_NULL; }
  std::optional<int64_t> optional_integer(int column) const;

  void reset();

 private:
  Statement& checked_bind(int rc);
  sqlite3* db_;
  sqlite3_stmt* stmt_;
  int bind_rc_ = SQLITE_OK;
};

class Database {
 public:
  static Result<std::unique_ptr<Database>> open(const std::string& path);
  ~Database();

  Status exec(const std::string& sql);
  // A cached prepared statement, reset and unbound, ready for binding.
  Result<Statement*> prepare(const std::string& sql);
  int64_t changes() const { return sqlite3_changes64(db_); }
  sqlite3* handle() { return db_; }

 private:
  explicit Database(sqlite3* db) : db_(db) {}
  sqlite3* db_;
  std::map<std::string, std::unique_ptr<Statement>> statements_;
};

class Transaction {
 public:
  explicit Transaction(Database& db) : db_(db) {}
  ~Transaction();
  Status begin() { return db_.exec("BEGIN IMMEDIATE"); }
  Status commit();

 private:
  Database& db_;
  bool open_ = true;
};

}  // namespace bitfleet::coordinator
