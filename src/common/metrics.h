// Prometheus metrics: counters, gauges and histograms in a registry that renders the text
// exposition format (version 0.0.4). All types are thread-safe; Inc/Set/Observe are lock-free
// for counters and gauges.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace trustmoe {

class Counter {
 public:
  void Inc(double v = 1);
  double Value() const;

 private:
  std::atomic<double> value_{0};
};

class Gauge {
 public:
  void Set(double v);
  void Add(double v);
  double Value() const;

 private:
  std::atomic<double> value_{0};
};

class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);
  void Observe(double v);
  // Cumulative counts per bound (last is +Inf), sum and count, consistent with each other.
  struct Snapshot {
    std::vector<double> bounds;
    std::vector<uint64_t> cumulative;
    double sum = 0;
    uint64_t count = 0;
  };
  Snapshot Snap() const;

 private:
  mutable std::mutex mu_;
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket, last is +Inf
  double sum_ = 0;
  uint64_t count_ = 0;
};

// Labels as rendered, e.g. {{"reason","bad_signature"}}.
using Labels = std::vector<std::pair<std::string, std::string>>;

class MetricsRegistry {
 public:
  MetricsRegistry();
  ~MetricsRegistry();  // defined where Family is complete
  MetricsRegistry(const MetricsRegistry&) = delete;
  MetricsRegistry& operator=(const MetricsRegistry&) = delete;

  // The same (name, labels) returns the same object; pointers stay valid for the registry's
  // life. `help` is taken from the first call for a name. Names must match
  // [a-zA-Z_:][a-zA-Z0-9_:]* (checked; a bad name is a bug).
  Counter* GetCounter(const std::string& name, const std::string& help, const Labels& labels = {});
  Gauge* GetGauge(const std::string& name, const std::string& help, const Labels& labels = {});
  Histogram* GetHistogram(const std::string& name, const std::string& help,
                          std::vector<double> upper_bounds, const Labels& labels = {});

  // Text exposition format; label values escaped.
  std::string Render() const;

 private:
  struct Family;
  // The family `name`, created with `type` (a Family::Type), `help` and `bounds` on first use;
  // aborts when it exists with another type. mu_ held.
  Family* FamilyLocked(const std::string& name, int type, const std::string& help,
                       const std::vector<double>& bounds);
  mutable std::mutex mu_;
  std::map<std::string, std::unique_ptr<Family>> families_;
};

}  // namespace trustmoe
