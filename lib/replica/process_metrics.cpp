#include "lib/replica/process_metrics.h"

#include <dirent.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace walship {

namespace {

// The fields of a /proc/PID/stat line from field 3 (state) on: the command
// name (field 2) is in parentheses and may hold spaces, so they start after
// the last ')'.
std::vector<std::string> stat_fields(std::string_view stat) {
  std::vector<std::string> f;
  const size_t close = stat.rfind(')');
  if (close == std::string_view::npos) return f;
  std::istringstream fields{std::string(stat.substr(close + 1))};
  for (std::string word; fields >> word;) f.push_back(word);
  return f;
}

std::string read_text(const char* path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

std::optional<ProcessStats> parse_proc_stat(std::string_view self_stat, std::string_view proc_stat,
                                            long ticks_per_second, long page_size) {
  const std::vector<std::string> f = stat_fields(self_stat);  // f[0] is field 3 (state)
  if (f.size() < 22 || ticks_per_second <= 0) return std::nullopt;
  const size_t btime_at = proc_stat.find("btime ");
  if (btime_at == std::string_view::npos) return std::nullopt;
  try {
    ProcessStats s;
    const double ticks = static_cast<double>(ticks_per_second);
    s.cpu_seconds = static_cast<double>(std::stoull(f[11]) + std::stoull(f[12])) / ticks;  // utime, stime
    const double boot = static_cast<double>(std::stoull(std::string(proc_stat.substr(btime_at + 6, 20))));
    s.start_time_seconds = boot + static_cast<double>(std::stoull(f[19])) / ticks;  // starttime
    s.resident_bytes = std::stoull(f[21]) * static_cast<uint64_t>(page_size);       // rss
    return s;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

std::optional<PidStat> parse_pid_stat(std::string_view stat) {
  const std::vector<std::string> f = stat_fields(stat);
  if (f.size() < 20 || f[0].size() != 1) return std::nullopt;
  try {
    return PidStat{f[0][0], std::stoull(f[19])};
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

std::optional<PidStat> read_pid_stat(int64_t pid) {
  if (pid <= 0) return std::nullopt;
  return parse_pid_stat(read_text(("/proc/" + std::to_string(pid) + "/stat").c_str()));
}

ProcessStats read_process_stats() {
  ProcessStats stats = parse_proc_stat(read_text("/proc/self/stat"), read_text("/proc/stat"),
                                       ::sysconf(_SC_CLK_TCK), ::sysconf(_SC_PAGESIZE))
                           .value_or(ProcessStats{});
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (const dirent* e = ::readdir(d)) {
      if (e->d_name[0] != '.') ++stats.open_fds;
    }
    ::closedir(d);
    if (stats.open_fds > 0) --stats.open_fds;  // the one opendir itself holds
  }
  return stats;
}

void add_process_metrics(PrometheusText& out, const ProcessStats& stats, std::string_view version) {
  out.gauge("walship_build_info", "The walship version serving these metrics (always 1).",
            {{"version", std::string(version)}}, 1);
  out.counter_seconds("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", {},
                      stats.cpu_seconds);
  out.gauge("process_resident_memory_bytes", "Resident memory size in bytes.", {}, stats.resident_bytes);
  out.gauge("process_open_fds", "Number of open file descriptors.", {}, stats.open_fds);
  out.gauge_seconds("process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
                    {}, stats.start_time_seconds);
}

}  // namespace walship
