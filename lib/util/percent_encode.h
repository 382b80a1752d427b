// The one percent-encoder (RFC 3986 section 2.1): replica URLs shown to people,
// SigV4 canonical URIs and query strings, GCS object names in API URLs and the
// file names joined onto a replica URL all encode bytes the same way.
#pragma once

#include <string>
#include <string_view>

namespace walship {

// Returns `text` with every byte outside RFC 3986 "unreserved" (A-Z a-z 0-9
// - . _ ~) and outside `keep` written as %XX, upper-case hex, byte by byte (so
// UTF-8 becomes one escape per byte). `keep` names the extra characters that
// stay as they are: "/" keeps a path readable, "" encodes a single segment or
// a query value. '%' is encoded unless kept, so encoding is never idempotent.
std::string percent_encode(std::string_view text, std::string_view keep = {});

}  // namespace walship
