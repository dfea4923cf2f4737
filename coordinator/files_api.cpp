// The public API's files (/v1/files): upload (validated record by record as it is stored), list,
// metadata, content, delete.
#include <filesystem>

#include "common/file_util.h"
#include "common/json_fields.h"
#include "common/net/problem.h"
#include "common/net/sha256.h"
#include "common/table_reader.h"
#include "coordinator/handler_util.h"
#include "coordinator/resources.h"
#include "coordinator/service.h"

namespace bitfleet::coordinator {

using net::problem;

namespace {

Status check_filename(const std::string& name) {
  if (name.empty() || name.size() > 255) return invalid_argument("filename must be 1 to 255 bytes", "filename");
  if (common::first_invalid_utf8(name) != std::string::npos) return invalid_argument("filename must be UTF-8", "filename");
  for (char c : name) {
    if (c == '/' || c == '\\' || static_cast<unsigned char>(c) < 32 || c == 127) {
      return invalid_argument("filename must not contain '/', '\\' or control characters", "filename");
    }
  }
  return common::table_format_from_name(name).status().is_ok()
             ? Status::ok()
             : invalid_argument("filename must end in .tsv, .csv or .jsonl (the format is read from it), got \"" + name + "\"",
                                "filename");
}

}  // namespace

Response Service::create_file(Request& r, const Caller& c) {
  const std::string filename = r.query.count("filename") ? r.query.at("filename") : "";
  if (Status ok = check_filename(filename); !ok.is_ok()) return problem(ok, r.path, 400);
  auto digest = net::sha256_file(r.body_file);
  if (!digest.is_ok()) return problem(digest.status(), r.path);
  auto key = idempotency_key(r, *digest);
  if (!key.is_ok()) return problem(key.status(), r.path, 400);
  auto format = common::table_format_from_name(filename).value();
  // Refuse a bad dataset now, naming its line, rather than when a job reaches a worker. Streamed
  // from the spooled body: memory is one record, whatever the file's size.
  auto table = common::scan_table_file(r.body_file, format, filename);
  if (!table.is_ok()) return problem(Status(table.status().code(), table.status().message(), "body"), r.path, 422);
  if (table->records == 0) return problem(422, "", filename + ": the file has no records", "body", r.path);
  std::error_code size_error;
  const auto bytes = std::filesystem::file_size(r.body_file, size_error);
  if (size_error) return problem(io_error("the spooled upload: " + size_error.message()), r.path);

  FileRecord f;
  f.id = new_id("file-");
  f.tenant = c.principal.tenant;
  f.filename = filename;
  f.format = std::string(common::table_format_name(format));
  f.bytes = static_cast<int64_t>(bytes);
  f.sha256 = *digest;
  f.rows = table->records;
  f.columns = std::move(table->columns);
  f.created_at = now_ms();
  // The blob is moved in before its row commits; a crash between the two leaves an orphan that
  // the next start sweeps (Service::create), and every failure here removes it at once.
  if (Status moved = blobs_.adopt(r.body_file, f.id); !moved.is_ok()) return problem(moved, r.path);
  r.body_file.clear();  // adopted: the server must not delete it
  auto stored = store_->insert_file(f, *key);
  if (!stored.is_ok() || stored->replayed) (void)blobs_.remove(f.id);
  if (!stored.is_ok() && stored.status().code() == StatusCode::kResourceExhausted) {
    metrics_.refused("stored_bytes_limit", c.principal.tenant);
    return problem(stored.status(), r.path);  // 413
  }
  if (!stored.is_ok()) return problem(stored.status(), r.path, 400);
  if (!stored->file) {
    return problem(409, "", "the file created under this Idempotency-Key has been deleted since; upload again "
                            "with a new key", "Idempotency-Key", r.path);
  }
  return json_response(201, file_json(*stored->file));
}

Response Service::list_files(Request& r, const Caller& c) {
  auto limit = int_param(r, "limit", 1, kMaxPage, kDefaultPage);
  if (!limit.is_ok()) return problem(limit.status(), r.path, 400);
  std::string after = r.query.count("after") ? r.query.at("after") : "";
  if (!after.empty()) {
    auto cursor = store_->get_file(after);
    if (!cursor.is_ok()) return problem(cursor.status(), r.path);
    if (!*cursor || !c.sees((*cursor)->tenant)) {
      return problem(400, "", "after: \"" + after.substr(0, 64) + "\" is not a file id from a previous page", "after", r.path);
    }
  }
  const std::string sha256 = r.query.count("sha256") ? r.query.at("sha256") : "";
  if (r.query.count("sha256") && (sha256.size() != 64 || sha256.find_first_not_of("0123456789abcdef") != std::string::npos)) {
    return problem(400, "", "sha256 must be 64 lower-case hex digits", "sha256", r.path);
  }
  auto page = store_->list_files(c.principal.role == Role::kAdmin ? "" : c.principal.tenant, *limit, after, sha256);
  if (!page.is_ok()) return problem(page.status(), r.path);
  return json_response(200, page_json(*page, file_json));
}

Response Service::get_file(Request& r, const Caller& c) {
  auto f = store_->get_file(r.params["id"]);
  if (!f.is_ok()) return problem(f.status(), r.path);
  if (!*f || !c.sees((*f)->tenant)) return problem(404, "", "no file " + r.params["id"], "id", r.path);
  return json_response(200, file_json(**f));
}

Response Service::file_content(Request& r, const Caller& c) {
  auto f = store_->get_file(r.params["id"]);
  if (!f.is_ok()) return problem(f.status(), r.path);
  if (!*f || !c.sees((*f)->tenant)) return problem(404, "", "no file " + r.params["id"], "id", r.path);
  Response response;
  response.content_type = "application/octet-stream";
  response.file = blobs_.path((*f)->id);
  response.headers["Content-Disposition"] = "attachment; filename=\"" + (*f)->id + "." + (*f)->format + "\"";
  return response;
}

Response Service::delete_file(Request& r, const Caller& c) {
  auto f = store_->get_file(r.params["id"]);
  if (!f.is_ok()) return problem(f.status(), r.path);
  if (!*f || !c.sees((*f)->tenant)) return problem(404, "", "no file " + r.params["id"], "id", r.path);
  if (Status deleted = store_->delete_file((*f)->id); !deleted.is_ok()) return problem(deleted, r.path);
  (void)blobs_.remove((*f)->id);
  return json_response(200, {{"id", (*f)->id}, {"object", "file"}, {"deleted", true}});
}

}  // namespace bitfleet::coordinator
