// The signal at each phase of a command: while a restore writes its temp
// file, between a commit's rename and its cleanup, while following (a
// graceful stop through the pipe), and while stopping (a second signal).
// Signals are raised in-process (the handler runs before raise() returns);
// where the signal must kill, in a forked child.
#include <dirent.h>
#include <doctest.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <string>
#include <vector>

#include "lib/util/error.h"
#include "lib/util/fs.h"
#include "lib/util/signals.h"
#include "replica_builder.h"

using namespace walship;

namespace {

std::vector<std::string> names_in(const std::string& dir) {
  std::vector<std::string> names;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (const dirent* e = ::readdir(d)) {
      const std::string name = e->d_name;
      if (name != "." && name != "..") names.push_back(name);
    }
    ::closedir(d);
  }
  return names;
}

// Runs `body` in a child; returns its wait status. The child exits 0 if
// `body` returns (nothing killed it), 99 if it threw.
template <class Body>
int in_child(Body body) {
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    try {
      body();
    } catch (...) {
      ::_exit(99);
    }
    ::_exit(0);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  return status;
}

bool killed_by(int status, int sig) { return WIFSIGNALED(status) && WTERMSIG(status) == sig; }

void write_text(int fd, const std::string& text) {
  REQUIRE(::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
}

}  // namespace

TEST_CASE("a stop signal while a restore writes its temp file removes it and kills with the signal") {
  test::ScratchDir dir;
  const std::string db = dir.path() + "/restored.db";
  for (int sig : k_stop_signals) {
    CAPTURE(sig);
    const int status = in_child([&] {
      const SignalPipe signals(k_stop_signals, TempFilesOnStop::remove_and_die);
      TempFile temp(db);
      write_text(temp.fd(), "half a database");
      ::raise(sig);
    });
    CHECK(killed_by(status, sig));
    CHECK(names_in(dir.path()).empty());  // no temp file, no database
  }
}

TEST_CASE("restore and snapshot die of a stop signal, removing their temp files") {
  test::ScratchDir dir;
  const std::string db = dir.path() + "/restored.db";
  const int with_temp = in_child([&] {
    die_on_stop_signals();
    TempFile temp(db);
    write_text(temp.fd(), "half a database");
    ::raise(SIGINT);
  });
  CHECK(killed_by(with_temp, SIGINT));
  CHECK(names_in(dir.path()).empty());
  // With nothing to clean up, the signal still ends the command.
  const int without = in_child([] {
    die_on_stop_signals();
    ::raise(SIGTERM);
  });
  CHECK(killed_by(without, SIGTERM));
}

TEST_CASE("a stop signal between a commit's rename and its cleanup waits, then is a graceful stop") {
  test::ScratchDir dir;
  const std::string db = dir.path() + "/restored.db";
  SignalPipe signals(k_stop_signals, TempFilesOnStop::remove_and_die);
  TempFile temp(db);
  write_text(temp.fd(), "a whole database");
  temp.close();
  const int slot = register_temp_file(temp.path());  // as TempFile holds it until the rename
  {
    const StopSignalsBlocked blocked;
    ::raise(SIGTERM);  // pending: not handled while blocked
    CHECK(signals.next() == 0);
    REQUIRE(::rename(temp.path().c_str(), db.c_str()) == 0);
    unregister_temp_file(slot);
  }  // handled here: nothing to clean up any more
  CHECK(signals.next() == SIGTERM);
  CHECK(names_in(dir.path()) == std::vector<std::string>{"restored.db"});
}

TEST_CASE("a stop signal that finds the temp file already renamed is a graceful stop") {
  // As on another thread than the committing one, whose mask does not block it.
  test::ScratchDir dir;
  const std::string db = dir.path() + "/restored.db";
  SignalPipe signals(k_stop_signals, TempFilesOnStop::remove_and_die);
  TempFile temp(db);
  temp.close();
  const int slot = register_temp_file(temp.path());
  REQUIRE(::rename(temp.path().c_str(), db.c_str()) == 0);
  ::raise(SIGTERM);
  unregister_temp_file(slot);
  CHECK(signals.next() == SIGTERM);
  CHECK(names_in(dir.path()) == std::vector<std::string>{"restored.db"});
}

TEST_CASE("a committed temp file leaves a stop signal to the graceful stop") {
  test::ScratchDir dir;
  const std::string db = dir.path() + "/restored.db";
  SignalPipe signals(k_stop_signals, TempFilesOnStop::remove_and_die);
  {
    TempFile temp(db);
    write_text(temp.fd(), "a whole database");
    temp.commit();
  }
  ::raise(SIGINT);
  CHECK(signals.next() == SIGINT);
  CHECK(names_in(dir.path()) == std::vector<std::string>{"restored.db"});
}

TEST_CASE("while following, a stop signal is seen through the pipe") {
  SignalPipe signals(k_stop_signals, TempFilesOnStop::remove_and_die);
  CHECK(signals.next() == 0);
  CHECK(signals.wait(0) == 0);
  ::raise(SIGTERM);
  // wait() returns at once with a signal pending, however long it may wait.
  CHECK(signals.wait(-1) == SIGTERM);
  CHECK(signals.next() == 0);
}

TEST_CASE("while stopping, a second signal is seen too and does not kill") {
  SignalPipe signals(k_stop_signals, TempFilesOnStop::remove_and_die);
  ::raise(SIGTERM);
  CHECK(signals.next() == SIGTERM);
  ::raise(SIGINT);
  ::raise(SIGTERM);
  CHECK(signals.next() == SIGINT);
  CHECK(signals.next() == SIGTERM);
}

TEST_CASE("replicate's signal pipe leaves a follower's temp file to its owner") {
  // A follower inside replicate finishes its restore; replicate ships and stops.
  test::ScratchDir dir;
  SignalPipe signals(k_forwarded_signals, TempFilesOnStop::left_to_owner, true);
  TempFile temp(dir.path() + "/followed.db");
  ::raise(SIGTERM);
  CHECK(signals.next() == SIGTERM);
  CHECK(names_in(dir.path()).size() == 1);
  ::raise(SIGUSR1);
  ::raise(SIGCHLD);
  CHECK(signals.next() == SIGUSR1);
  CHECK(signals.next() == SIGCHLD);
}

TEST_CASE("once the signal pipe is gone, the handlers it replaced are back") {
  test::ScratchDir dir;
  const int status = in_child([&] {
    die_on_stop_signals();  // as restore installs them
    TempFile temp(dir.path() + "/restored.db");
    { const SignalPipe signals(k_stop_signals, TempFilesOnStop::left_to_owner); }
    ::raise(SIGTERM);
  });
  CHECK(killed_by(status, SIGTERM));
  CHECK(names_in(dir.path()).empty());
}

TEST_CASE("one signal pipe at a time") {
  const SignalPipe signals(k_stop_signals, TempFilesOnStop::remove_and_die);
  CHECK_THROWS_AS(SignalPipe(k_stop_signals, TempFilesOnStop::left_to_owner), Failure);
}

TEST_CASE("a forked child gets the default signal action back") {
  SignalPipe signals(k_forwarded_signals, TempFilesOnStop::left_to_owner, true);
  const int status = in_child([] {
    SignalPipe::reset_in_child();
    ::raise(SIGUSR1);
  });
  CHECK(killed_by(status, SIGUSR1));
  // The child's SIGUSR1 never reached the parent's pipe; its end did.
  for (int sig = signals.next(); sig != 0; sig = signals.next()) CHECK(sig == SIGCHLD);
}
