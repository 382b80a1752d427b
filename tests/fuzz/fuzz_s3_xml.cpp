// Feeds arbitrary bytes to the parsers of S3's XML answers (s3_xml): a
// ListObjectsV2 page, an error, a CreateMultipartUpload result and a
// DeleteObjects result all come from the network. Beyond "no crash", a
// rejection must be a walship Failure (which the backend turns into a
// transient StorageError), never another exception. "Accepted" means the
// bytes parse as a listing page.
#include <cstdlib>
#include <string>

#include "backends/s3/s3_xml.h"
#include "lib/util/error.h"
#include "tests/fuzz/fuzz_target.h"

using namespace walship;

bool fuzz_accepts(const uint8_t* data, size_t size, std::string* why) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  (void)s3::parse_error(text);  // never throws
  try {
    (void)s3::parse_upload_id(text);
  } catch (const Failure&) {
  }
  try {
    (void)s3::parse_delete_result(text);
  } catch (const Failure&) {
  }
  try {
    const s3::ListPage page = s3::parse_list_page(text);
    for (const s3::ListPage::Entry& entry : page.entries) {
      if (entry.key.empty()) std::abort();
    }
    return true;
  } catch (const Failure& e) {
    if (why) *why = e.what();
    return false;
  }
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz_accepts(data, size);
  return 0;
}
