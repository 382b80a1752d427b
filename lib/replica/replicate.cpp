#include "lib/replica/replicate.h"

#include <dirent.h>
#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <mutex>
#include <set>
#include <thread>

#include "lib/replica/counting_storage.h"
#include "lib/replica/follower.h"
#include "lib/replica/replicator.h"
#include "lib/sqlite/sqlite.h"
#include "lib/util/error.h"
#include "lib/util/fs.h"
#include "lib/util/log.h"
#include "lib/util/time.h"

namespace walship {

namespace {

// Without any file event, a database is still looked at this often: a local
// check of the WAL (no requests), in case an event was missed.
constexpr int64_t k_safety_poll_ms = 30'000;
// While the last sync interval shipped this many pages (8 MiB of 4 KiB
// pages) or more, steps come every quarter of the interval: in a write flood,
// smaller ships keep a commit's wait for the replica near the interval.
constexpr uint64_t k_flood_pages = 2048;
constexpr int64_t k_max_retry_ms = 60'000;
constexpr int k_forwarded_signals[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};

int g_signal_pipe[2] = {-1, -1};

void on_signal(int sig) {
  const int saved = errno;
  const auto byte = static_cast<unsigned char>(sig);
  [[maybe_unused]] const ssize_t n = ::write(g_signal_pipe[1], &byte, 1);
  errno = saved;
}

void make_pipe(int fds[2]) {
  if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0)
    throw Failure(std::string("unable to create a pipe: ") + std::strerror(errno));
}

// A fixed set of threads running jobs in FIFO order.
class WorkerPool {
 public:
  explicit WorkerPool(int n) {
    for (int i = 0; i < n; ++i) m_threads.emplace_back([this] { work(); });
  }
  ~WorkerPool() {
    {
      std::lock_guard lock(m_mutex);
      m_stop = true;
    }
    m_cv.notify_all();
    for (std::thread& t : m_threads) t.join();
  }
  void submit(std::function<void()> job) {
    {
      std::lock_guard lock(m_mutex);
      m_jobs.push_back(std::move(job));
    }
    m_cv.notify_one();
  }

 private:
  void work() {
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock lock(m_mutex);
        m_cv.wait(lock, [this] { return m_stop || !m_jobs.empty(); });
        if (m_jobs.empty()) return;
        job = std::move(m_jobs.front());
        m_jobs.pop_front();
      }
      job();
    }
  }

  std::mutex m_mutex;
  std::condition_variable m_cv;
  std::deque<std::function<void()>> m_jobs;
  bool m_stop = false;
  std::vector<std::thread> m_threads;
};

struct Entry {
  std::unique_ptr<Replicator> replicator;
  ReplicateMonitor* monitor = nullptr;
  int64_t interval_ms = 1000;
  bool from_directory = false;
  // Main-thread bookkeeping; the worker only touches `replicator` while busy.
  bool busy = false;
  bool dirty = true;
  bool flooding = false;  // the last interval shipped k_flood_pages or more
  int64_t flood_window_start = 0;
  uint64_t flood_window_pages = 0;  // shipped_pages() at flood_window_start
  int64_t last_start = 0;
  std::optional<int64_t> timer_due;
  int failures = 0;
  int64_t retry_due = 0;
  int64_t poll_due = 0;
  bool fatal = false;   // a usage error: never retried
  bool absent = false;  // waited for: not created (in WAL mode) yet
  bool warned_not_wal = false;
  // For the lag on /metrics: when walship noticed the oldest change of the
  // WAL that no step has covered yet, and (while busy) the one the running
  // step covers. 0: none.
  uint64_t changed_ms = 0;
  uint64_t covering_ms = 0;

  int64_t due(int64_t now) const {
    if (fatal || absent) return INT64_MAX;
    if (failures > 0) return retry_due;
    int64_t t = poll_due;
    if (dirty) t = std::min(t, std::max(now, last_start + (flooding ? interval_ms / 4 : interval_ms)));
    if (timer_due) t = std::min(t, *timer_due);
    return t;
  }
};

// A step's outcome; without `entry`, a follower's start-up usage error.
struct StepResult {
  Entry* entry = nullptr;
  std::optional<int64_t> timer;
  std::string error;
  bool usage = false;
  bool shipped = false;  // the step shipped a delta
};

