#include "common/metrics.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "common/check.h"

namespace trustmoe {

namespace {

void AtomicAdd(std::atomic<double>& target, double v) {
  double old = target.load(std::memory_order_relaxed);
  while (!target.compare_exchange_weak(old, old + v, std::memory_order_relaxed)) {
  }
}

bool ValidName(std::string_view name, bool allow_colon) {
  if (name.empty()) return false;
  auto letter = [&](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
           (allow_colon && c == ':');
  };
  if (!letter(name[0])) return false;
  return std::all_of(name.begin() + 1, name.end(),
                     [&](char c) { return letter(c) || (c >= '0' && c <= '9'); });
}

// Sorted by label name so that the same set in another order is the same series; a bad or
// repeated label name is a bug.
Labels Canonical(const Labels& labels) {
  Labels out = labels;
  std::sort(out.begin(), out.end());
  for (size_t i = 0; i < out.size(); ++i) {
    TRUSTMOE_CHECK(ValidName(out[i].first, /*allow_colon=*/false));
    TRUSTMOE_CHECK(i == 0 || out[i - 1].first != out[i].first);
  }
  return out;
}

// Prometheus float syntax: shortest round-trip digits, +Inf / -Inf / NaN.
std::string FormatValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  return fmt::format("{}", v);
}

void AppendEscaped(std::string& out, std::string_view s, bool escape_quote) {
  for (char c : s) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '"' && escape_quote) {
      out += "\\\"";
    } else {
      out += c;
    }
  }
}

// `{a="x",b="y"}` with `extra` (the histogram's le) last; "" when there are no labels.
std::string RenderLabels(const Labels& labels, const std::pair<std::string, std::string>* extra) {
  if (labels.empty() && extra == nullptr) return "";
  std::string out = "{";
  bool first = true;
  auto add = [&](const std::pair<std::string, std::string>& label) {
    if (!first) out += ',';
    first = false;
    out += label.first;
    out += "=\"";
    AppendEscaped(out, label.second, /*escape_quote=*/true);
    out += '"';
  };
  for (const auto& label : labels) add(label);
  if (extra != nullptr) add(*extra);
  out += '}';
  return out;
}

}  // namespace

void Counter::Inc(double v) {
  TRUSTMOE_CHECK(v >= 0);  // counters only go up (this also refuses NaN)
  AtomicAdd(value_, v);
}

double Counter::Value() const { return value_.load(std::memory_order_relaxed); }

void Gauge::Set(double v) { value_.store(v, std::memory_order_relaxed); }

void Gauge::Add(double v) { AtomicAdd(value_, v); }

double Gauge::Value() const { return value_.load(std::memory_order_relaxed); }

Histogram::Histogram(std::vector<double> upper_bounds) : bounds_(std::move(upper_bounds)) {
  // +Inf is always the last bucket; a caller may list it or not.
  if (!bounds_.empty() && std::isinf(bounds_.back()) && bounds_.back() > 0) bounds_.pop_back();
  for (size_t i = 0; i < bounds_.size(); ++i) {
    TRUSTMOE_CHECK(std::isfinite(bounds_[i]));
    TRUSTMOE_CHECK(i == 0 || bounds_[i - 1] < bounds_[i]);
  }
  counts_.assign(bounds_.size() + 1, 0);
}

void Histogram::Observe(double v) {
  // Bucket i counts values <= bounds_[i]; NaN goes to +Inf.
  size_t bucket = std::isnan(v)
                      ? bounds_.size()
                      : static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), v) -
                                            bounds_.begin());
  std::lock_guard<std::mutex> lock(mu_);
  ++counts_[bucket];
  sum_ += v;
  ++count_;
}

Histogram::Snapshot Histogram::Snap() const {
  Snapshot snap;
  snap.bounds = bounds_;
  std::lock_guard<std::mutex> lock(mu_);
  snap.cumulative.reserve(counts_.size());
  uint64_t running = 0;
  for (uint64_t c : counts_) {
    running += c;
    snap.cumulative.push_back(running);
  }
  snap.sum = sum_;
  snap.count = count_;
  return snap;
}

struct MetricsRegistry::Family {
  enum class Type { kCounter, kGauge, kHistogram };
  Family(Type t, std::string h, std::vector<double> b)
      : type(t), help(std::move(h)), bounds(std::move(b)) {}

