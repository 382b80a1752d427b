// The storage interface every backend implements (DESIGN.md, "Storage
// interface"). Keys are relative to the replica prefix of the URL the backend
// was opened with ("snapshots/0000000000000001.snap"). Objects are immutable:
// written once under their final name and visible only when complete.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "lib/util/byte_stream.h"
#include "lib/util/error.h"

namespace walship {

struct ObjectInfo {
  std::string key;
  uint64_t size = 0;
  bool operator==(const ObjectInfo&) const = default;
};

// A byte range of an object; no length means "to the end".
struct ByteRange {
  uint64_t offset = 0;
  std::optional<uint64_t> length;
};

// What `walship doctor` shows about a storage besides what it tries: which
// backend, and where its credentials come from. Never a secret.
struct StorageFacts {
  std::string backend;      // "file", "s3", "gs", "sftp"
  std::string credentials;  // the source, named ("the environment", "key file PATH ..."); "" when none needed
  // When the current temporary credentials expire (ms since the epoch); 0:
  // they do not, or none were fetched yet.
  uint64_t credentials_expire_ms = 0;
};

// Failures throw StorageError, whose transient() tells RetryingStorage whether
// to try again. Not-found is a normal result, never an exception.
class Storage {
 public:
  virtual ~Storage() = default;

  // The URL this storage was opened with, credentials removed: safe to log.
  virtual std::string url() const = 0;

  // Writes the whole object; replaces an existing one with the same key.
  virtual void put(const std::string& key, ByteSource& data) = 0;

  // Writes the object only if no object with that key exists; returns false
  // (and writes nothing) if one does. Atomic where atomic_put_if_absent().
  virtual bool put_if_absent(const std::string& key, ByteSource& data) = 0;
  virtual bool atomic_put_if_absent() const { return true; }
  // Empty, or what an operator should know though nothing failed (S3: a
  // credential refresh that failed while the current keys still hold).
  virtual std::string warning() const { return {}; }
  // The transient failure a request is being retried after right now, if
  // any (RetryingStorage; wrappers forward it): what `walship sync` is told
  // while the store is down. Any thread.
  virtual std::string retrying_error() const { return {}; }
  // The backend and its credentials' source (after an operation, for the
  // temporary credentials it fetched).
  virtual StorageFacts facts() const { return {}; }

  // Streams the object (or a range of it) into `out`; false if it does not exist.
  virtual bool get(const std::string& key, ByteSink& out, const ByteRange& range = {}) = 0;

  // Every object whose key starts with `prefix`, sorted by key, all pages.
  virtual std::vector<ObjectInfo> list(const std::string& prefix) = 0;

  // Removes the objects; keys that do not exist are ignored.
  virtual void remove(const std::vector<std::string>& keys) = 0;
};

}  // namespace walship
