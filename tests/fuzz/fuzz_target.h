// What every fuzz target in this folder defines, so that one replay main can
// run any target over its checked-in corpus (tests/fuzz/CMakeLists.txt).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

// libFuzzer's entry point. Must never crash, leak or trip a sanitizer,
// whatever the bytes; rejecting them with a walship::Error is fine.
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

// Whether the target's parser accepts `data`. The replay requires corpus
// files named `valid-*` to be accepted: they were written by walship itself,
// so a rejection means this build can no longer read what an older one wrote.
// When it returns false and `why` is not null, *why says what was wrong.
bool fuzz_accepts(const uint8_t* data, size_t size, std::string* why = nullptr);
