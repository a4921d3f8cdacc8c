// Linked into every test binary: on SIGSEGV, SIGBUS, SIGFPE or SIGILL prints where the fault
// happened (instruction, object, symbol) and a backtrace to stderr before dying, so a crash in
// CI or on the GPU machine (no debugger there) names its place. Resolve an address inside our
// binaries with `addr2line -Cfe <binary> <offset>`.
#include <dlfcn.h>
#include <execinfo.h>
#include <signal.h>
#include <ucontext.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <initializer_list>

namespace {

void WriteStr(const char* s) { (void)!::write(STDERR_FILENO, s, std::strlen(s)); }

void WriteHex(uintptr_t v) {
  char buf[19] = "0x";
  for (int i = 0; i < 16; ++i) buf[2 + i] = "0123456789abcdef"[(v >> (60 - 4 * i)) & 0xf];
  buf[18] = '\0';
  WriteStr(buf);
}

// " in <object> offset <hex> (<symbol>)" for a code address; false when no object holds it.
bool WriteObjectOf(uintptr_t address) {
  Dl_info dl{};
  if (::dladdr(reinterpret_cast<void*>(address), &dl) == 0 || dl.dli_fname == nullptr) {
    return false;
  }
  WriteStr(" in ");
  WriteStr(dl.dli_fname);
  WriteStr(" offset ");
  WriteHex(address - reinterpret_cast<uintptr_t>(dl.dli_fbase));
  WriteStr(" (");
  WriteStr(dl.dli_sname ? dl.dli_sname : "?");
  WriteStr(")");
  return true;
}

void OnCrash(int sig, siginfo_t* info, void* context) {
  WriteStr("\n*** crash: ");
  WriteStr(strsignal(sig));
  WriteStr(" at address ");
  WriteHex(reinterpret_cast<uintptr_t>(info->si_addr));
  uintptr_t ip = static_cast<uintptr_t>(
      static_cast<ucontext_t*>(context)->uc_mcontext.gregs[REG_RIP]);
  WriteStr("\n*** instruction ");
  WriteHex(ip);
  bool known = WriteObjectOf(ip);
  // A jump to a bad address (a call through a dangling pointer) leaves no unwind information
  // for backtrace(); the caller's return address is then on top of the stack.
  if (!known) {
    uintptr_t sp = static_cast<uintptr_t>(
        static_cast<ucontext_t*>(context)->uc_mcontext.gregs[REG_RSP]);
    uintptr_t ret = *reinterpret_cast<uintptr_t*>(sp);
    WriteStr("\n*** return address ");
    WriteHex(ret);
    WriteObjectOf(ret);
    WriteStr("\n");
    ::raise(sig);
  }
  WriteStr("\n*** backtrace:\n");
  void* frames[64];
  int n = ::backtrace(frames, 64);
  ::backtrace_symbols_fd(frames, n, STDERR_FILENO);
  ::raise(sig);
}

struct InstallCrashHandler {
  InstallCrashHandler() {
    // backtrace() loads libgcc on first use, which allocates: do it now, not in the handler.
    void* frame;
    ::backtrace(&frame, 1);
    // The main thread's handler runs on its own stack, so a stack overflow is reported too.
    static char alt_stack[1 << 16];
    stack_t ss{};
    ss.ss_sp = alt_stack;
    ss.ss_size = sizeof alt_stack;
    ::sigaltstack(&ss, nullptr);
    struct sigaction sa {};
    sa.sa_sigaction = OnCrash;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESETHAND;
    for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL}) ::sigaction(sig, &sa, nullptr);
  }
} install;

}  // namespace
