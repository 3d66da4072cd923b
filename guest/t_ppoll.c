/* ppoll with a signal mask: SIGUSR1 is blocked normally, unblocked only while waiting. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static volatile int got;
static void on_usr1(int sig) { got = sig; }

static void *sender(void *arg) {
    (void)arg;
    usleep(100000);
    kill(getpid(), SIGUSR1);
    return 0;
}

int main(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, 0);
    sigset_t block, during, now;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    sigprocmask(SIG_BLOCK, &block, 0);
    sigemptyset(&during);
    int fds[2];
    pipe(fds);
    struct pollfd p = {fds[0], POLLIN, 0};
    pthread_t th;
    pthread_create(&th, 0, sender, 0);
    struct timespec ts = {5, 0};
    int r = ppoll(&p, 1, &ts, &during);
    int e = errno;
    sigprocmask(SIG_BLOCK, 0, &now);
    printf("ppoll=%d errno=%s got=%d usr1_blocked_after=%d\n", r, e == EINTR ? "EINTR" : "other", got,
           sigismember(&now, SIGUSR1));
    /* and with data ready, the mask comes back without any signal */
    write(fds[1], "x", 1);
    r = ppoll(&p, 1, &ts, &during);
    sigprocmask(SIG_BLOCK, 0, &now);
    printf("ppoll=%d revents=%d usr1_blocked_after=%d\n", r, p.revents, sigismember(&now, SIGUSR1));
    pthread_join(th, 0);
    return 0;
}
