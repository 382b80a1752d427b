// Pure URL handling shared by every backend: parsing replica URLs, percent
// coding, redaction for logs and the rules object keys follow. No I/O here, so
// all of it is unit-tested (and fuzzed) without disks or sockets.
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

// The object prefix of a bucket URL (s3://, gs://): the path without leading
// or trailing '/' ("/a/b/" -> "a/b", may be empty). Throws UsageError naming
// `shown` (the redacted URL) when a segment is empty, "." or "..".
std::string bucket_url_prefix(const ParsedUrl& parsed, const std::string& shown);

// Decodes %XX escapes. Throws UsageError mentioning `what` on a malformed
// escape or on %00.
std::string percent_decode(std::string_view text, std::string_view what);

// Percent-encodes every byte outside RFC 3986 "unreserved"; '/' is kept when
// `keep_slash`, so a filesystem path stays readable.
std::string percent_encode(std::string_view text, bool keep_slash);

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
