// The loop of `walship replicate` (replicate.h): the main thread waits on the
// signal pipe (lib/util/signals), file events (dir_watcher) and finished
// steps, asks the schedule (replicate_schedule) which databases are due and
// hands their steps to a fixed pool of workers; followers run a thread each;
// the --exec app is a ChildProcess (child_process); a preemption notice
// (lib/cloud/preemption_notice.h) arrives from the watcher's thread on a pipe.
#include <dirent.h>
#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "lib/config/option_defs.h"
#include "lib/replica/child_process.h"
#include "lib/replica/control_channels.h"
#include "lib/replica/counting_storage.h"
#include "lib/replica/dir_watcher.h"
#include "lib/replica/follower.h"
#include "lib/replica/replicate.h"
#include "lib/replica/replicate_schedule.h"
#include "lib/replica/replicator.h"
#include "lib/sqlite/sqlite.h"
#include "lib/util/error.h"
#include "lib/util/fs.h"
#include "lib/util/log.h"
#include "lib/util/signals.h"
#include "lib/util/time.h"

namespace walship {

namespace {

using schedule::Entry;

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

// A step's outcome; without `entry`, a follower's start-up usage error.
struct StepResult {
  Entry* entry = nullptr;
  std::optional<int64_t> timer;
  std::string error;
  bool usage = false;
  bool permanent = false;           // a StorageError that needs a person (wrong keys, no permission)
  bool fenced = false;              // FencedError: another writer has the replica
  bool shipped = false;             // the step shipped a delta
  uint64_t step = 0;                // its number (Entry::steps)
  std::optional<uint32_t> covered;  // Replicator::covered_change() after it
  bool out_of_descriptors = false;  // the process had none left when it failed
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
        m_signals(k_forwarded_signals, TempFilesOnStop::left_to_owner, true),
        m_pool(std::max(1, run.workers)) {
    make_pipe(m_done_pipe);
    make_pipe(m_follow_stop);
    make_pipe(m_notice_pipe);
  }

  ~ReplicateLoop() {
    m_notice_watcher.reset();  // its thread writes to the pipe below
    ::close(m_notice_pipe[0]);
    ::close(m_notice_pipe[1]);
    stop_followers();
    ::close(m_follow_stop[0]);
    ::close(m_follow_stop[1]);
    ::close(m_done_pipe[0]);
    ::close(m_done_pipe[1]);
  }

  int run() {
    if (m_run.notice_watcher) {
      m_notice_watcher =
          m_run.notice_watcher([this](const PreemptionNotice& notice) { post_notice(notice); });
    }
    add_configured();
    start_databases();
    if (!m_stop && !m_run.exec_argv.empty()) spawn_child();
    if (!m_stop) start_followers();

    while (!m_stop) {
      dispatch_due();
      pump(timeout_ms());
    }
    // A long poll in flight is abandoned while the last ship runs.
    if (m_notice_watcher) m_notice_watcher->stop();
    // Followers stop between transactions while the last ship runs.
    const char byte = 1;
    [[maybe_unused]] const ssize_t n = ::write(m_follow_stop[1], &byte, 1);
    while (busy_count() > 0) pump(-1);
    m_control.take_queued(static_cast<int64_t>(now_ms()));
    const bool shipped = finish_all(false);
    m_control.stopped();
    stop_followers();
    m_notice_watcher.reset();
    if (!m_first_usage_error.empty()) throw UsageError(m_first_usage_error);
    if (!m_fenced_error.empty()) throw FencedError(m_fenced_error);
    if (m_child_status) return ChildProcess::exit_code(*m_child_status);
    return shipped ? 0 : 1;
  }

 private:
  // The configuration's databases, directories (scanned) and followers.
  void add_configured() {
    for (const DatabaseConfig& db : m_run.config.databases) {
      Entry& e = add_database(db.path, db.replicas, db.settings, false);
      if (m_run.wait_for_databases && not_created_yet(e.replicator->db_path())) {
        e.absent = true;
        log(LogLevel::info, "waiting for the database to be created", {{"db", e.replicator->db_path()}});
      }
    }
    for (const DirectoryConfig& dir : m_run.config.directories) {
      if (!dir.settings.control_socket.empty()) {
        throw UsageError("control-socket names one database's socket, not a directory's: each database of '" +
                         dir.path + "' listens at its own DB-walship/control.sock");
      }
      m_watcher.watch_dir(dir.path);
      m_directories[dir.path] = &dir;
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
        {{"databases", m_entries.size()}, {"followers", m_followers.size()}, {"workers", m_run.workers}});
  }

