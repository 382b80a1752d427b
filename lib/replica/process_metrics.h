// The process_* samples every Prometheus exporter has (CPU seconds,
// resident memory, open file descriptors, start time) and
// walship_build_info, for /metrics of replicate and serve-replica. The
// parsing of /proc is pure and unit-tested; reading it is one call.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "lib/util/prometheus_text.h"

namespace walship {

struct ProcessStats {
  double cpu_seconds = 0;       // user + system
  uint64_t resident_bytes = 0;  // RSS
  uint64_t open_fds = 0;
  double start_time_seconds = 0;  // since the Unix epoch
};

// From the text of /proc/self/stat (utime, stime and starttime in clock
// ticks, RSS in pages) and /proc/stat's "btime" (boot time, seconds since
// the epoch). nullopt when the text does not parse.
std::optional<ProcessStats> parse_proc_stat(std::string_view self_stat, std::string_view proc_stat,
                                            long ticks_per_second, long page_size);

// Of /proc/PID/stat, what tells one process from a later one with the same
// pid: its state letter (field 3) and its start time (field 22, clock ticks
// after boot). nullopt when the text does not parse.
struct PidStat {
  char state = '?';
  uint64_t start_ticks = 0;
};
std::optional<PidStat> parse_pid_stat(std::string_view stat);
// Of process `pid` now; nullopt when it does not exist (or /proc cannot be
// read).
std::optional<PidStat> read_pid_stat(int64_t pid);

// This process's stats now (zeros where /proc cannot be read).
ProcessStats read_process_stats();

// Adds process_cpu_seconds_total, process_resident_memory_bytes,
// process_open_fds, process_start_time_seconds and walship_build_info{version}.
void add_process_metrics(PrometheusText& out, const ProcessStats& stats, std::string_view version);

}  // namespace walship
