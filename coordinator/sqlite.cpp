#include "coordinator/sqlite.h"

namespace bitfleet::coordinator {

Statement& Statement::checked_bind(int rc) {
  if (bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  return *this;
}
Statement& Statement::bind(int index, int64_t value) { return checked_bind(sqlite3_bind_int64(stmt_, index, value)); }
Statement& Statement::bind(int index, double value) { return checked_bind(sqlite3_bind_double(stmt_, index, value)); }
Statement& Statement::bind(int index, std::string_view value) {
  return checked_bind(sqlite3_bind_text64(stmt_, index, value.data(), value.size(), SQLITE_TRANSIENT, SQLITE_UTF8));
}
Statement& Statement::bind_null(int index) { return checked_bind(sqlite3_bind_null(stmt_, index)); }
Statement& Statement::bind_optional(int index, const std::optional<int64_t>& value) {
  return value ? bind(index, *value) : bind_null(index);
}

Result<bool> Statement::step() {
  if (bind_rc_ != SQLITE_OK) {
    return Status(StatusCode::kInternal, std::string("sqlite3_bind: ") + sqlite3_errstr(bind_rc_) + " in " +
                                             sqlite3_sql(stmt_));
  }
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return Status(StatusCode::kInternal, std::string("sqlite3_step: ") + sqlite3_errmsg(db_) + " in " +
                                           sqlite3_sql(stmt_));
}

Status Statement::run() {
  while (true) {
    BITFLEET_ASSIGN_OR_RETURN(bool row, step());
    if (!row) return Status::ok();
  }
}

std::string Statement::text(int column) const {
  const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, column));
  return p ? std::string(p, static_cast<size_t>(sqlite3_column_bytes(stmt_, column))) : std::string();
}

std::optional<int64_t> Statement::optional_integer(int column) const {
  if (is_null(column)) return std::nullopt;
  return integer(column);
}

void Statement::reset() {
  bind_rc_ = SQLITE_OK;
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

Result<std::unique_ptr<Database>> Database::open(const std::string& path) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string message = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    return io_error("opening " + path + ": " + message);
  }
  std::unique_ptr<Database> out(new Database(db));
  sqlite3_busy_timeout(db, 5000);
  // WAL: readers never block the writer; synchronous=FULL: a commit that returned survives a crash
  // of the process and of the machine. Acknowledged jobs must survive kill -9.
  BITFLEET_RETURN_IF_ERROR(out->exec("PRAGMA journal_mode=WAL"));
  BITFLEET_RETURN_IF_ERROR(out->exec("PRAGMA synchronous=FULL"));
  BITFLEET_RETURN_IF_ERROR(out->exec("PRAGMA foreign_keys=ON"));
  return out;
}

Database::~Database() {
  statements_.clear();
  sqlite3_close(db_);
}

Status Database::exec(const std::string& sql) {
  char* error = nullptr;
  int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &error);
  if (rc != SQLITE_OK) {
    std::string message = error ? error : sqlite3_errmsg(db_);
    sqlite3_free(error);
    return Status(StatusCode::kInternal, "sqlite: " + message + " in: " + sql.substr(0, 120));
  }
  return Status::ok();
}

Result<Statement*> Database::prepare(const std::string& sql) {
  auto it = statements_.find(sql);
  if (it != statements_.end()) {
    it->second->reset();
    return it->second.get();
  }
  sqlite3_stmt* stmt = nullptr;
  BITFLEET_SQLITE_CHECK(db_, sqlite3_prepare_v3(db_, sql.c_str(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT,
                                                &stmt, nullptr));
  auto [inserted, ok] = statements_.emplace(sql, std::make_unique<Statement>(db_, stmt));
  return inserted->second.get();
}

Transaction::~Transaction() {
  if (open_) (void)db_.exec("ROLLBACK");
}

Status Transaction::commit() {
  BITFLEET_RETURN_IF_ERROR(db_.exec("COMMIT"));
  open_ = false;
  return Status::ok();
}

}  // namespace bitfleet::coordinator
