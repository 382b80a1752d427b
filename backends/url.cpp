#include "backends/url.h"

#include <array>
#include <cctype>
#include <charconv>

#include "lib/util/error.h"
#include "lib/util/percent_encode.h"

namespace walship {

namespace {

constexpr std::string_view k_redacted = "***";
constexpr std::array<std::string_view, 6> k_secret_words = {"password", "secret",    "token",
                                                            "key",      "signature", "credential"};

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool is_scheme_char(char c, bool first) {
  const auto u = static_cast<unsigned char>(c);
  if (std::isalpha(u)) return true;
  return !first && (std::isdigit(u) || c == '+' || c == '-' || c == '.');
}

// Length of the scheme at the start of `url` (the part before ':'), or 0 when
// the text does not start with a syntactically valid scheme.
size_t scheme_length(std::string_view url) {
  const size_t colon = url.find(':');
  if (colon == std::string_view::npos || colon == 0) return 0;
  for (size_t i = 0; i < colon; ++i) {
    if (!is_scheme_char(url[i], i == 0)) return 0;
  }
  return colon;
}

std::string to_lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool is_secret_name(std::string_view name) {
  const std::string lower = to_lower(percent_decode_lenient(name));
  for (std::string_view word : k_secret_words) {
    if (lower.find(word) != std::string::npos) return true;
  }
  return false;
}

[[noreturn]] void throw_invalid(const std::string& url, const std::string& cause) {
  throw UsageError("invalid URL '" + redact_url(url) + "': " + cause);
}

uint16_t parse_port(const std::string& url, std::string_view text) {
  if (text.empty() || text.size() > 5) throw_invalid(url, "bad port '" + std::string(text) + "'");
  unsigned value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') throw_invalid(url, "bad port '" + std::string(text) + "'");
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  if (value == 0 || value > 65535)
    throw_invalid(url, "bad port '" + std::string(text) + "': must be 1 to 65535");
  return static_cast<uint16_t>(value);
}

}  // namespace

std::string percent_decode_lenient(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '%' && i + 2 < text.size() && hex_value(text[i + 1]) >= 0 && hex_value(text[i + 2]) >= 0) {
      out += static_cast<char>(hex_value(text[i + 1]) * 16 + hex_value(text[i + 2]));
      i += 2;
    } else {
      out += text[i];
    }
  }
  return out;
}

std::string percent_decode(std::string_view text, std::string_view what) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out += text[i];
      continue;
    }
    if (i + 2 >= text.size()) {
      throw UsageError("bad percent-escape in " + std::string(what) +
                       ": '%' must be followed by two hex digits");
    }
    const int hi = hex_value(text[i + 1]);
    const int lo = hex_value(text[i + 2]);
    if (hi < 0 || lo < 0) {
      throw UsageError("bad percent-escape '" + std::string(text.substr(i, 3)) + "' in " + std::string(what));
    }
    if (hi == 0 && lo == 0)
      throw UsageError("bad percent-escape '%00' in " + std::string(what) + ": NUL is not allowed");
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

ParsedUrl parse_url(const std::string& url) {
  const size_t scheme_len = scheme_length(url);
  if (scheme_len == 0) throw_invalid(url, "missing scheme (expected scheme://...)");
  if (url.find('#') != std::string::npos) {
    throw_invalid(url, "fragments ('#') are not supported: write '#' as %23");
  }

  ParsedUrl parsed;
  parsed.scheme = to_lower(std::string_view(url).substr(0, scheme_len));
  std::string_view rest = std::string_view(url).substr(scheme_len + 1);

  // Decoding errors are rethrown with the URL so the message says which one.
  auto decode = [&url](std::string_view text, std::string_view what) {
    try {
      return percent_decode(text, what);
    } catch (const UsageError& e) {
      throw_invalid(url, e.what());
    }
  };

  std::string_view query;
  if (const size_t q = rest.find('?'); q != std::string_view::npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }

  if (rest.starts_with("//")) {
    parsed.has_authority = true;
    rest.remove_prefix(2);
    const size_t slash = rest.find('/');
    std::string_view authority = rest.substr(0, slash);
    rest = slash == std::string_view::npos ? std::string_view() : rest.substr(slash);

    // The last '@' ends the userinfo: an unescaped '@' in a password is common.
    if (const size_t at = authority.rfind('@'); at != std::string_view::npos) {
      const std::string_view userinfo = authority.substr(0, at);
      authority.remove_prefix(at + 1);
      const size_t colon = userinfo.find(':');
      parsed.user = decode(userinfo.substr(0, colon), "user name");
      if (colon != std::string_view::npos) parsed.password = decode(userinfo.substr(colon + 1), "password");
    }

    std::string_view port;
    bool has_port = false;
    if (authority.starts_with('[')) {
      const size_t close = authority.find(']');
      if (close == std::string_view::npos) throw_invalid(url, "unterminated '[' in host");
      parsed.host = std::string(authority.substr(1, close - 1));
      const std::string_view after = authority.substr(close + 1);
      if (!after.empty()) {
        if (after[0] != ':') throw_invalid(url, "unexpected text after ']' in host");
        port = after.substr(1);
        has_port = true;
      }
    } else {
      const size_t colon = authority.find(':');
      parsed.host = decode(authority.substr(0, colon), "host");
      if (colon != std::string_view::npos) {
        port = authority.substr(colon + 1);
        has_port = true;
      }
    }
    if (has_port) parsed.port = parse_port(url, port);
  }
  parsed.path = decode(rest, "path");

  while (!query.empty()) {
    const size_t amp = query.find('&');
    const std::string_view param = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (param.empty()) continue;
    const size_t eq = param.find('=');
    const std::string name = decode(param.substr(0, eq), "query parameter name");
    parsed.query[name] = eq == std::string_view::npos
                             ? std::string()
                             : decode(param.substr(eq + 1), "query parameter '" + name + "'");
  }
  return parsed;
}

