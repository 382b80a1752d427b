// lib/util/fs: the one reader of credentials files (keys, tokens), and
// pwritev_all.
#include <doctest.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstddef>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <vector>

#include "lib/util/error.h"
#include "lib/util/fs.h"

using namespace walship;

TEST_CASE("a credentials file is read without the white space around it, and a bad one named") {
  char dir[] = "/tmp/walship-fs-XXXXXX";
  REQUIRE(::mkdtemp(dir) != nullptr);
  const std::string token = std::string(dir) + "/token";
  std::ofstream(token) << "  eyJ.a.b\r\n";
  CHECK(read_credentials_file(token, "the token file", CredentialsFileError::storage) == "eyJ.a.b");
  std::ofstream(token) << "\n \n";
  CHECK_THROWS_WITH_AS(read_credentials_file(token, "the token file", CredentialsFileError::usage),
                       ("the token file '" + token + "' is empty").c_str(), UsageError);
  const std::string missing = std::string(dir) + "/missing";
  try {
    read_credentials_file(missing, "the token file", CredentialsFileError::storage);
    FAIL("no error");
  } catch (const StorageError& e) {
    CHECK_FALSE(e.transient());
    CHECK(std::string(e.what()) ==
          "unable to read the token file '" + missing + "': No such file or directory");
  }
  CHECK_THROWS_AS(read_credentials_file(missing, "the key", CredentialsFileError::usage), UsageError);
  std::filesystem::remove_all(dir);
}

TEST_CASE("pwritev_all writes its parts in order at the offset, past IOV_MAX parts and empty ones") {
  char dir[] = "/tmp/walship-fs-XXXXXX";
  REQUIRE(::mkdtemp(dir) != nullptr);
  const std::string path = std::string(dir) + "/file";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  REQUIRE(fd >= 0);
  // Parts of sizes 0..6 bytes, each filled with its own index.
  const size_t count = 3 * IOV_MAX + 5;
  std::vector<std::vector<std::byte>> storage(count);
  std::vector<std::span<const std::byte>> parts;
  std::vector<std::byte> expected(10, std::byte{0xee});
  for (size_t i = 0; i < count; ++i) {
    storage[i].assign(i % 7, static_cast<std::byte>(i));
    parts.emplace_back(storage[i]);
    expected.insert(expected.end(), storage[i].begin(), storage[i].end());
  }
  pwrite_all(fd, std::span(expected).first(10), 0, path);
  pwritev_all(fd, parts, 10, path);
  std::vector<std::byte> got(expected.size() + 1);
  CHECK(pread_full(fd, got, 0, path) == expected.size());
  got.pop_back();
  CHECK(got == expected);
  pwritev_all(fd, {}, 0, path);  // nothing to write: nothing written
  CHECK(std::filesystem::file_size(path) == expected.size());
  ::close(fd);
  const int read_only = ::open(path.c_str(), O_RDONLY);
  CHECK_THROWS_WITH_AS(pwritev_all(read_only, parts, 0, path),
                       ("unable to write '" + path + "': Bad file descriptor").c_str(), Failure);
  ::close(read_only);
  std::filesystem::remove_all(dir);
}
