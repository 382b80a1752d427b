// Pure URL handling shared by every backend: parsing replica URLs, percent
// decoding (lib/util/percent_encode.h encodes), redaction for logs and the
// rules object keys follow. No I/O here, so all of it is unit-tested (and
// fuzzed) without disks or sockets.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace walship {

// The parts of "scheme://[user[:password]@]host[:port]/path[?query]".
// Everything except `scheme` is percent-decoded; `scheme` is lower-cased.
struct ParsedUrl {
  std::string scheme;
  // True when the URL has a "//" authority part (even an empty one, as in
  // "file:///x"); false for "scheme:path" forms such as "file:/x".
  bool has_authority = false;
  std::string user;
  std::optional<std::string> password;  // "user:@host" gives an empty password
  std::string host;                     // IPv6 literals without the brackets
  std::optional<uint16_t> port;
  std::string path;  // starts with '/' when the URL had one; may be empty
  // Query parameters; a name given twice keeps the last value, a name
  // without '=' maps to "". '+' is kept as is (these are not HTML forms).
  std::map<std::string, std::string> query;
};

// Parses an absolute URL. Throws UsageError (naming the redacted URL) when
// there is no scheme, the port is not a number in 1..65535, a percent-escape is
// malformed or decodes to NUL, a bracketed IPv6 host is unterminated, or the
// URL has a '#' fragment (write '#' as %23).
ParsedUrl parse_url(const std::string& url);

// The bucket of a bucket URL (s3://, gs://): its host. Throws UsageError
// naming `shown` (the redacted URL) when there is none, or when the URL has
// a user, password or port; `how` follows "use scheme://bucket/prefix" in
// that message (" and the endpoint option" for s3://).
std::string bucket_url_bucket(const ParsedUrl& parsed, const std::string& shown, const std::string& scheme,
                              const std::string& how = "");

// The object prefix of a bucket URL (s3://, gs://): the path without leading
// or trailing '/' ("/a/b/" -> "a/b", may be empty). Throws UsageError naming
// `shown` (the redacted URL) when a segment is empty, "." or "..".
std::string bucket_url_prefix(const ParsedUrl& parsed, const std::string& shown);

// How a bucket backend (s3://, gs://) names things, every key living under
// `prefix` in `bucket`.
struct BucketNames {
  std::string scheme;  // "s3", "gs"
  std::string bucket;
  std::string prefix;  // as bucket_url_prefix() gives it; may be empty

  // The replica, "scheme://bucket[/prefix]", the prefix percent-encoded ('/' kept).
  std::string url() const;
  // The object name of `key`, "prefix/key" (or `key` without a prefix), which
  // is also what the names of the keys starting with `key` start with.
  std::string object_name(const std::string& key) const;
  // "scheme://bucket/<object name>", for messages.
  std::string object_url(const std::string& key) const;
  // The key of an object name, or nullopt for a name outside the prefix.
  std::optional<std::string> key_of(const std::string& object_name) const;
};

// Decodes %XX escapes. Throws UsageError mentioning `what` on a malformed
// escape or on %00.
std::string percent_decode(std::string_view text, std::string_view what);

// Decodes what it can and keeps malformed escapes (and %00) verbatim: for
// redaction, which must never throw, and for reading back what a client sent.
std::string percent_decode_lenient(std::string_view text);

// A replica option (URL query, or a replica's setting in walship.toml) as a
// backend declares it, so a setting's type is checked before the backend
// opens (check_replica_setting in registry.h).
enum class OptionKind {
  text,     // a string: a path, a name, a key
  boolean,  // exactly "true" or "false"
  bytes,    // a whole number of bytes
};
struct OptionSpec {
  std::string_view name;
  OptionKind kind;
};

// Checks an option value of `kind`: never empty (an empty value, such as an
// unset ${VAR}, must not switch a default, least of all TLS verification,
// off); a boolean is exactly true or false, bytes a whole number. Throws
// UsageError "invalid option NAME='VALUE' for replica 'SHOWN': <cause>".
void check_option_value(const std::string& name, const std::string& value, OptionKind kind,
                        const std::string& shown);

// check_option_value for a boolean, then its value.
bool parse_bool_option(const std::string& name, const std::string& value, const std::string& shown);

// check_option_value for bytes, then its value.
uint64_t parse_bytes_option(const std::string& name, const std::string& value, const std::string& shown);

// Returns `url` with the password (if any) replaced by "***" and the value of
// every query parameter whose name contains password, secret, token, key,
// signature or credential (any case) replaced by "***". Never throws: it is
// used on malformed input too, to build the error message about it.
std::string redact_url(const std::string& url);

// True when `key` is a valid object key: non-empty, relative ('/'-separated,
// no leading '/'), no empty, "." or ".." segment and no NUL byte. Keys are
// appended to a replica prefix by every backend, so a key that could climb out
// of it or alias another key is a programming error.
bool is_valid_object_key(std::string_view key);

// Throws Failure("invalid object key '<key>' for '<url>': ...") unless
// is_valid_object_key(key).
void check_object_key(std::string_view key, const std::string& url);

}  // namespace walship
