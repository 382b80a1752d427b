// lib/util/fs: the one reader of credentials files (keys, tokens).
#include <doctest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>

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
