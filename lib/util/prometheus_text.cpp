#include "lib/util/prometheus_text.h"

#include <cstdio>

namespace walship {

namespace {

std::string seconds_text(double value) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", value);
  return buf;
}

}  // namespace

std::string prometheus_label_escape(std::string_view text) {
  std::string out;
  for (const char c : text) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

PrometheusText::Family& PrometheusText::family(std::string_view name, std::string_view type,
                                               std::string_view help) {
  // A few dozen families: a linear search beats a map here.
  for (Family& f : m_families) {
    if (f.name == name) return f;
  }
  m_families.push_back({std::string(name), std::string(type), std::string(help), {}});
  return m_families.back();
}

void PrometheusText::sample(Family& f, std::string_view suffix, const MetricLabels& labels,
                            const std::string& value) {
  f.samples += f.name;
  f.samples += suffix;
  if (!labels.empty()) {
    f.samples += '{';
    for (size_t i = 0; i < labels.size(); ++i) {
      if (i > 0) f.samples += ',';
      f.samples += labels[i].first + "=\"" + prometheus_label_escape(labels[i].second) + "\"";
    }
    f.samples += '}';
  }
  f.samples += ' ';
  f.samples += value;
  f.samples += '\n';
}

void PrometheusText::counter(std::string_view name, std::string_view help, const MetricLabels& labels,
                             uint64_t value) {
  sample(family(name, "counter", help), "", labels, std::to_string(value));
}

void PrometheusText::gauge(std::string_view name, std::string_view help, const MetricLabels& labels,
                           uint64_t value) {
  sample(family(name, "gauge", help), "", labels, std::to_string(value));
}

void PrometheusText::gauge_seconds(std::string_view name, std::string_view help, const MetricLabels& labels,
                                   double value) {
  sample(family(name, "gauge", help), "", labels, seconds_text(value));
}

void PrometheusText::counter_seconds(std::string_view name, std::string_view help, const MetricLabels& labels,
                                     double value) {
  sample(family(name, "counter", help), "", labels, seconds_text(value));
}

void PrometheusText::histogram(std::string_view name, std::string_view help, const MetricLabels& labels,
                               std::span<const double> bounds, std::span<const uint64_t> counts, double sum) {
  Family& f = family(name, "histogram", help);
  uint64_t cumulative = 0;
  for (size_t i = 0; i <= bounds.size() && i < counts.size(); ++i) {
    cumulative += counts[i];
    MetricLabels with_le = labels;
    char le[32];
    if (i < bounds.size()) {
      std::snprintf(le, sizeof le, "%g", bounds[i]);
    } else {
      std::snprintf(le, sizeof le, "+Inf");
    }
    with_le.emplace_back("le", le);
    sample(f, "_bucket", with_le, std::to_string(cumulative));
  }
  sample(f, "_sum", labels, seconds_text(sum));
  sample(f, "_count", labels, std::to_string(cumulative));
}

std::string PrometheusText::str() const {
  std::string out;
  for (const Family& f : m_families) {
    out += "# HELP " + f.name + " " + f.help + "\n# TYPE " + f.name + " " + f.type + "\n" + f.samples;
  }
  return out;
}

}  // namespace walship
