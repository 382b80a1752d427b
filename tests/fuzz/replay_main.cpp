// Runs a fuzz target over every file of its corpus directories, without
// libFuzzer, so any compiler and every CI run replays the corpus (and each
// past crash saved into it).
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "tests/fuzz/fuzz_target.h"

namespace fs = std::filesystem;

namespace {

std::vector<uint8_t> read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace

// Usage: walship-fuzz-replay-<target> DIR_OR_FILE...
// Exit 0 when every input ran and every valid-* input was accepted.
int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR_OR_FILE...\n", argv[0]);
    return 2;
  }
  std::vector<fs::path> inputs;
  for (int i = 1; i < argc; ++i) {
    const fs::path arg = argv[i];
    std::error_code ec;
    if (fs::is_directory(arg, ec)) {
      for (const fs::directory_entry& entry : fs::directory_iterator(arg)) {
        if (entry.is_regular_file()) inputs.push_back(entry.path());
      }
    } else if (fs::is_regular_file(arg, ec)) {
      inputs.push_back(arg);
    } else {
      std::fprintf(stderr, "%s: no such corpus file or directory\n", arg.c_str());
      return 2;
    }
  }
  if (inputs.empty()) {
    // An empty corpus would make this test pass while replaying nothing.
    std::fprintf(stderr, "no corpus files found\n");
    return 1;
  }
  std::sort(inputs.begin(), inputs.end());
  int failures = 0;
  size_t valid = 0;
  for (const fs::path& path : inputs) {
    const std::vector<uint8_t> data = read_file(path);
    // Print first: if the target crashes, the last line names the input.
    std::fprintf(stderr, "replaying %s (%zu bytes)\n", path.c_str(), data.size());
    LLVMFuzzerTestOneInput(data.data(), data.size());
    if (path.filename().string().starts_with("valid-")) {
      ++valid;
      std::string why;
      if (!fuzz_accepts(data.data(), data.size(), &why)) {
        std::fprintf(stderr, "FAILED: %s is a valid-* seed but was rejected: %s\n", path.c_str(),
                     why.c_str());
        ++failures;
      }
    }
  }
  std::fprintf(stderr, "replayed %zu inputs (%zu valid-* seeds), %d failures\n", inputs.size(), valid,
               failures);
  return failures == 0 ? 0 : 1;
}
