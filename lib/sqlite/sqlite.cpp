#include "lib/sqlite/sqlite.h"

#include <cstdio>
#include <cstring>

namespace walship::sqlite {

std::string immutable_uri(const std::string& path) {
  std::string uri = "file:";
  for (char c : path) {
    if (c == '%' || c == '?' || c == '#') {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", static_cast<unsigned char>(c));
      uri += buf;
    } else {
      uri += c;
    }
  }
  return uri + "?immutable=1";
}

namespace {

// SQLite's message, and for a failure to open or read a file the system's
// cause, which SQLite keeps apart ("unable to open database file: Too many
// open files").
std::string describe(sqlite3* db, int rc) {
  if (!db) return sqlite3_errstr(rc);
  std::string msg = sqlite3_errmsg(db);
  const int primary = sqlite3_extended_errcode(db) & 0xff;
  if ((primary == SQLITE_CANTOPEN || primary == SQLITE_IOERR) && sqlite3_system_errno(db) != 0)
    msg += std::string(": ") + std::strerror(sqlite3_system_errno(db));
  return msg;
}

}  // namespace

Database::Database(const std::string& path, int flags) : m_path(path) {
  const int rc = sqlite3_open_v2(path.c_str(), &m_db, flags | SQLITE_OPEN_URI, nullptr);
  if (rc != SQLITE_OK) {
    const std::string msg = describe(m_db, rc);
    const int code = m_db ? sqlite3_extended_errcode(m_db) : rc;
    sqlite3_close_v2(m_db);
    m_db = nullptr;
    throw Error("unable to open database '" + path + "': " + msg, code);
  }
  sqlite3_extended_result_codes(m_db, 1);
}

Database::~Database() {
  if (m_db) sqlite3_close_v2(m_db);
}

void Database::fail(const std::string& what, int rc) const {
  throw Error(what + " on '" + m_path + "': " + describe(m_db, rc),
              m_db ? sqlite3_extended_errcode(m_db) : rc);
}

void Database::exec(const std::string& sql) {
  const int rc = sqlite3_exec(m_db, sql.c_str(), nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) fail("unable to run '" + sql + "'", rc);
}

int64_t Database::query_int(const std::string& sql) {
  Statement stmt(*this, sql);
  if (!stmt.step()) throw Failure("'" + sql + "' returned no row on '" + m_path + "'");
  return stmt.column_int64(0);
}

std::string Database::query_text(const std::string& sql) {
  Statement stmt(*this, sql);
  if (!stmt.step()) throw Failure("'" + sql + "' returned no row on '" + m_path + "'");
  return stmt.column_text(0);
}

void Database::set_busy_timeout(int ms) { sqlite3_busy_timeout(m_db, ms); }

Statement::Statement(Database& db, const std::string& sql) : m_db(db), m_sql(sql) {
  const int rc = sqlite3_prepare_v2(db.handle(), sql.c_str(), -1, &m_stmt, nullptr);
  if (rc != SQLITE_OK) db.fail("unable to prepare '" + sql + "'", rc);
}

Statement::~Statement() { sqlite3_finalize(m_stmt); }

bool Statement::step() {
  const int rc = sqlite3_step(m_stmt);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  m_db.fail("unable to run '" + m_sql + "'", rc);
}

void Statement::reset() {
  sqlite3_reset(m_stmt);
  sqlite3_clear_bindings(m_stmt);
}

void Statement::bind_int64(int index, int64_t value) {
  const int rc = sqlite3_bind_int64(m_stmt, index, value);
  if (rc != SQLITE_OK) m_db.fail("unable to bind a value for '" + m_sql + "'", rc);
}

void Statement::bind_blob(int index, std::span<const std::byte> value) {
  const int rc = sqlite3_bind_blob64(m_stmt, index, value.data(), value.size(), SQLITE_STATIC);
  if (rc != SQLITE_OK) m_db.fail("unable to bind a value for '" + m_sql + "'", rc);
}

int64_t Statement::column_int64(int index) const { return sqlite3_column_int64(m_stmt, index); }

std::string Statement::column_text(int index) const {
  const auto* text = sqlite3_column_text(m_stmt, index);
  return text ? std::string(reinterpret_cast<const char*>(text)) : std::string();
}

std::span<const std::byte> Statement::column_blob(int index) const {
  const void* data = sqlite3_column_blob(m_stmt, index);
  const int size = sqlite3_column_bytes(m_stmt, index);
  return {static_cast<const std::byte*>(data), static_cast<size_t>(size)};
}

bool has_sqlite_header(std::span<const std::byte> first_bytes) {
  static const char k_magic[] = "SQLite format 3";  // 15 chars + NUL = 16 bytes
  return first_bytes.size() >= 16 && std::memcmp(first_bytes.data(), k_magic, 16) == 0;
}

}  // namespace walship::sqlite