// A database followed in this process (role = "serve-replica").
struct FollowerEntry {
  FollowerConfig config;
  std::unique_ptr<Storage> storage;
  FollowMonitor* monitor = nullptr;
  std::thread thread;
};

bool is_wal_database_file(const std::string& path, bool accept_rollback) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) return false;
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) return false;
  std::array<std::byte, 100> header{};
  if (pread_full(fd.get(), header, 0, path) != header.size()) return false;
  if (!sqlite::has_sqlite_header(header)) return false;
  // Bytes 18 and 19 (file format write/read version) are 2 in WAL mode.
  const bool wal = header[18] == std::byte{2} && header[19] == std::byte{2};
  return wal || accept_rollback;
}

// Missing, or created by SQLite but not written yet (no header).
bool not_created_yet(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return errno == ENOENT;
  return S_ISREG(st.st_mode) && st.st_size < 100;
}

bool ignored_name(const std::string& name) {
  return name.empty() || name[0] == '.' || name.ends_with("-wal") || name.ends_with("-shm") ||
         name.ends_with("-journal") || name.ends_with("-walship");
}

class ReplicateLoop {
 public:
  ReplicateLoop(const ReplicateRun& run, const OpenStorageFn& open_storage)
      : m_run(run),
        m_open_storage(open_storage),
        m_board(run.board ? *run.board : m_own_board),
        m_pool(std::max(1, run.workers)) {
    make_pipe(g_signal_pipe);
    make_pipe(m_done_pipe);
    make_pipe(m_follow_stop);
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    for (int sig : k_forwarded_signals) ::sigaction(sig, &sa, nullptr);
    ::sigaction(SIGCHLD, &sa, nullptr);
    m_inotify.reset(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
    if (!m_inotify) throw Failure(std::string("unable to watch files (inotify): ") + std::strerror(errno));
  }

  ~ReplicateLoop() {
    stop_followers();
    ::close(m_follow_stop[0]);
    ::close(m_follow_stop[1]);
    ::close(g_signal_pipe[0]);
    ::close(g_signal_pipe[1]);
    g_signal_pipe[0] = g_signal_pipe[1] = -1;
    ::close(m_done_pipe[0]);
    ::close(m_done_pipe[1]);
  }

  int run() {
    for (const DatabaseConfig& db : m_run.config.databases) {
      Entry& e = add_database(db.path, db.replicas, db.settings, false);
      if (m_run.wait_for_databases && not_created_yet(e.replicator->db_path())) {
        e.absent = true;
        log(LogLevel::info, "waiting for the database to be created", {{"db", e.replicator->db_path()}});
      }
    }
    for (const DirectoryConfig& dir : m_run.config.directories) {
      watch(dir.path, &dir);
      scan_directory(dir);
    }
    for (const FollowerConfig& follower : m_run.config.followers) {
      auto entry = std::make_unique<FollowerEntry>();
      entry->config = follower;
      entry->storage = m_open_storage(follower.replica.url, follower.replica.settings);
      entry->monitor = &m_board.add_follower();
      m_followers.push_back(std::move(entry));
    }
    m_board.set_ready();
    log(LogLevel::info, "replicate started",
        {{"databases", std::to_string(m_entries.size())},
         {"followers", std::to_string(m_followers.size())},
         {"workers", std::to_string(m_run.workers)}});

    // First round: every database starts (initial snapshot, resume or
    // rehash) before the app runs, and a configuration problem stops here.
    dispatch_due();
    while (busy_count() > 0) pump(-1);
    m_initial_round = false;
    // The first round's snapshots freed their compression buffers; give the
    // memory back rather than keep it for the process's lifetime.
    ::malloc_trim(0);
    if (log_enabled(LogLevel::debug)) {
      log(LogLevel::debug, "started every database",
          {{"databases", std::to_string(m_entries.size())},
           {"sqlite_bytes", std::to_string(sqlite3_memory_used())}});
    }
    if (!m_first_usage_error.empty()) {
      finish_all(true);
      throw UsageError(m_first_usage_error);
    }
    if (!m_stop && !m_run.exec_argv.empty()) spawn_child();
    if (!m_stop) start_followers();

    while (!m_stop) {
      dispatch_due();
      pump(timeout_ms());
    }
    // Followers stop between transactions while the last ship runs.
    const char byte = 1;
    [[maybe_unused]] const ssize_t n = ::write(m_follow_stop[1], &byte, 1);
    while (busy_count() > 0) pump(-1);
    const bool shipped = finish_all(false);
    stop_followers();
    if (!m_first_usage_error.empty()) throw UsageError(m_first_usage_error);
    if (m_child_status) {
      const int status = *m_child_status;
      return WIFEXITED(status) ? WEXITSTATUS(status) : WIFSIGNALED(status) ? 128 + WTERMSIG(status) : 1;
    }
    return shipped ? 0 : 1;
  }

 private:
  Entry& add_database(const std::string& given_path, const std::vector<ReplicaConfig>& replicas,
                      const DatabaseSettings& settings, bool from_directory) {
    // File events name files by directory + name: match them on one spelling.
    const std::string path = std::filesystem::absolute(given_path).lexically_normal().string();
    if (const auto it = m_by_path.find(path); it != m_by_path.end()) return *it->second;
    std::vector<std::unique_ptr<Storage>> storages;
    for (const ReplicaConfig& replica : replicas)
      storages.push_back(m_open_storage(replica.url, replica.settings));
    ReplicateMonitor& monitor = m_board.add_replicate(path);
    for (size_t i = 0; i < storages.size(); ++i) {
      StorageCounters& counters = monitor.storage_counters(storage_backend_of(replicas[i].url));
      storages[i] = std::make_unique<CountingStorage>(std::move(storages[i]), counters);
    }
    ReplicatorOptions options = settings.replicator;
    options.db_path = path;
    auto entry = std::make_unique<Entry>();
    entry->monitor = &monitor;
    entry->replicator = std::make_unique<Replicator>(options, std::move(storages), &monitor);
    entry->interval_ms = settings.sync_interval_ms;
    entry->from_directory = from_directory;
    m_by_path[path] = entry.get();
    watch(dir_name(path), nullptr);
    m_entries.push_back(std::move(entry));
    return *m_entries.back();
  }

  void watch(const std::string& dir, const DirectoryConfig* directory) {
    for (auto& [wd, w] : m_watches) {
      if (w.dir == dir) {
        if (directory) w.directory = directory;
        return;
      }
    }
    const int wd = ::inotify_add_watch(m_inotify.get(), dir.c_str(),
                                       IN_CREATE | IN_MOVED_TO | IN_DELETE | IN_CLOSE_WRITE);
    if (wd < 0) {
      throw UsageError("unable to watch directory '" + dir + "': " + std::strerror(errno) +
                       (errno == ENOSPC ? " (raise fs.inotify.max_user_watches)" : ""));
    }
    m_watches[wd] = Watch{dir, directory};
  }

  // Watches the database's WAL for the next write, once (IN_ONESHOT): a busy
  // app then raises one event per step instead of one per write, which the
  // kernel would otherwise queue on every write() of the app. Armed before
  // each step, so a commit during or after it is never missed. A WAL that
  // does not exist yet is noticed by the directory watch when it appears.
  void arm_wal_watch(Entry& entry) {
    const std::string wal = entry.replicator->db_path() + "-wal";
    const int wd = ::inotify_add_watch(m_inotify.get(), wal.c_str(), IN_MODIFY | IN_ONESHOT);
    if (wd >= 0) m_wal_watches[wd] = &entry;
  }

  void consider_file(const DirectoryConfig& dir, const std::string& name) {
    if (ignored_name(name)) return;
    const std::string path = dir.path + "/" + name;
    if (m_by_path.contains(path)) return;
    if (!is_wal_database_file(path, dir.settings.replicator.enable_wal)) {
      if (is_wal_database_file(path, true) && m_skipped.insert(path).second) {
        log(LogLevel::warn, "skipping a database that is not in WAL mode (set enable-wal to switch it)",
            {{"db", path}});
      }
      return;
    }
    m_skipped.erase(path);
    ReplicaConfig replica = dir.replica;
    replica.url = join_replica_url(dir.replica.url, name);
    try {
      add_database(path, {replica}, dir.settings, true);
      log(LogLevel::info, "found a database", {{"db", path}});
    } catch (const Error& e) {
      log(LogLevel::error, "unable to replicate a database of the directory",
          {{"db", path}, {"error", e.what()}});
    }
  }

  void scan_directory(const DirectoryConfig& dir) {
    DIR* d = ::opendir(dir.path.c_str());
    if (!d) throw UsageError("unable to read directory '" + dir.path + "': " + std::strerror(errno));
    std::vector<std::string> names;
    while (dirent* e = ::readdir(d)) names.emplace_back(e->d_name);
    ::closedir(d);
    std::sort(names.begin(), names.end());
    for (const std::string& name : names) consider_file(dir, name);
  }

  int busy_count() const {
    int n = 0;
    for (const auto& e : m_entries) n += e->busy ? 1 : 0;
    return n;
  }

  int timeout_ms() const {
    const int64_t now = static_cast<int64_t>(now_ms());
    int64_t next = INT64_MAX;
    for (const auto& e : m_entries) {
      if (!e->busy) next = std::min(next, e->due(now));
    }
    if (next == INT64_MAX) return -1;
    return static_cast<int>(std::clamp<int64_t>(next - now, 0, 3'600'000));
  }

  void dispatch_due() {
    const int64_t now = static_cast<int64_t>(now_ms());
    for (const auto& entry : m_entries) {
      if (entry->busy || entry->due(now) > now) continue;
      Entry* e = entry.get();
      e->busy = true;
      e->dirty = false;
      e->last_start = now;
      e->poll_due = now + k_safety_poll_ms;
      e->covering_ms = e->changed_ms;
      e->changed_ms = 0;
      arm_wal_watch(*e);
      m_pool.submit([this, e] {
        StepResult result;
        result.entry = e;
        const uint64_t shipped_before = e->monitor->shipped_deltas();
        try {
          result.timer = e->replicator->step(static_cast<int64_t>(now_ms()));
          result.shipped = e->monitor->shipped_deltas() != shipped_before;
        } catch (const UsageError& x) {
          result.error = x.what();
          result.usage = true;
        } catch (const std::exception& x) {
          result.error = x.what();
        }
        post(std::move(result));
      });
    }
  }

  void post(StepResult result) {
    {
      std::lock_guard lock(m_results_mutex);
      m_results.push_back(std::move(result));
    }
    const char byte = 1;
    [[maybe_unused]] const ssize_t n = ::write(m_done_pipe[1], &byte, 1);
  }

  void handle_results() {
    std::vector<StepResult> results;
    {
      std::lock_guard lock(m_results_mutex);
      results.swap(m_results);
    }
    const int64_t now = static_cast<int64_t>(now_ms());
    for (StepResult& r : results) {
      if (!r.entry) {
        // A follower that cannot start (its database is replicated or
        // followed by another process, not in WAL mode...): the command's
        // one error line once everything stopped.
        if (m_first_usage_error.empty()) m_first_usage_error = r.error;
        m_stop = true;
        continue;
      }
      Entry& e = *r.entry;
      e.busy = false;
      report_step(e, r, now);
      if (r.error.empty()) {
        e.failures = 0;
        e.timer_due = r.timer;
        if (now >= e.flood_window_start + e.interval_ms) {
          const uint64_t pages = e.replicator->shipped_pages();
          e.flooding = pages - e.flood_window_pages >= k_flood_pages;
          e.flood_window_start = now;
          e.flood_window_pages = pages;
        }
        continue;
      }
      if (r.usage && m_initial_round) {
        // A configured database that cannot be replicated stops the start
        // (the error is the command's one line); one found in a directory is
        // left out.
        e.fatal = true;
        if (m_first_usage_error.empty() && !e.from_directory) m_first_usage_error = r.error;
        if (e.from_directory) {
          log(LogLevel::error, "unable to replicate", {{"db", e.replicator->db_path()}, {"error", r.error}});
        }
        continue;
      }
      e.failures += 1;
      const int64_t delay = std::min<int64_t>(k_max_retry_ms, int64_t{1000} << std::min(e.failures - 1, 6));
      e.retry_due = now + delay;
      log(LogLevel::error, "unable to replicate; nothing is lost, retrying",
          {{"db", e.replicator->db_path()},
           {"error", r.error},
           {"retry_in", std::to_string(delay / 1000) + "s"}});
    }
  }

  // What a finished step changes on /metrics and /healthz.
  void report_step(Entry& e, const StepResult& r, int64_t now) {
    const uint64_t covered = e.covering_ms;
    e.covering_ms = 0;
    if (!r.error.empty() && covered != 0) e.changed_ms = covered;  // still not shipped, and older
    e.monitor->update([&](ReplicateStatus& s) {
      s.oldest_unshipped_ms = e.changed_ms;
      if (!r.error.empty()) {
        s.last_error = r.error;
        ++s.step_errors;
        return;
      }
      s.started = true;
      s.last_error.clear();
      s.last_ok_ms = static_cast<uint64_t>(now);
      if (r.shipped && covered != 0 && static_cast<uint64_t>(now) >= covered)
        s.commit_to_durable.observe(static_cast<double>(static_cast<uint64_t>(now) - covered) / 1000.0);
    });
  }

  // The WAL (or the database's folder entry) changed: something to ship.
  void mark_changed(Entry& e) {
    e.dirty = true;
    if (e.changed_ms != 0) return;
    e.changed_ms = now_ms();
    if (e.covering_ms == 0)
      e.monitor->update([&](ReplicateStatus& s) { s.oldest_unshipped_ms = e.changed_ms; });
  }

  void start_followers() {
    for (auto& follower : m_followers) {
      FollowerEntry* f = follower.get();
      f->thread = std::thread([this, f] { follow(*f); });
    }
  }

  void stop_followers() {
    const char byte = 1;
    [[maybe_unused]] const ssize_t n = ::write(m_follow_stop[1], &byte, 1);
    for (auto& follower : m_followers) {
      if (follower->thread.joinable()) follower->thread.join();
    }
  }

  // A follower's thread: follows until the stop, starting again after a
  // failure (an empty or unreachable replica, say) with a growing delay.
  void follow(FollowerEntry& f) {
    FollowOptions options = f.config.options;
    options.stop_fd = m_follow_stop[0];
    int64_t delay = 1000;
    for (bool first = true;; first = false) {
      std::string error;
      try {
        run_serve_replica(options, *f.storage, *f.monitor);
        return;  // stopped
      } catch (const UsageError& e) {
        f.monitor->update([&](FollowStatus& s) { s.last_error = e.what(); });
        if (first) {
          StepResult result;
          result.error = e.what();
          result.usage = true;
          post(std::move(result));
        } else {
          log(LogLevel::error, "unable to follow; stopped following this database",
              {{"db", options.db_path}, {"error", e.what()}});
        }
        return;
      } catch (const std::exception& e) {
        error = e.what();
      }
      f.monitor->update([&](FollowStatus& s) { s.last_error = error; });
      log(LogLevel::error, "unable to follow; retrying",
          {{"db", options.db_path}, {"error", error}, {"retry_in", std::to_string(delay / 1000) + "s"}});
      pollfd fd{m_follow_stop[0], POLLIN, 0};
      if (::poll(&fd, 1, static_cast<int>(delay)) > 0) return;
      delay = std::min<int64_t>(delay * 2, k_max_retry_ms);
    }
  }

  void handle_signals() {
    unsigned char sigs[64];
    ssize_t n;
    while ((n = ::read(g_signal_pipe[0], sigs, sizeof sigs)) > 0) {
      for (ssize_t i = 0; i < n; ++i) {
        const int sig = sigs[i];
        if (sig == SIGCHLD) {
          reap_child();
          continue;
        }
        if (m_child_pid > 0) {
          ::kill(m_child_pid, sig);  // the app decides; walship stops when it exits
          continue;
        }
        if (sig == SIGTERM || sig == SIGINT || sig == SIGQUIT) {
          if (m_stop) {
            log(LogLevel::warn, "already shipping what is committed before exiting; SIGKILL abandons it");
          } else {
            log(LogLevel::info, "stopping: shipping what is committed", {{"signal", strsignal(sig)}});
          }
          m_stop = true;
        } else {
          log(LogLevel::info, "signal ignored (replicate stops on SIGTERM or SIGINT)",
              {{"signal", strsignal(sig)}});
        }
      }
    }
  }

  void handle_inotify() {
    alignas(inotify_event) char buffer[65536];
    ssize_t n;
    while ((n = ::read(m_inotify.get(), buffer, sizeof buffer)) > 0) {
      for (ssize_t off = 0; off < n;) {
        const auto* ev = reinterpret_cast<const inotify_event*>(buffer + off);
        off += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
        if (ev->mask & IN_Q_OVERFLOW) {
          for (const auto& e : m_entries) mark_changed(*e);
          continue;
        }
        if (const auto wal = m_wal_watches.find(ev->wd); wal != m_wal_watches.end()) {
          if (ev->mask & IN_MODIFY) mark_changed(*wal->second);
          if (ev->mask & IN_IGNORED) m_wal_watches.erase(wal);  // the one-shot watch is spent
          continue;
        }
        const auto w = m_watches.find(ev->wd);
        if (w == m_watches.end() || ev->len == 0) continue;
        const std::string name(ev->name);
        std::string path = w->second.dir + "/" + name;
        if (path.ends_with("-wal")) path.resize(path.size() - 4);
        if (const auto it = m_by_path.find(path); it != m_by_path.end()) {
          Entry& e = *it->second;
          mark_changed(e);
          // A waited-for database counts once the app made it a WAL database
          // (its -wal appearing is the event for that).
          if (e.absent && is_wal_database_file(path, e.replicator->enable_wal())) {
            e.absent = false;
            log(LogLevel::info, "the database was created", {{"db", path}});
          } else if (e.absent && !e.warned_not_wal && is_wal_database_file(path, true)) {
            e.warned_not_wal = true;
            log(LogLevel::warn,
                "the database is not in WAL mode; waiting for the app to switch it (or set --enable-wal)",
                {{"db", path}});
          }
        } else if (w->second.directory && !m_stop) {
          consider_file(*w->second.directory, name);
        }
      }
    }
  }

  void pump(int timeout) {
    pollfd fds[3] = {
        {g_signal_pipe[0], POLLIN, 0}, {m_done_pipe[0], POLLIN, 0}, {m_inotify.get(), POLLIN, 0}};
    const int rc = ::poll(fds, 3, timeout);
    if (rc < 0 && errno != EINTR) throw Failure(std::string("poll failed: ") + std::strerror(errno));
    char drain[256];
    while (::read(m_done_pipe[0], drain, sizeof drain) > 0) {
    }
    handle_signals();
    handle_results();
    handle_inotify();
  }

  void spawn_child() {
    int status_pipe[2];
    make_pipe(status_pipe);
    const pid_t pid = ::fork();
    if (pid < 0)
      throw Failure(std::string("unable to start the --exec command: fork: ") + std::strerror(errno));
    if (pid == 0) {
      for (int sig : k_forwarded_signals) ::signal(sig, SIG_DFL);
      ::signal(SIGCHLD, SIG_DFL);
      std::vector<char*> argv;
      for (const std::string& arg : m_run.exec_argv) argv.push_back(const_cast<char*>(arg.c_str()));
      argv.push_back(nullptr);
      ::execvp(argv[0], argv.data());
      const int err = errno;
      [[maybe_unused]] const ssize_t n = ::write(status_pipe[1], &err, sizeof err);
      ::_exit(127);
    }
    ::close(status_pipe[1]);
    int err = 0;
    ssize_t n;
    // The pipe closes on a successful exec (O_CLOEXEC); an errno means it failed.
    pollfd pfd{status_pipe[0], POLLIN, 0};
    ::poll(&pfd, 1, -1);
    n = ::read(status_pipe[0], &err, sizeof err);
    ::close(status_pipe[0]);
    m_child_pid = pid;
    if (n == sizeof err) {
      ::waitpid(pid, nullptr, 0);
      m_child_pid = -1;
      finish_all(true);
      throw UsageError("unable to run --exec command '" + m_run.exec_argv[0] + "': " + std::strerror(err));
    }
    log(LogLevel::info, "started the app", {{"command", m_run.exec_argv[0]}, {"pid", std::to_string(pid)}});
  }

  void reap_child() {
    if (m_child_pid <= 0) return;
    int status = 0;
    if (::waitpid(m_child_pid, &status, WNOHANG) != m_child_pid) return;
    m_child_status = status;
    m_child_pid = -1;
    log(LogLevel::info, "the app exited; shipping what is committed",
        {{"status", WIFEXITED(status) ? std::to_string(WEXITSTATUS(status))
                                      : std::string("signal ") + strsignal(WTERMSIG(status))}});
    m_stop = true;
  }

  // The last ship of every database, in parallel; true if all succeeded.
  bool finish_all(bool quiet) {
    std::mutex mutex;
    std::condition_variable cv;
    int pending = 0;
    bool ok = true;
    for (const auto& entry : m_entries) {
      if (entry->fatal) continue;
      // Waited for and never created: nothing to ship. Created, though the
      // event is not read yet: it ships like the others.
      if (entry->absent &&
          !is_wal_database_file(entry->replicator->db_path(), entry->replicator->enable_wal()))
        continue;
      Entry* e = entry.get();
      ++pending;
      m_pool.submit([&, e] {
        std::string error;
        try {
          e->replicator->finish();
        } catch (const std::exception& x) {
          error = x.what();
        }
        std::lock_guard lock(mutex);
        if (!error.empty()) {
          ok = false;
          log(LogLevel::error,
              "unable to ship before exiting: the newest transactions are not in the replica",
              {{"db", e->replicator->db_path()}, {"error", error}});
        }
        --pending;
        cv.notify_all();
      });
    }
    std::unique_lock lock(mutex);
    cv.wait(lock, [&] { return pending == 0; });
    if (!quiet) {
      log(ok ? LogLevel::info : LogLevel::error,
          ok ? "stopped: everything committed is shipped" : "stopped with errors");
    }
    return ok;
  }

  struct Watch {
    std::string dir;
    const DirectoryConfig* directory = nullptr;
  };

  const ReplicateRun& m_run;
  const OpenStorageFn& m_open_storage;
  StatusBoard m_own_board;  // when the run has none
  StatusBoard& m_board;
  std::vector<std::unique_ptr<Entry>> m_entries;
  std::vector<std::unique_ptr<FollowerEntry>> m_followers;
  int m_follow_stop[2] = {-1, -1};  // readable once followers must stop
  std::map<std::string, Entry*> m_by_path;
  std::map<int, Watch> m_watches;
  std::map<int, Entry*> m_wal_watches;
  std::set<std::string> m_skipped;
  UniqueFd m_inotify;
  int m_done_pipe[2] = {-1, -1};
  std::mutex m_results_mutex;
  std::vector<StepResult> m_results;
  bool m_stop = false;
  bool m_initial_round = true;
  std::string m_first_usage_error;
  pid_t m_child_pid = -1;
  std::optional<int> m_child_status;
  WorkerPool m_pool;  // last: its threads are joined before the rest is destroyed
};

}  // namespace

