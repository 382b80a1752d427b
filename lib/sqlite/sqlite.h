// RAII wrappers over the SQLite C API. Errors become sqlite::Error (a
// walship::Failure) naming the database path and SQLite's own message.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "lib/util/error.h"

namespace walship::sqlite {

// A failed SQLite call; code() is SQLite's extended result code, for the
// callers that tell a person what to fix (a read-only folder, a malformed
// file) from what passes.
class Error : public Failure {
 public:
  Error(const std::string& message, int code) : Failure(message), m_code(code) {}
  int code() const { return m_code; }
  int primary_code() const { return m_code & 0xff; }

 private:
  int m_code;
};

// A URI that opens `path` (read-only) without creating -wal or -shm files
// beside it: immutable=1 tells SQLite nothing else can change the file, and
// makes it ignore a WAL.
std::string immutable_uri(const std::string& path);

class Database {
 public:
  // flags: SQLITE_OPEN_* (SQLITE_OPEN_URI is always added).
  Database(const std::string& path, int flags);
  ~Database();
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  void exec(const std::string& sql);
  // Runs a statement that returns one integer (a PRAGMA, a count).
  int64_t query_int(const std::string& sql);
  std::string query_text(const std::string& sql);
  void set_busy_timeout(int ms);

  sqlite3* handle() const { return m_db; }
  const std::string& path() const { return m_path; }
  // Throws an Error "<what> on '<path>': <sqlite message>" for result code rc.
  [[noreturn]] void fail(const std::string& what, int rc) const;

 private:
  std::string m_path;
  sqlite3* m_db = nullptr;
};

class Statement {
 public:
  Statement(Database& db, const std::string& sql);
  ~Statement();
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  // Advances to the next row; false when done.
  bool step();
  void reset();
  void bind_int64(int index, int64_t value);
  void bind_blob(int index, std::span<const std::byte> value);
  int64_t column_int64(int index) const;
  std::string column_text(int index) const;
  std::span<const std::byte> column_blob(int index) const;

 private:
  Database& m_db;
  std::string m_sql;
  sqlite3_stmt* m_stmt = nullptr;
};

// True if the first 16 bytes of the file are SQLite's magic string.
bool has_sqlite_header(std::span<const std::byte> first_bytes);

}  // namespace walship::sqlite
