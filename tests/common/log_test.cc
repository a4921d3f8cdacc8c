#include "common/log.h"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <nlohmann/json.hpp>

#include <sstream>

namespace trustmoe {
namespace {

const auto kTime = std::chrono::system_clock::time_point(std::chrono::milliseconds(1795536000123));

TEST(LogTest, TextLine) {
  EXPECT_EQ(FormatLogLine(LogFormat::kText, "trustmoe-store", kTime, spdlog::level::info, "hello"),
            "2026-11-24T16:00:00.123Z info [trustmoe-store] hello");
  EXPECT_EQ(FormatLogLine(LogFormat::kText, "p", kTime, spdlog::level::warn, "w"),
            "2026-11-24T16:00:00.123Z warn [p] w");
}

TEST(LogTest, JsonLine) {
  EXPECT_EQ(FormatLogLine(LogFormat::kJson, "trustmoe-store", kTime, spdlog::level::err, "x"),
            R"({"ts":"2026-11-24T16:00:00.123Z","level":"error","process":"trustmoe-store",)"
            R"("msg":"x"})");
}

TEST(LogTest, JsonEscapesMessage) {
  const std::string msg =
      std::string("quote \" backslash \\ newline \n tab \t bell \a nul ") + '\0' + " end";
  std::string line = FormatLogLine(LogFormat::kJson, "p\"q", kTime, spdlog::level::info, msg);
  EXPECT_EQ(line.find('\n'), std::string::npos);
  nlohmann::json j = nlohmann::json::parse(line);
  EXPECT_EQ(j["msg"], msg);
  EXPECT_EQ(j["process"], "p\"q");
  EXPECT_EQ(j["level"], "info");
  EXPECT_EQ(j["ts"], "2026-11-24T16:00:00.123Z");
}

TEST(LogTest, JsonKeepsUtf8AndReplacesInvalidBytes) {
  std::string line = FormatLogLine(LogFormat::kJson, "p", kTime, spdlog::level::info,
                                   "gr\xc3\xbc\xc3\x9f \xe2\x82\xac bad \xff\xc3 end");
  nlohmann::json j = nlohmann::json::parse(line);  // throws on invalid UTF-8
  EXPECT_EQ(j["msg"], "gr\xc3\xbc\xc3\x9f \xe2\x82\xac bad \xef\xbf\xbd\xef\xbf\xbd end");
  // Surrogates and overlong forms are not UTF-8 either.
  line = FormatLogLine(LogFormat::kJson, "p", kTime, spdlog::level::info, "\xed\xa0\x80\xc0\xaf");
  EXPECT_NO_THROW(nlohmann::json::parse(line)) << line;
}

TEST(LogTest, FormatterWritesOneJsonObjectPerLine) {
  std::ostringstream out;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
  sink->set_formatter(MakeLogFormatter(LogFormat::kJson, "trustmoe-test"));
  spdlog::logger logger("test", sink);
  logger.set_level(spdlog::level::debug);
  logger.info("stored {} bytes for \"{}\"", 42, "blob\nid");
  logger.debug("path C:\\x");
  logger.trace("not shown");
  std::istringstream in(out.str());
  std::string line;
  std::vector<nlohmann::json> lines;
  while (std::getline(in, line)) lines.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0]["msg"], "stored 42 bytes for \"blob\nid\"");
  EXPECT_EQ(lines[0]["level"], "info");
  EXPECT_EQ(lines[0]["process"], "trustmoe-test");
  EXPECT_EQ(lines[1]["msg"], "path C:\\x");
  EXPECT_EQ(lines[1]["level"], "debug");
}

TEST(LogTest, ParseLevelAndFormat) {
  EXPECT_EQ(*ParseLogLevel("warn"), spdlog::level::warn);
  EXPECT_EQ(*ParseLogLevel("off"), spdlog::level::off);
  Result<spdlog::level::level_enum> bad = ParseLogLevel("verbose");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("'verbose'"), std::string::npos);
  EXPECT_NE(bad.status().message().find("trace, debug, info, warn, error, critical, off"),
            std::string::npos);
  EXPECT_EQ(*ParseLogFormat("json"), LogFormat::kJson);
  EXPECT_EQ(*ParseLogFormat("text"), LogFormat::kText);
  EXPECT_EQ(ParseLogFormat("xml").status().code(), StatusCode::kInvalidArgument);
}

TEST(LogTest, InitLogging) {
  LogOptions opts;
  opts.level = "loud";
  EXPECT_EQ(InitLogging(opts).code(), StatusCode::kInvalidArgument);
  opts.level = "warn";
  opts.process = "trustmoe-test";
  ASSERT_TRUE(InitLogging(opts).ok());
  EXPECT_EQ(spdlog::default_logger()->level(), spdlog::level::warn);
  opts.level = "error";
  opts.format = LogFormat::kJson;
  ASSERT_TRUE(InitLogging(opts).ok());  // again: replaces the logger
  EXPECT_EQ(spdlog::default_logger()->level(), spdlog::level::err);
  TM_INFO("filtered out");
}

}  // namespace
}  // namespace trustmoe