  Type type;
  std::string help;
  std::vector<double> bounds;  // histograms: as first asked for
  std::map<Labels, std::unique_ptr<Counter>> counters;
  std::map<Labels, std::unique_ptr<Gauge>> gauges;
  std::map<Labels, std::unique_ptr<Histogram>> histograms;
};

MetricsRegistry::MetricsRegistry() = default;
MetricsRegistry::~MetricsRegistry() = default;

MetricsRegistry::Family* MetricsRegistry::FamilyLocked(const std::string& name, int type,
                                                       const std::string& help,
                                                       const std::vector<double>& bounds) {
  auto& family = families_[name];
  if (family == nullptr) {
    family = std::make_unique<Family>(static_cast<Family::Type>(type), help, bounds);
  }
  TRUSTMOE_CHECK(family->type == static_cast<Family::Type>(type));  // one name, one type
  return family.get();
}

Counter* MetricsRegistry::GetCounter(const std::string& name, const std::string& help,
                                     const Labels& labels) {
  TRUSTMOE_CHECK(ValidName(name, /*allow_colon=*/true));
  Labels key = Canonical(labels);
  std::lock_guard<std::mutex> lock(mu_);
  Family* family = FamilyLocked(name, static_cast<int>(Family::Type::kCounter), help, {});
  auto& child = family->counters[key];
  if (child == nullptr) child = std::make_unique<Counter>();
  return child.get();
}

Gauge* MetricsRegistry::GetGauge(const std::string& name, const std::string& help,
                                 const Labels& labels) {
  TRUSTMOE_CHECK(ValidName(name, /*allow_colon=*/true));
  Labels key = Canonical(labels);
  std::lock_guard<std::mutex> lock(mu_);
  Family* family = FamilyLocked(name, static_cast<int>(Family::Type::kGauge), help, {});
  auto& child = family->gauges[key];
  if (child == nullptr) child = std::make_unique<Gauge>();
  return child.get();
}

Histogram* MetricsRegistry::GetHistogram(const std::string& name, const std::string& help,
                                         std::vector<double> upper_bounds, const Labels& labels) {
  TRUSTMOE_CHECK(ValidName(name, /*allow_colon=*/true));
  Labels key = Canonical(labels);
  for (const auto& label : key) TRUSTMOE_CHECK(label.first != "le");      // reserved for buckets
  auto histogram = std::make_unique<Histogram>(std::move(upper_bounds));  // checks the bounds
  std::vector<double> bounds = histogram->Snap().bounds;
  std::lock_guard<std::mutex> lock(mu_);
  Family* family = FamilyLocked(name, static_cast<int>(Family::Type::kHistogram), help, bounds);
  TRUSTMOE_CHECK(family->bounds == bounds);  // every series of a family has the same buckets
  auto& child = family->histograms[key];
  if (child == nullptr) child = std::move(histogram);
  return child.get();
}

std::string MetricsRegistry::Render() const {
  std::string out;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [name, family] : families_) {
    out += "# HELP " + name + " ";
    AppendEscaped(out, family->help, /*escape_quote=*/false);
    out += "\n# TYPE " + name + " ";
    switch (family->type) {
      case Family::Type::kCounter:
        out += "counter\n";
        for (const auto& [labels, c] : family->counters) {
          out += name + RenderLabels(labels, nullptr) + " " + FormatValue(c->Value()) + "\n";
        }
        break;
      case Family::Type::kGauge:
        out += "gauge\n";
        for (const auto& [labels, g] : family->gauges) {
          out += name + RenderLabels(labels, nullptr) + " " + FormatValue(g->Value()) + "\n";
        }
        break;
      case Family::Type::kHistogram:
        out += "histogram\n";
        for (const auto& [labels, h] : family->histograms) {
          Histogram::Snapshot snap = h->Snap();
          for (size_t i = 0; i < snap.cumulative.size(); ++i) {
            std::pair<std::string, std::string> le{
                "le", i < snap.bounds.size() ? FormatValue(snap.bounds[i]) : "+Inf"};
            out += name + "_bucket" + RenderLabels(labels, &le) + " " +
                   std::to_string(snap.cumulative[i]) + "\n";
          }
          out += name + "_sum" + RenderLabels(labels, nullptr) + " " + FormatValue(snap.sum) + "\n";
          out += name + "_count" + RenderLabels(labels, nullptr) + " " +
                 std::to_string(snap.count) + "\n";
        }
        break;
    }
  }
  return out;
}

}  // namespace trustmoe
