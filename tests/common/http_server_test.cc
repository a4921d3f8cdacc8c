#include "common/http_server.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>

namespace trustmoe {
namespace {

class HttpServerTest : public ::testing::Test {
 protected:
  HttpServerTest()
      : server_(&metrics_, [this] {
          return HealthReport{healthy_.load(), "not registered on the chain"};
        }) {}

  MetricsRegistry metrics_;
  std::atomic<bool> healthy_{true};
  HttpServer server_;
};

TEST_F(HttpServerTest, ServesMetricsAndHealth) {
  metrics_.GetCounter("trustmoe_test_total", "Test.")->Inc(3);
  ASSERT_TRUE(server_.Start("127.0.0.1", 0).ok());
  ASSERT_GT(server_.port(), 0);
  httplib::Client client("127.0.0.1", server_.port());

  auto res = client.Get("/metrics");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("Content-Type"), "text/plain; version=0.0.4");
  EXPECT_EQ(res->body, metrics_.Render());
  EXPECT_NE(res->body.find("trustmoe_test_total 3\n"), std::string::npos);

  res = client.Get("/healthz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->body, "ok\n");

  healthy_ = false;
  res = client.Get("/healthz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 503);
  EXPECT_EQ(res->body, "not registered on the chain\n");

  res = client.Get("/other");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404);
  server_.Stop();
  server_.Stop();  // idempotent
}

TEST_F(HttpServerTest, StopRightAfterStart) {
  for (int i = 0; i < 20; ++i) {
    HttpServer server(&metrics_, nullptr);
    ASSERT_TRUE(server.Start("127.0.0.1", 0).ok());
    server.Stop();
  }
}

TEST_F(HttpServerTest, BusyPortIsUnavailable) {
  ASSERT_TRUE(server_.Start("127.0.0.1", 0).ok());
  HttpServer other(&metrics_, nullptr);
  Status st = other.Start("127.0.0.1", server_.port());
  EXPECT_EQ(st.code(), StatusCode::kUnavailable);
  EXPECT_NE(st.message().find("127.0.0.1:" + std::to_string(server_.port())), std::string::npos);
  EXPECT_EQ(server_.Start("127.0.0.1", 0).code(), StatusCode::kFailedPrecondition);
}

TEST_F(HttpServerTest, DestructorStops) {
  auto server = std::make_unique<HttpServer>(&metrics_, nullptr);
  ASSERT_TRUE(server->Start("127.0.0.1", 0).ok());
  httplib::Client client("127.0.0.1", server->port());
  auto res = client.Get("/healthz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  server.reset();
}

}  // namespace
}  // namespace trustmoe
