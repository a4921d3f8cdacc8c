#include "common/log.h"

#include <spdlog/sinks/stdout_sinks.h>

#include <array>
#include <cstdio>
#include <ctime>

#include "common/config.h"

namespace trustmoe {

namespace {

constexpr std::array<std::pair<std::string_view, spdlog::level::level_enum>, 7> kLevels = {{
    {"trace", spdlog::level::trace},
    {"debug", spdlog::level::debug},
    {"info", spdlog::level::info},
    {"warn", spdlog::level::warn},
    {"error", spdlog::level::err},
    {"critical", spdlog::level::critical},
    {"off", spdlog::level::off},
}};

std::string_view LevelName(spdlog::level::level_enum level) {
  for (const auto& [name, value] : kLevels) {
    if (value == level) return name;
  }
  return "unknown";
}

// "2026-11-24T16:00:00.123Z".
void AppendTimestamp(std::string& out, std::chrono::system_clock::time_point time) {
  using std::chrono::duration_cast;
  using std::chrono::milliseconds;
  const int64_t ms = duration_cast<milliseconds>(time.time_since_epoch()).count();
  int64_t secs = ms / 1000;
  int64_t frac = ms % 1000;
  if (frac < 0) {  // before 1970: floor, not truncate
    frac += 1000;
    secs -= 1;
  }
  const std::time_t t = static_cast<std::time_t>(secs);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  int n = std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                        tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                        static_cast<int>(frac));
  out.append(buf, static_cast<size_t>(n));
}

bool IsContinuation(unsigned char c) { return (c & 0xC0) == 0x80; }

// Length of the well-formed UTF-8 sequence (RFC 3629: no overlongs, no surrogates, at most
// U+10FFFF) that starts s[i] with a byte >= 0x80, or 0 when there is none.
size_t Utf8SequenceLength(std::string_view s, size_t i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  size_t len = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  const auto b1 = static_cast<unsigned char>(s[i + 1]);
  if (b1 < lo || b1 > hi) return 0;
  for (size_t k = 2; k < len; ++k) {
    if (!IsContinuation(static_cast<unsigned char>(s[i + k]))) return 0;
  }
  return len;
}

// `s` as a JSON string literal, quotes included.
void AppendJsonString(std::string& out, std::string_view s) {
  out += '"';
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      size_t len = Utf8SequenceLength(s, i);
      if (len == 0) {
        out += "\\ufffd";
        ++i;
      } else {
        out.append(s.substr(i, len));
        i += len;
      }
      continue;
    }
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
    ++i;
  }
  out += '"';
}

class LineFormatter final : public spdlog::formatter {
 public:
  LineFormatter(LogFormat format, std::string process)
      : format_(format), process_(std::move(process)) {}

  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    std::string line = FormatLogLine(format_, process_, msg.time, msg.level,
                                     std::string_view(msg.payload.data(), msg.payload.size()));
    line += '\n';
    dest.append(line.data(), line.data() + line.size());
  }

  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<LineFormatter>(format_, process_);
  }

 private:
  const LogFormat format_;
  const std::string process_;
};

}  // namespace

Result<LogFormat> ParseLogFormat(std::string_view s) {
  if (s == "text") return LogFormat::kText;
  if (s == "json") return LogFormat::kJson;
  return Status::InvalidArgument("unknown log format '" + std::string(s) + "' (valid: text, json)");
}

Result<spdlog::level::level_enum> ParseLogLevel(std::string_view s) {
  for (const auto& [name, value] : kLevels) {
    if (name == s) return value;
  }
  std::string valid;
  for (const auto& [name, value] : kLevels) {
    if (!valid.empty()) valid += ", ";
    valid += name;
  }
  return Status::InvalidArgument("unknown log level '" + std::string(s) + "' (valid: " + valid +
                                 ")");
}

std::string FormatLogLine(LogFormat format, std::string_view process,
                          std::chrono::system_clock::time_point time,
                          spdlog::level::level_enum level, std::string_view msg) {
  std::string out;
  out.reserve(64 + process.size() + msg.size());
  if (format == LogFormat::kText) {
    AppendTimestamp(out, time);
    out += ' ';
    out += LevelName(level);
    out += " [";
    out += process;
    out += "] ";
    out += msg;
    return out;
  }
  out += "{\"ts\":\"";
  AppendTimestamp(out, time);
  out += "\",\"level\":\"";
  out += LevelName(level);
  out += "\",\"process\":";
  AppendJsonString(out, process);
  out += ",\"msg\":";
  AppendJsonString(out, msg);
  out += '}';
  return out;
}

std::unique_ptr<spdlog::formatter> MakeLogFormatter(LogFormat format, std::string process) {
  return std::make_unique<LineFormatter>(format, std::move(process));
}

Status InitLogging(const LogOptions& opts) {
  TRUSTMOE_ASSIGN_OR_RETURN(spdlog::level::level_enum level, ParseLogLevel(opts.level));
  auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  sink->set_formatter(MakeLogFormatter(opts.format, opts.process));
  auto logger =
      std::make_shared<spdlog::logger>(opts.process.empty() ? "trustmoe" : opts.process, sink);
  logger->set_level(level);
  logger->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(std::move(logger));
  return Status::Ok();
}

Status ReadLogSection(ConfigTable& root, LogOptions* out) {
  TRUSTMOE_ASSIGN_OR_RETURN(ConfigTable log, root.Table("log"));
  TRUSTMOE_RETURN_IF_ERROR(log.Get("level", &out->level));
  if (auto level = ParseLogLevel(out->level); !level.ok()) {
    return level.status().WithContext(log.Where("level"));
  }
  std::string format = "text";
  TRUSTMOE_RETURN_IF_ERROR(log.Get("format", &format));
  auto parsed = ParseLogFormat(format);
  if (!parsed.ok()) return parsed.status().WithContext(log.Where("format"));
  out->format = *parsed;
  return Status::Ok();
}

}  // namespace trustmoe