int run_replicate(const ReplicateRun& run, const OpenStorageFn& open_storage) {
  // Each database holds about ten descriptors (two SQLite connections with
  // their -wal and -shm, the WAL and index walship reads, a spool): raise the
  // soft limit to the hard one so a thousand databases fit.
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &limit);
  }
  ReplicateLoop loop(run, open_storage);
  return loop.run();
}

std::vector<std::string> split_command(const std::string& command) {
  std::vector<std::string> words;
  std::string word;
  bool in_word = false;
  char quote = 0;
  for (size_t i = 0; i < command.size(); ++i) {
    const char c = command[i];
    if (quote) {
      if (c == quote) {
        quote = 0;
      } else if (c == '\\' && quote == '"' && i + 1 < command.size()) {
        word += command[++i];
      } else {
        word += c;
      }
    } else if (c == '\'' || c == '"') {
      quote = c;
      in_word = true;
    } else if (c == '\\' && i + 1 < command.size()) {
      word += command[++i];
      in_word = true;
    } else if (c == ' ' || c == '\t' || c == '\n') {
      if (in_word) words.push_back(std::move(word));
      word.clear();
      in_word = false;
    } else {
      word += c;
      in_word = true;
    }
  }
  if (quote)
    throw UsageError("invalid --exec command '" + command + "': unterminated " + std::string(1, quote) +
                     " quote");
  if (in_word) words.push_back(std::move(word));
  if (words.empty())
    throw UsageError("invalid --exec command: it is empty; give the app to run, e.g. --exec \"myapp serve\"");
  return words;
}

namespace {

// RFC 3986 unreserved characters stay, everything else is %XX.
std::string encode_path_segment(const std::string& text) {
  static constexpr char k_hex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += k_hex[c >> 4];
      out += k_hex[c & 15];
    }
  }
  return out;
}

}  // namespace

std::string join_replica_url(const std::string& prefix_url, const std::string& file_name) {
  if (prefix_url.starts_with('/'))
    return (prefix_url.ends_with('/') ? prefix_url : prefix_url + "/") + file_name;
  const size_t query = prefix_url.find('?');
  std::string base = prefix_url.substr(0, query);
  const std::string rest = query == std::string::npos ? "" : prefix_url.substr(query);
  if (!base.ends_with('/')) base += '/';
  return base + encode_path_segment(file_name) + rest;
}

}  // namespace walship
