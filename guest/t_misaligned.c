/* A misaligned AMO raises SIGBUS (BUS_ADRALN) with si_addr = the address. */
#include <stdio.h>
#include <signal.h>
#include <string.h>
#include <stdlib.h>
#include <unistd.h>
static long buf[4];
static void h(int sig, siginfo_t *si, void *uc) {
    printf("sig=%d code=%d addr_off=%ld\n", sig, si->si_code, (long)((char*)si->si_addr - (char*)buf));
    fflush(stdout);
    _exit(0);
}
int main(void) {
    struct sigaction sa; memset(&sa, 0, sizeof sa); sa.sa_sigaction = h; sa.sa_flags = SA_SIGINFO;
    sigaction(SIGBUS, &sa, 0);
    int *p = (int *)((char *)buf + 2);
    printf("buf aligned: %d\n", ((long)buf & 7) == 0);
    fflush(stdout);
    __atomic_fetch_add(p, 1, __ATOMIC_SEQ_CST);
    printf("no trap\n");
    return 1;
}
