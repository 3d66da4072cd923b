/* Real-time signals queue (each instance is delivered, with its value); standard ones merge. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int rt_vals[8], n_rt, n_usr1;
static void on_rt(int sig, siginfo_t *si, void *uc) { (void)sig; (void)uc; rt_vals[n_rt++] = si->si_value.sival_int; }
static void on_usr1(int sig) { (void)sig; n_usr1++; }

int main(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_rt;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGRTMIN + 1, &sa, 0);
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, 0);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGRTMIN + 1);
    sigaddset(&set, SIGUSR1);
    sigprocmask(SIG_BLOCK, &set, 0);
    for (int i = 1; i <= 3; i++) {
        union sigval v = {.sival_int = i * 10};
        sigqueue(getpid(), SIGRTMIN + 1, v);
        kill(getpid(), SIGUSR1);
    }
    sigprocmask(SIG_UNBLOCK, &set, 0);
    printf("rt=%d [%d %d %d] usr1=%d\n", n_rt, rt_vals[0], rt_vals[1], rt_vals[2], n_usr1);
    return 0;
}
