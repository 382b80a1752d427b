// Errors carry a message a person can act on and the exit code DESIGN.md
// assigns to them. They are thrown anywhere and caught once, in cmd/main.cpp.
#pragma once

#include <stdexcept>
#include <string>

namespace walship {

enum class ExitCode : int {
  ok = 0,
  failure = 1,
  usage = 2,
  verify_problem = 3,
  fenced = 4,
};

class Error : public std::runtime_error {
 public:
  Error(ExitCode code, const std::string& message) : std::runtime_error(message), m_code(code) {}
  ExitCode code() const { return m_code; }

 private:
  ExitCode m_code;
};

// Bad argument, bad config, missing input file: exit 2.
class UsageError : public Error {
 public:
  explicit UsageError(const std::string& message) : Error(ExitCode::usage, message) {}
};

// The work could not be done (I/O, network, corrupt replica): exit 1.
class Failure : public Error {
 public:
  explicit Failure(const std::string& message) : Error(ExitCode::failure, message) {}
};

// A storage operation failed. `transient` says whether retrying may help
// (timeouts, 5xx, throttling, connection resets) or not (auth, bad request).
class StorageError : public Failure {
 public:
  StorageError(const std::string& message, bool transient) : Failure(message), m_transient(transient) {}
  bool transient() const { return m_transient; }

 private:
  bool m_transient;
};

// The replica belongs to another writer, this writer lost it, or the local
// database holds writes the replica never got (DESIGN.md, "Fencing"): exit 4.
class FencedError : public Error {
 public:
  explicit FencedError(const std::string& message) : Error(ExitCode::fenced, message) {}
};

// "<what>: <strerror(errno)>", for messages about a failed system call.
std::string errno_message(const std::string& what, int err);

}  // namespace walship
