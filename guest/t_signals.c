/* Signal delivery. With an argument, dies in the named way (tests check the exit status). */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

static volatile int got, got_code, got_signo, depth, maxdepth;
static volatile uintptr_t handler_sp;

static void h_plain(int sig) { got = sig; }

static void h_info(int sig, siginfo_t *si, void *uc) {
    (void)uc;
    got = sig;
    got_signo = si->si_signo;
    got_code = si->si_code;
}

static void h_stack(int sig) {
    int local;
    (void)sig;
    handler_sp = (uintptr_t)&local;
}

static volatile int calls;
static void h_nest(int sig) {
    depth++;
    if (depth > maxdepth) maxdepth = depth;
    if (calls++ < 2) raise(sig);
    depth--;
}

static void h_ucontext(int sig, siginfo_t *si, void *ucv) {
    ucontext_t *uc = ucv;
    (void)sig, (void)si;
    /* Skip the faulting instruction: an ebreak is 4 bytes (or 2 if compressed). */
    uint16_t half = *(uint16_t *)uc->uc_mcontext.__gregs[0];
    uc->uc_mcontext.__gregs[0] += (half & 3) == 3 ? 4 : 2;
    got = sig;
}

static sigjmp_buf env;
static void h_segv(int sig, siginfo_t *si, void *uc) {
    (void)uc;
    got = sig;
    handler_sp = (uintptr_t)si->si_addr;
    siglongjmp(env, 1);
}

int main(int argc, char **argv) {
    if (argc > 1) {
        const char *m = argv[1];
        if (!strcmp(m, "abort")) abort();
        if (!strcmp(m, "segv")) return *(volatile int *)8;
        if (!strcmp(m, "term")) raise(SIGTERM);
        if (!strcmp(m, "usr1")) kill(getpid(), SIGUSR1);
        if (!strcmp(m, "ill")) __asm__ volatile(".word 0");
        if (!strcmp(m, "trap")) __asm__ volatile("ebreak");
        if (!strcmp(m, "ignored")) {
            raise(SIGCHLD);
            raise(SIGWINCH);
            signal(SIGUSR2, SIG_IGN);
            raise(SIGUSR2);
            printf("survived\n");
            return 0;
        }
        if (!strcmp(m, "blocked-segv")) {
            sigset_t s;
            sigemptyset(&s);
            sigaddset(&s, SIGSEGV);
            sigprocmask(SIG_BLOCK, &s, 0);
            return *(volatile int *)8;
        }
        if (!strcmp(m, "exit")) exit(42);
        return 99;
    }

    signal(SIGUSR1, h_plain);
    raise(SIGUSR1);
    printf("raise handled: %d\n", got == SIGUSR1);

    struct sigaction sa = {0}, old;
    sa.sa_sigaction = h_info;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGUSR2, &sa, 0);
    got = 0;
    raise(SIGUSR2);
    printf("siginfo: sig=%d signo=%d code=%d\n", got, got_signo, got_code);
    got = 0;
    kill(getpid(), SIGUSR2);
    printf("kill: sig=%d code=%d\n", got, got_code);
    sigaction(SIGUSR2, 0, &old);
    printf("oldact: siginfo=%d same=%d\n", !!(old.sa_flags & SA_SIGINFO), old.sa_sigaction == h_info);

    sigset_t set, pend, cur;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigprocmask(SIG_BLOCK, &set, 0);
    got = 0;
    raise(SIGUSR1);
    sigpending(&pend);
    printf("blocked: got=%d pending=%d\n", got, sigismember(&pend, SIGUSR1));
    sigprocmask(SIG_UNBLOCK, &set, &cur);
    printf("unblocked: got=%d was_blocked=%d\n", got == SIGUSR1, sigismember(&cur, SIGUSR1));

    /* SA_RESETHAND: second raise gets the default action for SIGURG (ignore). */
    sa.sa_handler = h_plain;
    sa.sa_flags = SA_RESETHAND;
    sigaction(SIGURG, &sa, 0);
    got = 0;
    raise(SIGURG);
    sigaction(SIGURG, 0, &old);
    printf("resethand: got=%d reset=%d\n", got == SIGURG, old.sa_handler == SIG_DFL);

    /* Without SA_NODEFER a handler's own signal is blocked while it runs; with it, it nests. */
    sa.sa_handler = h_nest;
    sa.sa_flags = 0;
    sigaction(SIGHUP, &sa, 0);
    depth = maxdepth = calls = 0;
    raise(SIGHUP);
    printf("defer: maxdepth=%d calls=%d\n", maxdepth, calls);
    sa.sa_flags = SA_NODEFER;
    sigaction(SIGHUP, &sa, 0);
    depth = maxdepth = calls = 0;
    raise(SIGHUP);
    printf("nodefer: maxdepth=%d calls=%d\n", maxdepth, calls);

    /* sigaltstack + SA_ONSTACK */
    static char alt[65536];
    stack_t ss = {.ss_sp = alt, .ss_size = sizeof alt, .ss_flags = 0};
    printf("sigaltstack: %d\n", sigaltstack(&ss, 0));
    sa.sa_handler = h_stack;
    sa.sa_flags = SA_ONSTACK;
    sigaction(SIGALRM, &sa, 0);
    raise(SIGALRM);
    printf("on altstack: %d\n", handler_sp >= (uintptr_t)alt && handler_sp < (uintptr_t)alt + sizeof alt);
    sa.sa_flags = 0;
    sigaction(SIGALRM, &sa, 0);
    raise(SIGALRM);
    printf("off altstack: %d\n", !(handler_sp >= (uintptr_t)alt && handler_sp < (uintptr_t)alt + sizeof alt));
    stack_t oss;
    sigaltstack(0, &oss);
    printf("altstack query: %d %zu\n", oss.ss_sp == alt, oss.ss_size);

    /* Modify the ucontext to skip an ebreak: sigreturn must restore the edited pc. */
    sa.sa_sigaction = h_ucontext;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGTRAP, &sa, 0);
    got = 0;
    __asm__ volatile("ebreak");
    printf("sigtrap skipped: %d\n", got == SIGTRAP);

    /* SIGSEGV on NULL with si_addr, recovered by siglongjmp. */
    sa.sa_sigaction = h_segv;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, 0);
    got = 0;
    if (!sigsetjmp(env, 1)) *(volatile int *)0 = 1;
    printf("segv: got=%d addr=%lx\n", got == SIGSEGV, (unsigned long)handler_sp);
    got = 0;
    if (!sigsetjmp(env, 1)) *(volatile int *)0x1234 = 1;
    printf("segv again (mask restored): got=%d addr=%lx\n", got == SIGSEGV, (unsigned long)handler_sp);

    printf("sigaction SIGKILL: %d errno=%d\n", sigaction(SIGKILL, &sa, 0), errno);
    printf("kill bad sig: %d errno=%d\n", kill(getpid(), 65), errno);
    printf("tgkill bad tid: %d errno=%d\n", (int)syscall(SYS_tgkill, getpid(), 999999, SIGUSR1), errno);
    return 0;
}