std::string redact_url(const std::string& url) {
  const size_t scheme_len = scheme_length(url);
  if (scheme_len == 0) return url;  // a plain path has nothing to hide

  std::string out = url;
  const size_t body = scheme_len + 1;
  size_t query_start = out.find('?', body);

  if (out.compare(body, 2, "//") == 0) {
    const size_t auth_start = body + 2;
    size_t auth_end = out.find_first_of("/?#", auth_start);
    if (auth_end == std::string::npos) auth_end = out.size();
    const size_t at = out.rfind('@', auth_end - 1);
    if (at != std::string::npos && at >= auth_start) {
      const size_t colon = out.find(':', auth_start);
      if (colon != std::string::npos && colon < at) {
        out.replace(colon + 1, at - colon - 1, k_redacted);
        query_start = out.find('?', body);
      }
    }
  }

  if (query_start == std::string::npos) return out;
  size_t query_end = out.find('#', query_start);
  if (query_end == std::string::npos) query_end = out.size();

  std::string redacted = out.substr(0, query_start + 1);
  std::string_view query = std::string_view(out).substr(query_start + 1, query_end - query_start - 1);
  bool first = true;
  while (true) {
    const size_t amp = query.find('&');
    const std::string_view param = query.substr(0, amp);
    if (!first) redacted += '&';
    first = false;
    const size_t eq = param.find('=');
    if (eq != std::string_view::npos && is_secret_name(param.substr(0, eq))) {
      redacted += param.substr(0, eq + 1);
      redacted += k_redacted;
    } else {
      redacted += param;
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  redacted += std::string_view(out).substr(query_end);
  return redacted;
}

bool is_valid_object_key(std::string_view key) {
  if (key.empty() || key.front() == '/' || key.find('\0') != std::string_view::npos) return false;
  while (true) {
    const size_t slash = key.find('/');
    const std::string_view segment = key.substr(0, slash);
    if (segment.empty() || segment == "." || segment == "..") return false;
    if (slash == std::string_view::npos) return true;
    key.remove_prefix(slash + 1);
  }
}

void check_object_key(std::string_view key, const std::string& url) {
  if (is_valid_object_key(key)) return;
  throw Failure("invalid object key '" + std::string(key) + "' for '" + url +
                "': keys are relative, '/'-separated, without empty, '.' or '..' segments");
}

void check_option_value(const std::string& name, const std::string& value, OptionKind kind,
                        const std::string& shown) {
  auto invalid = [&](const std::string& cause) {
    throw UsageError("invalid option " + name + "='" + value + "' for replica '" + shown + "': " + cause);
  };
  if (kind == OptionKind::boolean && value != "true" && value != "false") {
    invalid("expected exactly true or false");
  }
  if (value.empty()) invalid("the value is empty; give one or leave the option out");
  if (kind == OptionKind::bytes) {
    uint64_t n = 0;
    const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
    if (ec != std::errc() || end != value.data() + value.size()) invalid("expected a number of bytes");
  }
}

bool parse_bool_option(const std::string& name, const std::string& value, const std::string& shown) {
  check_option_value(name, value, OptionKind::boolean, shown);
  return value == "true";
}

uint64_t parse_bytes_option(const std::string& name, const std::string& value, const std::string& shown) {
  check_option_value(name, value, OptionKind::bytes, shown);
  return std::stoull(value);
}

std::string bucket_url_bucket(const ParsedUrl& parsed, const std::string& shown, const std::string& scheme,
                              const std::string& how) {
  const std::string use = "use " + scheme + "://bucket/prefix";
  if (parsed.host.empty()) throw UsageError("invalid replica URL '" + shown + "': no bucket; " + use);
  if (!parsed.user.empty() || parsed.password || parsed.port) {
    throw UsageError("invalid replica URL '" + shown + "': " + scheme + ":// URLs take no user or port; " +
                     use + how);
  }
  return parsed.host;
}

std::string bucket_url_prefix(const ParsedUrl& parsed, const std::string& shown) {
  std::string prefix = parsed.path;
  while (prefix.starts_with('/')) prefix.erase(0, 1);
  while (prefix.ends_with('/')) prefix.pop_back();
  if (!prefix.empty() && !is_valid_object_key(prefix)) {
    throw UsageError("invalid replica URL '" + shown + "': the prefix '" + prefix +
                     "' has an empty, '.' or '..' segment");
  }
  return prefix;
}

std::string BucketNames::url() const {
  return scheme + "://" + bucket + (prefix.empty() ? "" : "/" + percent_encode(prefix, "/"));
}

std::string BucketNames::object_name(const std::string& key) const {
  return prefix.empty() ? key : prefix + "/" + key;
}

std::string BucketNames::object_url(const std::string& key) const {
  return scheme + "://" + bucket + "/" + object_name(key);
}

std::optional<std::string> BucketNames::key_of(const std::string& name) const {
  const std::string base = object_name("");
  if (!name.starts_with(base)) return std::nullopt;
  return name.substr(base.size());
}

}  // namespace walship