  // First round: every database starts (initial snapshot, resume or
  // rehash) before the app runs, and a configuration problem stops here.
  void start_databases() {
    dispatch_due();
    while (busy_count() > 0) pump(-1);
    m_initial_round = false;
    // The first round's snapshots freed their compression buffers; give the
    // memory back rather than keep it for the process's lifetime.
    ::malloc_trim(0);
    if (log_enabled(LogLevel::debug)) {
      log(LogLevel::debug, "started every database",
          {{"databases", m_entries.size()}, {"sqlite_bytes", sqlite3_memory_used()}});
    }
    if (!m_first_usage_error.empty()) {
      finish_all(true);
      throw UsageError(m_first_usage_error);
    }
    if (!m_first_permanent_error.empty()) {
      finish_all(true);
      throw Failure(m_first_permanent_error);
    }
    if (!m_fenced_error.empty()) {
      finish_all(true);
      throw FencedError(m_fenced_error);
    }
  }

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
    options.take_over = m_run.take_over;
    auto entry = std::make_unique<Entry>();
    entry->monitor = &monitor;
    entry->replicator = std::make_unique<Replicator>(options, std::move(storages), &monitor);
    entry->interval_ms = settings.sync_interval_ms;
    m_control.add(
        *entry, settings.control_socket.empty() ? default_control_socket_path(path) : settings.control_socket,
        !from_directory);
    if (m_noticed) entry->interval_ms = std::min(entry->interval_ms, m_run.notice_sync_interval_ms);
    entry->from_directory = from_directory;
    m_by_path[path] = entry.get();
    m_watcher.watch_dir(dir_name(path));
    m_entries.push_back(std::move(entry));
    return *m_entries.back();
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
    int wait = schedule::wait_ms(m_entries, now);
    if (m_child_kill_due != 0 && m_child.running()) {
      const int64_t left = std::max<int64_t>(m_child_kill_due - now, 0);
      if (wait < 0 || left < wait) wait = static_cast<int>(left);
    }
    if (const std::optional<int64_t> due = m_control.next_due(now)) {
      const int64_t left = std::max<int64_t>(*due - now, 0);
      if (wait < 0 || left < wait) wait = static_cast<int>(left);
    }
    return wait;
  }

  void dispatch_due() {
    const int64_t now = static_cast<int64_t>(now_ms());
    for (const auto& entry : m_entries) {
      if (!schedule::is_due(*entry, now)) continue;
      Entry* e = entry.get();
      schedule::start_step(*e, now);
      // Armed before the step, so a commit during or after it is never missed.
      m_watcher.watch_next_write(e->replicator->db_path() + "-wal");
      m_pool.submit([this, e, step = e->steps] { post(run_step(*e, step)); });
    }
  }

  // On a worker: one step of `e`.
  static StepResult run_step(Entry& e, uint64_t step) {
    StepResult result;
    result.entry = &e;
    result.step = step;
    const uint64_t shipped_before = e.monitor->shipped_deltas();
    try {
      result.timer = e.replicator->step(static_cast<int64_t>(now_ms()));
      result.shipped = e.monitor->shipped_deltas() != shipped_before;
    } catch (const UsageError& x) {
      result.error = x.what();
      result.usage = true;
    } catch (const FencedError& x) {
      result.error = x.what();
      result.fenced = true;
    } catch (const StorageError& x) {
      result.error = x.what();
      result.permanent = !x.transient();
    } catch (const std::exception& x) {
      result.error = x.what();
    }
    result.covered = e.replicator->covered_change();
    if (!result.error.empty()) {
      result.out_of_descriptors = result.error.find(std::strerror(EMFILE)) != std::string::npos ||
                                  result.error.find(std::strerror(ENFILE)) != std::string::npos ||
                                  descriptors_exhausted();
    }
    return result;
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
      report_step(e, r, schedule::end_step(e, !r.error.empty()), now);
      if (r.fenced) {
        fenced(e, r.error);
        continue;
      }
      if (r.error.empty()) {
        schedule::step_succeeded(e, r.timer, e.replicator->shipped_pages(), now);
        open_control(e);
        m_control.step_ended(e, r.error, r.step, r.covered, now);
        continue;
      }
      m_control.step_ended(e, r.error, r.step, r.covered, now);
      // Out of descriptors is the process's trouble, not the database's: retried.
      if ((r.usage || r.permanent) && m_initial_round && !r.out_of_descriptors) {
        // A configured database that cannot be replicated, or whose replica
        // refuses it (wrong keys, no permission), stops the start (the error
        // is the command's one line); one found in a directory is left out.
        // Once started, the same errors are retried: keys may be rotated.
        e.fatal = true;
        std::string& first = r.usage ? m_first_usage_error : m_first_permanent_error;
        if (first.empty() && !e.from_directory) first = r.error;
        if (e.from_directory) {
          log(LogLevel::error, "unable to replicate", {{"db", e.replicator->db_path()}, {"error", r.error}});
        }
        continue;
      }
      const int64_t delay = schedule::step_failed(e, now);
      if (r.out_of_descriptors) report_out_of_descriptors(now);
      log(r.out_of_descriptors ? LogLevel::debug : LogLevel::error,
          "unable to replicate; nothing is lost, retrying",
          {{"db", e.replicator->db_path()},
           {"error", r.error},
           {"retry_in", std::to_string(delay / 1000) + "s"}});
    }
  }

