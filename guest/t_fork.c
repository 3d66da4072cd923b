/* Processes: fork, vfork, posix_spawn, execve in the child, wait4/waitpid/waitid, SIGCHLD, kill,
 * pipes between processes. Usage: t_fork MODE [PROGRAM]; PROGRAM is a guest executable to run. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static void msleep(int ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

static void show(const char *what, pid_t pid, pid_t want, int st) {
    printf("%s: pid ok %d", what, pid == want);
    if (WIFEXITED(st)) printf(" exited %d\n", WEXITSTATUS(st));
    else if (WIFSIGNALED(st)) printf(" signaled %d\n", WTERMSIG(st));
    else printf(" status %#x\n", st);
}

static volatile sig_atomic_t got_chld, chld_code, chld_status, chld_pid_ok;
static pid_t chld_expect;

static void on_chld(int sig, siginfo_t *si, void *uc) {
    (void)uc;
    got_chld = sig;
    chld_code = si->si_code;
    chld_status = si->si_status;
    chld_pid_ok = si->si_pid == chld_expect;
}

static void on_usr1(int sig) {
    (void)sig;
    _exit(42);
}

static volatile long counter;
static volatile int stop_thread;

static void *spin(void *arg) {
    (void)arg;
    while (!stop_thread) counter++;
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *m = argc > 1 ? argv[1] : "basic";
    const char *prog = argc > 2 ? argv[2] : "/nonexistent";
    int st = 0;

    if (!strcmp(m, "basic")) {
        pid_t me = getpid();
        pid_t c = fork();
        if (c == 0) {
            printf("child: ppid ok %d, new pid %d\n", getppid() == me, getpid() != me);
            _exit(7);
        }
        pid_t r = waitpid(c, &st, 0);
        show("exit 7", r, c, st);
        c = fork();
        if (c == 0) {
            kill(getpid(), SIGKILL);
            _exit(1);
        }
        show("sigkill", waitpid(c, &st, 0), c, st);
        c = fork();
        if (c == 0) abort();
        show("abort", waitpid(c, &st, 0), c, st);
        c = fork();
        if (c == 0) {
            volatile int *bad = (int *)16;
            return *bad;
        }
        show("segv", waitpid(c, &st, 0), c, st);
        c = fork();
        if (c == 0) return 300; /* exit status is the low 8 bits */
        show("return 300", waitpid(c, &st, 0), c, st);
        errno = 0;
        printf("no more children: %d errno=%d\n", (int)waitpid(-1, &st, 0), errno);
        printf("wait bad pid: %d errno=%d\n", (int)waitpid(c, &st, WNOHANG), errno);
        int x = 1;
        c = fork();
        if (c == 0) {
            x = 2; /* the child's memory is a copy */
            _exit(x);
        }
        waitpid(c, &st, 0);
        printf("memory copied: parent x=%d child exit %d\n", x, WEXITSTATUS(st));
    } else if (!strcmp(m, "pipe")) {
        int p[2];
        pipe(p);
        pid_t c = fork();
        if (c == 0) {
            close(p[0]);
            static char buf[200000];
            for (size_t i = 0; i < sizeof buf; i++) buf[i] = (char)(i * 7);
            size_t off = 0;
            while (off < sizeof buf) {
                ssize_t n = write(p[1], buf + off, sizeof buf - off);
                if (n <= 0) _exit(9);
                off += (size_t)n;
            }
            _exit(0);
        }
        close(p[1]);
        static char got[300000];
        size_t total = 0;
        ssize_t n;
        while ((n = read(p[0], got + total, sizeof got - total)) > 0) total += (size_t)n;
        int ok = 1;
        for (size_t i = 0; i < total; i++) ok &= got[i] == (char)(i * 7);
        printf("read %zu bytes, content ok %d, eof %zd\n", total, ok, n);
        show("writer", waitpid(c, &st, 0), c, st);
        /* A reader that went away: the writer gets SIGPIPE. (It writes once the parent has
           closed its ends: the parent closes the gate after them.) */
        int gate[2];
        pipe(p);
        pipe(gate);
        c = fork();
        if (c == 0) {
            char g;
            close(p[0]);
            close(gate[1]);
            while (read(gate[0], &g, 1) < 0 && errno == EINTR) {
            }
            write(p[1], "x", 1);
            _exit(0);
        }
        close(gate[0]);
        close(p[0]);
        close(p[1]);
        close(gate[1]);
        show("sigpipe", waitpid(c, &st, 0), c, st);
        /* Two-way: the parent sends, the child upper-cases and answers. */
        int up[2], down[2];
        pipe(up);
        pipe(down);
        c = fork();
        if (c == 0) {
            close(down[1]);
            close(up[0]);
            char b[64];
            ssize_t k = read(down[0], b, sizeof b);
            for (ssize_t i = 0; i < k; i++)
                if (b[i] >= 'a' && b[i] <= 'z') b[i] -= 32;
            write(up[1], b, (size_t)k);
            _exit(0);
        }
        close(down[0]);
        close(up[1]);
        write(down[1], "ping pong", 9);
        char b[64] = {0};
        ssize_t k = read(up[0], b, sizeof b - 1);
        printf("answer: %zd %s\n", k, b);
        waitpid(c, &st, 0);
    } else if (!strcmp(m, "exec")) {
        pid_t c = fork();
        if (c == 0) {
            char *args[] = {"hello", "x", "y z", NULL};
            execve(prog, args, environ);
            _exit(99);
        }
        show("exec hello", waitpid(c, &st, 0), c, st);
        c = fork();
        if (c == 0) {
            char *args[] = {"missing", NULL};
            execve("/nonexistent/prog", args, environ);
            printf("execve failed: errno=%d\n", errno);
            _exit(127);
        }
        show("exec missing", waitpid(c, &st, 0), c, st);
        c = vfork();
        if (c == 0) {
            char *args[] = {"hello", NULL};
            execve(prog, args, environ);
            _exit(99);
        }
        show("vfork exec", waitpid(c, &st, 0), c, st);
        pid_t sp;
        char *sargs[] = {"hello", "spawned", NULL};
        int rc = posix_spawn(&sp, prog, NULL, NULL, sargs, environ);
        /* (reported after the wait: the spawned child runs alongside, and its output would
         * race this line) */
        pid_t w = waitpid(sp, &st, 0);
        printf("posix_spawn: %d\n", rc);
        show("spawned", w, sp, st);
        rc = posix_spawn(&sp, "/nonexistent/prog", NULL, NULL, sargs, environ);
        printf("posix_spawn missing: %d\n", rc);
        if (rc == 0) waitpid(sp, &st, 0);
    } else if (!strcmp(m, "wnohang")) {
        /* The child exits once the parent has closed the gate (after three polls): no timing. */
        int gate[2];
        pipe(gate);
        pid_t c = fork();
        if (c == 0) {
            char b;
            close(gate[1]);
            while (read(gate[0], &b, 1) < 0 && errno == EINTR) {
            }
            _exit(5);
        }
        close(gate[0]);
        printf("wnohang at once: %d\n", (int)waitpid(c, &st, WNOHANG));
        int polls = 0;
        pid_t r;
        while ((r = waitpid(c, &st, WNOHANG)) == 0) {
            if (++polls == 3) close(gate[1]);
            msleep(10);
        }
        printf("polled several times: %d\n", polls >= 3);
        show("wnohang", r, c, st);
        /* Three children, reaped in any order by wait(-1); rusage is filled. */
        int seen = 0;
        for (int i = 1; i <= 3; i++) {
            if (fork() == 0) {
                msleep(20 * i);
                _exit(10 + i);
            }
        }
        for (int i = 0; i < 3; i++) {
            struct rusage ru;
            memset(&ru, 0xff, sizeof ru);
            pid_t w = wait4(-1, &st, 0, &ru);
            if (w > 0 && WIFEXITED(st)) seen |= 1 << (WEXITSTATUS(st) - 10);
            if (ru.ru_utime.tv_usec < 0 || ru.ru_utime.tv_usec >= 1000000) seen |= 64;
        }
        printf("wait any: %#x, then %d\n", seen, (int)wait(&st));
        /* waitid: WNOWAIT leaves the child for a later wait. */
        c = fork();
        if (c == 0) _exit(33);
        siginfo_t si;
        memset(&si, 0, sizeof si);
        int rc = waitid(P_PID, (id_t)c, &si, WEXITED | WNOWAIT);
        printf("waitid nowait: %d code=%d status=%d pid ok %d signo=%d\n", rc, si.si_code, si.si_status,
               si.si_pid == c, si.si_signo);
        memset(&si, 0, sizeof si);
        rc = waitid(P_ALL, 0, &si, WEXITED);
        printf("waitid: %d code=%d status=%d pid ok %d\n", rc, si.si_code, si.si_status, si.si_pid == c);
        pipe(gate);
        c = fork();
        if (c == 0) {
            char b;
            close(gate[1]);
            while (read(gate[0], &b, 1) < 0 && errno == EINTR) {
            }
            _exit(0);
        }
        close(gate[0]);
        memset(&si, 0xff, sizeof si);
        rc = waitid(P_PID, (id_t)c, &si, WEXITED | WNOHANG);
        printf("waitid wnohang: %d pid=%d\n", rc, (int)si.si_pid);
        close(gate[1]);
        waitpid(c, &st, 0);
    } else if (!strcmp(m, "sigchld")) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_chld;
        sa.sa_flags = SA_SIGINFO | SA_RESTART;
        sigaction(SIGCHLD, &sa, NULL);
        sigset_t block, old;
        sigemptyset(&block);
        sigaddset(&block, SIGCHLD);
        sigprocmask(SIG_BLOCK, &block, &old);
        pid_t c = fork();
        if (c == 0) {
            msleep(30);
            _exit(9);
        }
        chld_expect = c;
        while (!got_chld) sigsuspend(&old);
        printf("sigchld: sig=%d code=%d status=%d pid ok %d\n", got_chld, chld_code, chld_status, chld_pid_ok);
        show("reaped", waitpid(c, &st, 0), c, st);
        sigprocmask(SIG_SETMASK, &old, NULL);
        /* A blocking waitpid while the handler is installed: the child is returned, the handler runs. */
        got_chld = 0;
        c = fork();
        if (c == 0) _exit(2);
        chld_expect = c;
        show("waitpid with handler", waitpid(c, &st, 0), c, st);
        msleep(10);
        printf("handler ran: %d\n", got_chld == SIGCHLD);
        /* Default action (ignore): nothing happens, the status is still there. */
        signal(SIGCHLD, SIG_DFL);
        c = fork();
        if (c == 0) _exit(4);
        msleep(50);
        show("default sigchld", waitpid(c, &st, 0), c, st);
        /* kill: the child's SIGUSR1 handler exits 42; SIGTERM's default kills. */
        int ready[2];
        pipe(ready);
        c = fork();
        if (c == 0) {
            signal(SIGUSR1, on_usr1);
            write(ready[1], "r", 1);
            for (;;) pause();
        }
        char b;
        read(ready[0], &b, 1);
        printf("kill usr1: %d\n", kill(c, SIGUSR1));
        show("usr1 handler", waitpid(c, &st, 0), c, st);
        c = fork();
        if (c == 0) {
            for (;;) pause();
        }
        msleep(20);
        printf("kill 0: %d\n", kill(c, 0));
        printf("kill term: %d\n", kill(c, SIGTERM));
        show("sigterm", waitpid(c, &st, 0), c, st);
        printf("kill reaped: %d errno=%d\n", kill(c, SIGTERM), errno);
    } else if (!strcmp(m, "hang")) {
        /* The parent is stopped (timeout) while its child still runs. */
        pid_t c = fork();
        if (c == 0) {
            for (;;) pause();
        }
        printf("child %d\n", (int)c);
        waitpid(c, &st, 0);
        printf("not reached\n");
    } else if (!strcmp(m, "threads")) {
        /* A blocking waitpid must not stop the other guest threads. */
        pthread_t th;
        pthread_create(&th, NULL, spin, NULL);
        pid_t c = fork();
        if (c == 0) {
            /* Only the forking thread exists in the child. */
            msleep(150);
            _exit(counter >= 0 ? 6 : 0);
        }
        long before = counter;
        waitpid(c, &st, 0);
        long after = counter;
        stop_thread = 1;
        pthread_join(th, NULL);
        printf("thread ran during waitpid: %d\n", after > before);
        show("child of threaded", c, c, st);
    }
    return 0;
}
