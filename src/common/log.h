// Logging facade over spdlog. Every process calls InitLogging once from main(); library code
// logs with the TM_* macros (fmt-style format strings) and never configures spdlog itself.
#pragma once

#include <spdlog/spdlog.h>

#include <string>

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

// Installs the default logger: text lines "2026-11-24T16:00:00.123Z info [trustmoe-store] msg"
// or JSON lines {"ts":..,"level":..,"process":..,"msg":..} on stderr. InvalidArgument for an
// unknown level. Safe to call again (replaces the logger).
Status InitLogging(const LogOptions& opts);

}  // namespace trustmoe

#define TM_TRACE(...) SPDLOG_TRACE(__VA_ARGS__)
#define TM_DEBUG(...) ::spdlog::debug(__VA_ARGS__)
#define TM_INFO(...) ::spdlog::info(__VA_ARGS__)
#define TM_WARN(...) ::spdlog::warn(__VA_ARGS__)
#define TM_ERROR(...) ::spdlog::error(__VA_ARGS__)
