// Logging facade over spdlog. Every process calls InitLogging once from main(); library code
// logs with the TM_* macros (fmt-style format strings) and never configures spdlog itself.
#pragma once

#include <spdlog/formatter.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "common/status.h"

namespace trustmoe {

enum class LogFormat { kText, kJson };

struct LogOptions {
  std::string level = "info";  // trace, debug, info, warn, error, critical, off
  LogFormat format = LogFormat::kText;
  std::string process;  // e.g. "trustmoe-store"; appears in every line
};

// Parses "text" / "json". InvalidArgument otherwise.
Result<LogFormat> ParseLogFormat(std::string_view s);

class ConfigTable;
// A daemon config's [log] section: level and format into `out`, each checked, errors with the
// file and line of the key.
Status ReadLogSection(ConfigTable& root, LogOptions* out);

// Installs the default logger: text lines "2026-11-24T16:00:00.123Z info [trustmoe-store] msg"
// or JSON lines {"ts":..,"level":..,"process":..,"msg":..} on stderr. InvalidArgument for an
// unknown level. Safe to call again (replaces the logger).
Status InitLogging(const LogOptions& opts);

// Parses a level name: trace, debug, info, warn, error, critical, off. InvalidArgument naming
// the valid ones otherwise.
Result<spdlog::level::level_enum> ParseLogLevel(std::string_view s);

// One log line as InitLogging writes it, without the newline. Levels are named as ParseLogLevel
// takes them ("warn", not "warning"). In JSON the message and process are escaped (quotes,
// backslashes, control characters) and bytes that are not UTF-8 become U+FFFD, so every line
// is one valid JSON object.
std::string FormatLogLine(LogFormat format, std::string_view process,
                          std::chrono::system_clock::time_point time,
                          spdlog::level::level_enum level, std::string_view msg);

// The spdlog formatter InitLogging puts on its sink (FormatLogLine plus "\n"); for tests and
// for processes that add sinks of their own.
std::unique_ptr<spdlog::formatter> MakeLogFormatter(LogFormat format, std::string process);

}  // namespace trustmoe

#define TM_TRACE(...) SPDLOG_TRACE(__VA_ARGS__)
#define TM_DEBUG(...) ::spdlog::debug(__VA_ARGS__)
#define TM_INFO(...) ::spdlog::info(__VA_ARGS__)
#define TM_WARN(...) ::spdlog::warn(__VA_ARGS__)
#define TM_ERROR(...) ::spdlog::error(__VA_ARGS__)
