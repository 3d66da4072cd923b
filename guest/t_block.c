/* Ways a guest can block or run forever, for the scheduler's deadlock, timeout and stop paths. */
#include <linux/futex.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static int word;

static void *reader(void *arg) {
    char buf[64];
    ssize_t n = read(*(int *)arg, buf, sizeof buf - 1);
    buf[n > 0 ? n : 0] = 0;
    printf("reader got: %s\n", buf);
    return 0;
}

int main(int argc, char **argv) {
    const char *m = argc > 1 ? argv[1] : "";
    if (!strcmp(m, "futex")) syscall(SYS_futex, &word, FUTEX_WAIT, 0, 0, 0, 0);
    if (!strcmp(m, "sleep")) sleep(100);
    if (!strcmp(m, "spin"))
        for (volatile unsigned long i = 0;; i++) {
        }
    if (!strcmp(m, "stdin")) {
        char buf[64];
        ssize_t n = read(0, buf, sizeof buf - 1);
        buf[n > 0 ? n : 0] = 0;
        printf("stdin: %s\n", buf);
        return 0;
    }
    if (!strcmp(m, "pipe")) {
        /* A thread blocks reading a pipe while main sleeps then writes: the scheduler must run
         * main while the reader waits. */
        int p[2];
        pthread_t t;
        pipe(p);
        pthread_create(&t, 0, reader, &p[0]);
        usleep(30000);
        write(p[1], "late data", 9);
        pthread_join(t, 0);
        return 0;
    }
    if (!strcmp(m, "exec") && argc > 2) {
        /* execve replaces the program: the fd without FD_CLOEXEC survives, argv is the new one. */
        dup2(1, 9);
        char *args[] = {argv[2], "from-exec", 0};
        char *envp[] = {"X=1", 0};
        execve(argv[2], args, envp);
        perror("execve");
        return 1;
    }
    if (!strcmp(m, "join-self-deadlock")) {
        pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
        pthread_mutex_lock(&mu);
        pthread_mutex_lock(&mu);
    }
    printf("count %s\n", m);
    for (int i = 0; i < 5; i++) printf("%s %d\n", m, i);
    return 0;
}