  // Databases failing for want of descriptors say so in one line (every
  // ten minutes while it lasts) instead of one each: with thousands of
  // databases, thousands of "Too many open files" a minute hid the cause.
  void report_out_of_descriptors(int64_t now) {
    if (m_descriptors_reported_ms != 0 && now < m_descriptors_reported_ms + k_descriptors_report_ms) return;
    m_descriptors_reported_ms = now;
    rlimit limit{};
    ::getrlimit(RLIMIT_NOFILE, &limit);
    log(LogLevel::error,
        "out of file descriptors (a database holds about 6 idle, 10 while shipping): the databases that "
        "could not open theirs are retried; raise the limit (systemd: LimitNOFILE=, a shell: ulimit -n) or "
        "replicate fewer databases per process",
        {{"limit",
          limit.rlim_cur == RLIM_INFINITY ? std::string("unlimited") : std::to_string(limit.rlim_cur)},
         {"databases", m_entries.size()}});
  }

  // Another writer has the database's replica, or this node's data is
  // behind it: it is never stepped again, and the process stops (its app
  // too: a zombie app accepting writes that cannot be replicated is worse
  // than a stopped one) and exits 4. A database found in a directory is
  // left out alone.
  void fenced(Entry& e, const std::string& error) {
    e.fatal = true;
    e.monitor->update([](ReplicateStatus& s) { s.fenced = true; });
    m_control.fenced(e, error);
    log(LogLevel::error, "fenced: not writing to this replica",
        {{"db", e.replicator->db_path()}, {"error", error}});
    if (e.from_directory) return;
    if (m_fenced_error.empty()) m_fenced_error = error;
    if (m_child.running()) {
      log(LogLevel::warn, "stopping the app: its writes could not be replicated", {{"pid", m_child.pid()}});
      stop_child(SIGTERM);
    } else {
      m_stop = true;
    }
  }

  // Its control socket, once `e` started; a socket that cannot be what the
  // configuration says stops the start (exit 2).
  void open_control(Entry& e) {
    if (std::optional<std::string> error = m_control.open(e)) {
      e.fatal = true;
      if (m_first_usage_error.empty()) m_first_usage_error = *error;
      m_stop = true;
    }
  }

  // Forwards a stop to the app and gives it --shutdown-timeout to exit
  // before SIGKILL (checked in pump()).
  void stop_child(int sig) {
    m_child.forward(sig);
    if (m_child_kill_due == 0) m_child_kill_due = static_cast<int64_t>(now_ms()) + m_run.shutdown_timeout_ms;
  }

