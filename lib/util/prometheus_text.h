// Prometheus text exposition format 0.0.4, what /metrics serves: samples are
// grouped by metric family (one HELP and one TYPE line each, families in the
// order first added) however many databases add to a family. Pure.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace walship {

using MetricLabels = std::vector<std::pair<std::string, std::string>>;

class PrometheusText {
 public:
  void counter(std::string_view name, std::string_view help, const MetricLabels& labels, uint64_t value);
  void gauge(std::string_view name, std::string_view help, const MetricLabels& labels, uint64_t value);
  // Seconds, with millisecond precision ("1.250").
  void gauge_seconds(std::string_view name, std::string_view help, const MetricLabels& labels, double value);
  // A counter of seconds (process_cpu_seconds_total), millisecond precision.
  void counter_seconds(std::string_view name, std::string_view help, const MetricLabels& labels,
                       double value);
  // A histogram: `counts[i]` observations at most `bounds[i]` (cumulative is
  // computed here), `counts.back()` past the last bound (+Inf), and their sum.
  void histogram(std::string_view name, std::string_view help, const MetricLabels& labels,
                 std::span<const double> bounds, std::span<const uint64_t> counts, double sum);

  // The whole exposition, ending with a newline (empty if nothing was added).
  std::string str() const;

 private:
  struct Family {
    std::string name;
    std::string type;
    std::string help;
    std::string samples;  // "name{labels} value\n" lines
  };
  Family& family(std::string_view name, std::string_view type, std::string_view help);
  static void sample(Family& f, std::string_view suffix, const MetricLabels& labels,
                     const std::string& value);

  std::vector<Family> m_families;
};

// Label values escape backslash, double quote and newline.
std::string prometheus_label_escape(std::string_view text);

}  // namespace walship
