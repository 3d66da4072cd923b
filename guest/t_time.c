/* Clocks and sleeping. */
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/time.h>
#include <sys/times.h>
#include <time.h>
#include <unistd.h>

static long long ns(struct timespec t) { return t.tv_sec * 1000000000LL + t.tv_nsec; }

int main(void) {
    struct timespec a, b, r;
    clock_gettime(CLOCK_MONOTONIC, &a);
    struct timespec req = {0, 50 * 1000000};
    int rc = nanosleep(&req, 0);
    clock_gettime(CLOCK_MONOTONIC, &b);
    long long d = ns(b) - ns(a);
    printf("nanosleep: rc=%d slept>=50ms: %d <2s: %d\n", rc, d >= 50000000, d < 2000000000);
    clock_gettime(CLOCK_MONOTONIC, &a);
    usleep(20000);
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("usleep: %d\n", ns(b) - ns(a) >= 20000000);
    clock_gettime(CLOCK_MONOTONIC, &a);
    struct timespec abs = a;
    abs.tv_nsec += 30000000;
    if (abs.tv_nsec >= 1000000000) abs.tv_sec++, abs.tv_nsec -= 1000000000;
    rc = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &abs, 0);
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("clock_nanosleep abs: rc=%d ok=%d\n", rc, ns(b) >= ns(abs));
    struct timeval tv;
    gettimeofday(&tv, 0);
    time_t now = time(0);
    printf("gettimeofday ~ time: %d\n", tv.tv_sec - now <= 1 && now - tv.tv_sec <= 1);
    printf("after 2020: %d\n", now > 1577836800);
    clock_getres(CLOCK_MONOTONIC, &r);
    printf("getres monotonic: %d\n", r.tv_sec == 0 && r.tv_nsec > 0 && r.tv_nsec <= 1000000);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &a);
    volatile unsigned long x = 0;
    for (int i = 0; i < 200000; i++) x += i;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &b);
    printf("cputime advances: %d\n", ns(b) >= ns(a));
    printf("bad clock: %d\n", clock_gettime(12345, &a));
    long long prev = 0;
    int mono = 1;
    for (int i = 0; i < 100; i++) {
        clock_gettime(CLOCK_MONOTONIC, &a);
        if (ns(a) < prev) mono = 0;
        prev = ns(a);
    }
    printf("monotonic: %d\n", mono);
    struct tms t;
    printf("times: %d\n", times(&t) != (clock_t)-1);
    return 0;
}
