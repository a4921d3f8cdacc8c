#include "common/files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <random>

namespace trustmoe {

namespace {

// "what path: strerror", with the code that fits errno.
Status ErrnoStatus(int err, std::string_view what, const std::string& path) {
  std::string msg = std::string(what) + " " + path + ": " + std::strerror(err);
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      return Status::NotFound(std::move(msg));
    case EACCES:
    case EPERM:
    case EROFS:
      return Status::PermissionDenied(std::move(msg));
    case ENOSPC:
    case EDQUOT:
      return Status::ResourceExhausted(std::move(msg));
    case EEXIST:
      return Status::AlreadyExists(std::move(msg));
    default:
      return Status::Internal(std::move(msg));
  }
}

// Closes a descriptor on scope exit unless released.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  // Closes now and reports close's error (which can be a delayed write error).
  int Close() {
    int rc = ::close(fd_);
    fd_ = -1;
    return rc;
  }

 private:
  int fd_;
};

std::string DirName(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string TempName(const std::string& path) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  char suffix[17];
  std::snprintf(suffix, sizeof(suffix), "%016llx", static_cast<unsigned long long>(rng()));
  return path + ".tmp." + std::to_string(::getpid()) + "." + suffix;
}

Status WriteAll(int fd, std::string_view data, const std::string& path) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, "cannot write", path);
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return Status::Ok();
}

// Creates `tmp` with exactly `mode`, writes `data`, fsyncs and closes it.
Status WriteTemp(const std::string& tmp, std::string_view data, uint32_t mode) {
  Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode));
  if (fd.get() < 0) return ErrnoStatus(errno, "cannot create", tmp);
  // The umask may have taken bits away; the caller asked for this mode.
  if (::fchmod(fd.get(), mode) != 0) return ErrnoStatus(errno, "cannot chmod", tmp);
  TRUSTMOE_RETURN_IF_ERROR(WriteAll(fd.get(), data, tmp));
  if (::fsync(fd.get()) != 0) return ErrnoStatus(errno, "cannot fsync", tmp);
  if (fd.Close() != 0) return ErrnoStatus(errno, "cannot close", tmp);
  return Status::Ok();
}

Status FsyncDir(const std::string& dir) {
  Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0) return ErrnoStatus(errno, "cannot open directory", dir);
  if (::fsync(fd.get()) != 0) return ErrnoStatus(errno, "cannot fsync directory", dir);
  return Status::Ok();
}

}  // namespace

Result<std::string> ReadFile(const std::string& path, uint64_t max_bytes) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return ErrnoStatus(errno, "cannot open", path);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return ErrnoStatus(errno, "cannot stat", path);
  if (S_ISDIR(st.st_mode)) return ErrnoStatus(EISDIR, "cannot read", path);
  auto too_large = [&] {
    return Status::ResourceExhausted("file " + path + " is larger than " +
                                     std::to_string(max_bytes) + " bytes");
  };
  if (S_ISREG(st.st_mode) && static_cast<uint64_t>(st.st_size) > max_bytes) return too_large();
  std::string out;
  if (S_ISREG(st.st_mode)) out.reserve(static_cast<size_t>(st.st_size));
  char buf[64 * 1024];
  while (true) {
    ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, "cannot read", path);
    }
    if (n == 0) break;
    // The size can change after fstat, and special files report none: check what was read.
    if (out.size() + static_cast<uint64_t>(n) > max_bytes) return too_large();
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

Status WriteFileAtomic(const std::string& path, std::string_view data, uint32_t mode) {
  const std::string tmp = TempName(path);
  Status st = WriteTemp(tmp, data, mode);
  if (st.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) {
    st = ErrnoStatus(errno, "cannot rename " + tmp + " to", path);
  }
  if (!st.ok()) {
    ::unlink(tmp.c_str());  // may not exist if creating it failed
    return st;
  }
  return FsyncDir(DirName(path));
}

Status MakeDirs(const std::string& path, uint32_t mode) {
  if (path.empty()) return Status::InvalidArgument("cannot create a directory with an empty path");
  size_t pos = 0;
  while (pos != std::string::npos) {
    pos = path.find('/', pos + 1);
    const std::string prefix = path.substr(0, pos);
    if (prefix.empty() || prefix.back() == '/') continue;  // "//" in the path
    if (::mkdir(prefix.c_str(), mode) == 0) {
      // Like the file mode in WriteFileAtomic: exactly what was asked, whatever the umask.
      if (::chmod(prefix.c_str(), mode) != 0) return ErrnoStatus(errno, "cannot chmod", prefix);
      continue;
    }
    if (errno != EEXIST) return ErrnoStatus(errno, "cannot create directory", prefix);
    struct stat st {};
    if (::stat(prefix.c_str(), &st) != 0) return ErrnoStatus(errno, "cannot stat", prefix);
    if (!S_ISDIR(st.st_mode)) {
      return Status::AlreadyExists("cannot create directory " + prefix +
                                   ": exists and is not a directory");
    }
  }
  return Status::Ok();
}

}  // namespace trustmoe