  // What a finished step changes on /metrics and /healthz.
  void report_step(Entry& e, const StepResult& r, uint64_t covered, int64_t now) {
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
    if (schedule::mark_changed(e, now_ms()))
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
      delay = std::min<int64_t>(delay * 2, schedule::k_max_retry_ms);
    }
  }

  // On the watcher's thread: the notice, for the main thread.
  void post_notice(const PreemptionNotice& notice) {
    {
      std::lock_guard lock(m_notice_mutex);
      m_notices.push_back(notice);
    }
    const char byte = 1;
    [[maybe_unused]] const ssize_t n = ::write(m_notice_pipe[1], &byte, 1);
  }

  // A preemption notice: the first ships every database at once, then at
  // the notice interval until the stop; checkpoints; runs --on-notice. Every
  // notice is counted on /metrics.
  void handle_notices() {
    std::vector<PreemptionNotice> notices;
    {
      std::lock_guard lock(m_notice_mutex);
      notices.swap(m_notices);
    }
    for (const PreemptionNotice& notice : notices) {
      m_board.record_notice(notice);
      const bool first = !m_noticed;
      log_notice(
          first ? LogLevel::warn : LogLevel::info,
          first ? "preemption notice: shipping every database now, then at the notice interval until stopped"
                : "another preemption notice",
          notice);
      if (!first) continue;
      m_noticed = true;
      const int64_t now = static_cast<int64_t>(now_ms());
      for (const auto& e : m_entries) {
        e->interval_ms = std::min(e->interval_ms, m_run.notice_sync_interval_ms);
        e->dirty = true;
        e->timer_due = now;
        e->replicator->request_checkpoint();
      }
      run_on_notice();
    }
  }

  // One line: the cloud, what it announced, when (seconds left, when known).
  void log_notice(LogLevel level, std::string_view msg, const PreemptionNotice& notice) const {
    const NoticeDeadline deadline = notice_deadline(notice, now_ms());
    const std::string interval =
        render_option_value(option("notice-sync-interval"), m_run.notice_sync_interval_ms);
    const char* from = notice.estimated ? "the cloud's documented notice"
                       : notice.at_ms   ? "the cloud"
                                        : "none";
    if (deadline.seconds_left) {
      log(level, msg,
          {{"cloud", cloud_name(notice.cloud)},
           {"notice", notice.what},
           {"time", deadline.time},
           {"seconds_left", *deadline.seconds_left},
           {"time_from", from},
           {"notice_sync_interval", interval}});
    } else {
      log(level, msg,
          {{"cloud", cloud_name(notice.cloud)},
           {"notice", notice.what},
           {"time", deadline.time},
           {"time_from", from},
           {"notice_sync_interval", interval}});
    }
  }

  // --on-notice, once; its failure to start or its exit status is logged,
  // never fatal: the shipping matters more than the hook.
  void run_on_notice() {
    if (m_run.on_notice_argv.empty()) return;
    try {
      m_on_notice.spawn(m_run.on_notice_argv, "--on-notice");
      log(LogLevel::info, "started the --on-notice command",
          {{"command", m_run.on_notice_argv[0]}, {"pid", m_on_notice.pid()}});
    } catch (const Error& e) {
      log(LogLevel::error, "unable to run the --on-notice command", {{"error", e.what()}});
    }
  }

  void handle_signals() {
    while (const int sig = m_signals.next()) {
      if (sig == SIGCHLD) {
        if (const std::optional<int> status = m_on_notice.reap()) {
          const bool ok = WIFEXITED(*status) && WEXITSTATUS(*status) == 0;
          log(ok ? LogLevel::info : LogLevel::error,
              ok ? "the --on-notice command finished" : "the --on-notice command failed",
              {{"status", ChildProcess::describe(*status)}});
        }
        if (const std::optional<int> status = m_child.reap()) {
          m_child_status = status;
          log(LogLevel::info, "the app exited; shipping what is committed",
              {{"status", ChildProcess::describe(*status)}});
          m_stop = true;
        }
      } else if (m_child.running() && (sig == SIGTERM || sig == SIGINT || sig == SIGQUIT)) {
        stop_child(sig);  // the app decides, within --shutdown-timeout; walship stops when it exits
      } else if (m_child.running()) {
        m_child.forward(sig);
      } else if (sig == SIGTERM || sig == SIGINT || sig == SIGQUIT) {
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

  void handle_file_events() {
    for (const WatchEvent& ev : m_watcher.read()) {
      switch (ev.kind) {
        case WatchEvent::Kind::overflow:
          for (const auto& e : m_entries) mark_changed(*e);
          break;
        case WatchEvent::Kind::file_written:
          if (const auto it = m_by_path.find(ev.path.substr(0, ev.path.size() - 4)); it != m_by_path.end())
            mark_changed(*it->second);
          break;
        case WatchEvent::Kind::entry_changed: entry_changed(ev.dir, ev.name); break;
      }
    }
  }

  // `name` in watched directory `dir` was created, moved in, deleted or written.
  void entry_changed(const std::string& dir, const std::string& name) {
    std::string path = dir + "/" + name;
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
    } else if (const auto d = m_directories.find(dir); d != m_directories.end() && !m_stop) {
      consider_file(*d->second, name);
    }
  }

  void pump(int timeout) {
    std::vector<pollfd> fds = {{m_signals.fd(), POLLIN, 0},
                               {m_done_pipe[0], POLLIN, 0},
                               {m_watcher.fd(), POLLIN, 0},
                               {m_notice_pipe[0], POLLIN, 0}};
    m_control.add_pollfds(fds);
    const int rc = ::poll(fds.data(), fds.size(), timeout);
    if (rc < 0 && errno != EINTR) throw Failure(std::string("poll failed: ") + std::strerror(errno));
    m_control.handle_polled(fds, static_cast<int64_t>(now_ms()));
    char drain[256];
    while (::read(m_done_pipe[0], drain, sizeof drain) > 0) {
    }
    while (::read(m_notice_pipe[0], drain, sizeof drain) > 0) {
    }
    handle_notices();
    handle_signals();
    handle_results();
    m_control.expire(static_cast<int64_t>(now_ms()));
    handle_file_events();
    if (m_child_kill_due != 0 && m_child.running() && static_cast<int64_t>(now_ms()) >= m_child_kill_due) {
      log(LogLevel::warn, "the app did not exit within --shutdown-timeout; killing it",
          {{"pid", m_child.pid()}});
      m_child.forward(SIGKILL);
      m_child_kill_due = INT64_MAX;  // once
    }
  }

  void spawn_child() {
    try {
      m_child.spawn(m_run.exec_argv);
    } catch (const UsageError&) {
      finish_all(true);
      throw;
    }
    log(LogLevel::info, "started the app", {{"command", m_run.exec_argv[0]}, {"pid", m_child.pid()}});
  }

  // The last ship of every database, in parallel; true if all succeeded.
  bool finish_all(bool quiet) {
    std::vector<Entry*> to_finish;
    for (const auto& entry : m_entries) {
      if (entry->fatal) continue;
      // Waited for and never created: nothing to ship. Created, though the
      // event is not read yet: it ships like the others.
      if (entry->absent &&
          !is_wal_database_file(entry->replicator->db_path(), entry->replicator->enable_wal()))
        continue;
      to_finish.push_back(entry.get());
    }
    std::mutex mutex;
    std::condition_variable cv;
    // Counted before the first job starts: a count raised here while the
    // workers lowered it lost updates, and the stop waited for ever (issue
    // 17: 1000 and 3000 idle databases, whose finish() is quick).
    size_t pending = to_finish.size();
    bool ok = true;
    for (Entry* e : to_finish) {
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
    if (!quiet && !m_fenced_error.empty()) {
      log(LogLevel::error, "stopped: fenced, what was committed here since is not in the replica");
    } else if (!quiet) {
      log(ok ? LogLevel::info : LogLevel::error,
          ok ? "stopped: everything committed is shipped" : "stopped with errors");
    }
    return ok;
  }

  const ReplicateRun& m_run;
  const OpenStorageFn& m_open_storage;
  StatusBoard m_own_board;  // when the run has none
  StatusBoard& m_board;
  std::vector<std::unique_ptr<Entry>> m_entries;
  ControlChannels m_control;
  std::vector<std::unique_ptr<FollowerEntry>> m_followers;
  int m_follow_stop[2] = {-1, -1};  // readable once followers must stop
  std::map<std::string, Entry*> m_by_path;
  std::map<std::string, const DirectoryConfig*> m_directories;  // the --dir ones, by path
  std::set<std::string> m_skipped;
  DirWatcher m_watcher;
  SignalPipe m_signals;
  int m_done_pipe[2] = {-1, -1};
  std::mutex m_results_mutex;
  std::vector<StepResult> m_results;
  bool m_stop = false;
  bool m_initial_round = true;
  std::string m_first_usage_error;
  std::string m_first_permanent_error;    // the first round's StorageError that needs a person: exit 1
  std::string m_fenced_error;             // the first fenced database's error: exit 4
  int64_t m_descriptors_reported_ms = 0;  // report_out_of_descriptors(), last said
  static constexpr int64_t k_descriptors_report_ms = 600'000;
  ChildProcess m_child;
  ChildProcess m_on_notice;         // --on-notice, once
  int m_notice_pipe[2] = {-1, -1};  // readable once the watcher posted a notice
  std::mutex m_notice_mutex;
  std::vector<PreemptionNotice> m_notices;  // posted, not yet handled
  bool m_noticed = false;                   // a notice came: the notice interval applies
  std::unique_ptr<NoticeWatcher> m_notice_watcher;
  int64_t m_child_kill_due = 0;  // when the stopping app gets SIGKILL; 0: not stopping
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
    const rlim_t soft = limit.rlim_cur;
    limit.rlim_cur = limit.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &limit) == 0 && log_enabled(LogLevel::debug)) {
      log(LogLevel::debug, "raised the file descriptor limit to the hard limit",
          {{"from", std::to_string(soft)},
           {"to",
            limit.rlim_max == RLIM_INFINITY ? std::string("unlimited") : std::to_string(limit.rlim_max)}});
    }
  }
  ReplicateLoop loop(run, open_storage);
  return loop.run();
}

}  // namespace walship
