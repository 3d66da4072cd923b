/* pthreads: create/join, a mutex-protected sum over 4 threads, a condvar handoff, TLS. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#define NT 4
#define PER 2000

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static long total;
static long shared_unlocked_ok;
static __thread long tls_val;
static int tids[NT];
static int queue[16], qn, done;

static void *summer(void *arg) {
    long id = (long)arg;
    tls_val = id * 100;
    tids[id] = (int)syscall(SYS_gettid);
    for (int i = 1; i <= PER; i++) {
        pthread_mutex_lock(&mu);
        total += i;
        pthread_mutex_unlock(&mu);
        if (i % 500 == 0) sched_yield();
    }
    return (void *)(tls_val + id);
}

static void *producer(void *arg) {
    (void)arg;
    for (int i = 1; i <= 10; i++) {
        pthread_mutex_lock(&mu);
        while (qn == 16) pthread_cond_wait(&cv, &mu);
        queue[qn++] = i;
        pthread_cond_broadcast(&cv);
        pthread_mutex_unlock(&mu);
    }
    pthread_mutex_lock(&mu);
    done = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    return 0;
}

static void *consumer(void *arg) {
    long sum = 0;
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&mu);
        while (qn == 0 && !done) pthread_cond_wait(&cv, &mu);
        if (qn == 0 && done) {
            pthread_mutex_unlock(&mu);
            break;
        }
        sum += queue[--qn];
        pthread_cond_broadcast(&cv);
        pthread_mutex_unlock(&mu);
    }
    return (void *)sum;
}

int main(void) {
    pthread_t th[NT];
    tls_val = -1;
    for (long i = 0; i < NT; i++) pthread_create(&th[i], 0, summer, (void *)i);
    long rets = 0;
    for (int i = 0; i < NT; i++) {
        void *r;
        pthread_join(th[i], &r);
        rets += (long)r;
    }
    printf("sum: %ld (expect %ld)\n", total, (long)NT * PER * (PER + 1) / 2);
    printf("join values: %ld\n", rets);
    printf("main tls untouched: %ld\n", tls_val);
    int distinct = 1;
    for (int i = 0; i < NT; i++)
        for (int j = i + 1; j < NT; j++)
            if (tids[i] == tids[j]) distinct = 0;
    printf("distinct tids: %d, none is main: %d\n", distinct, tids[0] != getpid());

    pthread_t p, c1, c2;
    pthread_create(&c1, 0, consumer, 0);
    pthread_create(&c2, 0, consumer, 0);
    pthread_create(&p, 0, producer, 0);
    void *s1, *s2;
    pthread_join(p, 0);
    pthread_join(c1, &s1);
    pthread_join(c2, &s2);
    printf("condvar total: %ld\n", (long)s1 + (long)s2);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 20 * 1000000;
    if (ts.tv_nsec >= 1000000000) ts.tv_sec++, ts.tv_nsec -= 1000000000;
    pthread_mutex_lock(&mu);
    int rc = pthread_cond_timedwait(&cv, &mu, &ts);
    pthread_mutex_unlock(&mu);
    printf("timedwait: %s\n", rc == 110 ? "ETIMEDOUT" : "other");
    (void)shared_unlocked_ok;
    return 0;
}
