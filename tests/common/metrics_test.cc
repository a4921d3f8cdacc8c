#include "common/metrics.h"

#include <gtest/gtest.h>

#include <thread>

namespace trustmoe {
namespace {

TEST(MetricsTest, CounterRender) {
  MetricsRegistry reg;
  Counter* c = reg.GetCounter("trustmoe_requests_total", "Requests served.");
  c->Inc();
  c->Inc(2.5);
  EXPECT_EQ(c->Value(), 3.5);
  EXPECT_EQ(reg.GetCounter("trustmoe_requests_total", "ignored"), c);
  EXPECT_EQ(reg.Render(),
            "# HELP trustmoe_requests_total Requests served.\n"
            "# TYPE trustmoe_requests_total counter\n"
            "trustmoe_requests_total 3.5\n");
}

TEST(MetricsTest, GaugeWithLabels) {
  MetricsRegistry reg;
  Gauge* a = reg.GetGauge("trustmoe_peers", "Connected peers.", {{"role", "validator"}});
  Gauge* b = reg.GetGauge("trustmoe_peers", "Connected peers.", {{"role", "edge"}});
  EXPECT_NE(a, b);
  a->Set(4);
  a->Add(-1);
  b->Set(10);
  EXPECT_EQ(a->Value(), 3);
  EXPECT_EQ(reg.Render(),
            "# HELP trustmoe_peers Connected peers.\n"
            "# TYPE trustmoe_peers gauge\n"
            "trustmoe_peers{role=\"edge\"} 10\n"
            "trustmoe_peers{role=\"validator\"} 3\n");
}

TEST(MetricsTest, LabelOrderDoesNotMatter) {
  MetricsRegistry reg;
  Counter* a = reg.GetCounter("x_total", "h", {{"a", "1"}, {"b", "2"}});
  Counter* b = reg.GetCounter("x_total", "h", {{"b", "2"}, {"a", "1"}});
  EXPECT_EQ(a, b);
}

TEST(MetricsTest, HistogramBucketsAreCumulative) {
  MetricsRegistry reg;
  Histogram* h =
      reg.GetHistogram("trustmoe_latency_seconds", "Latency.", {0.25, 1, 10}, {{"op", "get"}});
  h->Observe(0.125);
  h->Observe(0.25);  // le is inclusive
  h->Observe(0.5);
  h->Observe(100);
  Histogram::Snapshot snap = h->Snap();
  EXPECT_EQ(snap.cumulative, (std::vector<uint64_t>{2, 3, 3, 4}));
  EXPECT_EQ(snap.count, 4u);
  EXPECT_EQ(snap.sum, 100.875);
  EXPECT_EQ(reg.Render(),
            "# HELP trustmoe_latency_seconds Latency.\n"
            "# TYPE trustmoe_latency_seconds histogram\n"
            "trustmoe_latency_seconds_bucket{op=\"get\",le=\"0.25\"} 2\n"
            "trustmoe_latency_seconds_bucket{op=\"get\",le=\"1\"} 3\n"
            "trustmoe_latency_seconds_bucket{op=\"get\",le=\"10\"} 3\n"
            "trustmoe_latency_seconds_bucket{op=\"get\",le=\"+Inf\"} 4\n"
            "trustmoe_latency_seconds_sum{op=\"get\"} 100.875\n"
            "trustmoe_latency_seconds_count{op=\"get\"} 4\n");
}

TEST(MetricsTest, HistogramWithoutLabels) {
  MetricsRegistry reg;
  Histogram* h = reg.GetHistogram("h", "x", {1});
  h->Observe(2);
  EXPECT_EQ(reg.Render(),
            "# HELP h x\n# TYPE h histogram\n"
            "h_bucket{le=\"1\"} 0\nh_bucket{le=\"+Inf\"} 1\nh_sum 2\nh_count 1\n");
}

TEST(MetricsTest, LabelValuesAndHelpEscaped) {
  MetricsRegistry reg;
  reg.GetCounter("errors_total", "Errors \\ by\nreason.", {{"reason", "a\"b\\c\nd"}})->Inc();
  EXPECT_EQ(reg.Render(),
            "# HELP errors_total Errors \\\\ by\\nreason.\n"
            "# TYPE errors_total counter\n"
            "errors_total{reason=\"a\\\"b\\\\c\\nd\"} 1\n");
}

TEST(MetricsTest, FamiliesSortedByName) {
  MetricsRegistry reg;
  reg.GetGauge("b", "b")->Set(1);
  reg.GetGauge("a", "a")->Set(2);
  EXPECT_EQ(reg.Render(), "# HELP a a\n# TYPE a gauge\na 2\n# HELP b b\n# TYPE b gauge\nb 1\n");
}

TEST(MetricsTest, ConcurrentIncrementsAreNotLost) {
  MetricsRegistry reg;
  Counter* c = reg.GetCounter("c_total", "c");
  Gauge* g = reg.GetGauge("g", "g");
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        c->Inc();
        g->Add(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(c->Value(), 40000);
  EXPECT_EQ(g->Value(), 40000);
}

TEST(MetricsDeathTest, BadNameAborts) {
  MetricsRegistry reg;
  EXPECT_DEATH(reg.GetCounter("9bad", "x"), "check failed");
  EXPECT_DEATH(reg.GetCounter("bad-name", "x"), "check failed");
  EXPECT_DEATH(reg.GetCounter("ok", "x", {{"bad label", "v"}}), "check failed");
}

TEST(MetricsDeathTest, SameNameOtherTypeAborts) {
  MetricsRegistry reg;
  reg.GetCounter("m", "x");
  EXPECT_DEATH(reg.GetGauge("m", "x"), "check failed");
}

TEST(MetricsDeathTest, NegativeCounterIncrementAborts) {
  Counter c;
  EXPECT_DEATH(c.Inc(-1), "check failed");
}

TEST(MetricsDeathTest, UnsortedBucketsAbort) { EXPECT_DEATH(Histogram({1, 0.5}), "check failed"); }

}  // namespace
}  // namespace trustmoe
