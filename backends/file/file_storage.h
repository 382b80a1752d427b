// The file:// backend: objects are files under a root directory, keys are
// paths relative to it. Local disks, NFS mounts and bind-mounted volumes all
// look like this, and it is the backend the tests run without any server.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "lib/storage/storage.h"

namespace walship {

class FileStorage : public Storage {
 public:
  // Reads and writes are done in chunks of this size, so a multi-GiB object
  // never sits in memory.
  static constexpr size_t k_chunk_size = size_t{1} << 20;

  // `root` is an absolute directory path (trailing and doubled slashes are
  // dropped). It need not exist: list() then returns nothing and the first
  // put creates it, with any missing parents.
  explicit FileStorage(const std::string& root);

  const std::string& root() const { return m_root; }

  // "file://" + the percent-encoded root.
  std::string url() const override;
  StorageFacts facts() const override { return {"file", "", 0}; }

  // Writes `.<name>.walship-tmp-<random>` beside the object, fsyncs it,
  // renames it onto the key and fsyncs the directory, so the object is either
  // absent, the old one, or the whole new one, even across a power loss.
  // Missing directories are created and their parents fsync'ed.
  void put(const std::string& key, ByteSource& data) override;

  // Writes and fsyncs a temp file as put() does, then link(2)s it to the
  // key: link fails with EEXIST if any writer got there first, in this or
  // another process or host sharing the filesystem, so exactly one wins and
  // the winner's bytes are complete when they become visible.
  bool put_if_absent(const std::string& key, ByteSource& data) override;

  // Streams the range in k_chunk_size pieces; a range past the end is clipped
  // (an offset at or past the end delivers nothing). False if there is no
  // regular file at the key.
  bool get(const std::string& key, ByteSink& out, const ByteRange& range = {}) override;

  // Walks the directories under the prefix; temp files, symlinks and other
  // non-regular files are not objects and are skipped.
  std::vector<ObjectInfo> list(const std::string& prefix) override;

  // Unlinks each key, then removes directories the removal left empty (never
  // the root) and fsyncs what it changed. Missing keys are ignored.
  void remove(const std::vector<std::string>& keys) override;

 private:
  // Validates the key (Failure on a bad one) and returns its file path.
  std::string object_path(const std::string& key) const;
  std::string object_url(const std::string& key) const;
  std::string join(const std::string& relative) const;
  void walk(const std::string& dir, const std::string& key_prefix, const std::string& prefix,
            std::vector<ObjectInfo>& out) const;

  std::string m_root;
  std::string m_url;
};

}  // namespace walship
