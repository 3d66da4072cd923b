/* Identity, system information, randomness, limits, the auxiliary vector, riscv_hwprobe. */
#define _GNU_SOURCE
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <sys/utsname.h>
#include <unistd.h>

struct hwprobe { int64_t key; uint64_t value; };

int main(int argc, char **argv, char **envp) {
    struct utsname u;
    uname(&u);
    printf("uname: %s %s\n", u.sysname, u.machine);
    unsigned char r1[16] = {0}, r2[16] = {0};
    printf("getrandom: %zd %zd\n", getrandom(r1, 16, 0), getrandom(r2, 16, 0));
    /* (every byte compared: memcmp's count would depend on where the random bytes differ,
       and the tests compare instruction counts between engines) */
    unsigned char diff = 0;
    for (int i = 0; i < 16; i++)
        diff |= r1[i] ^ r2[i];
    printf("random differs: %d\n", diff != 0);
    printf("pid==tid: %d ppid>0: %d\n", getpid() == (pid_t)syscall(SYS_gettid), getppid() > 0);
    printf("uid matches euid: %d\n", getuid() == geteuid());
    struct sysinfo si;
    printf("sysinfo: %d ram>0: %d\n", sysinfo(&si), si.totalram > 0);
    struct rlimit rl;
    getrlimit(RLIMIT_STACK, &rl);
    printf("stack rlimit: %lu\n", (unsigned long)rl.rlim_cur);
    getrlimit(RLIMIT_NOFILE, &rl);
    printf("nofile: %lu\n", (unsigned long)rl.rlim_cur);
    rl.rlim_cur = 256;
    printf("setrlimit: %d\n", setrlimit(RLIMIT_NOFILE, &rl));
    getrlimit(RLIMIT_NOFILE, &rl);
    printf("nofile now: %lu\n", (unsigned long)rl.rlim_cur);
    cpu_set_t cs;
    CPU_ZERO(&cs);
    printf("affinity: %d cpus>=1: %d\n", sched_getaffinity(0, sizeof cs, &cs), CPU_COUNT(&cs) >= 1);
    printf("nprocs>=1: %d\n", sysconf(_SC_NPROCESSORS_ONLN) >= 1);
    printf("umask: %o %o\n", umask(077), umask(022));
    struct rusage ru;
    printf("getrusage: %d\n", getrusage(RUSAGE_SELF, &ru));
    printf("sched_yield: %d\n", sched_yield());

    printf("AT_PAGESZ: %lu\n", getauxval(AT_PAGESZ));
    unsigned long hw = getauxval(AT_HWCAP);
    printf("AT_HWCAP imafdc: %d %d %d %d %d %d\n", !!(hw & (1 << ('i' - 'a'))), !!(hw & (1 << ('m' - 'a'))),
           !!(hw & (1 << ('a' - 'a'))), !!(hw & (1 << ('f' - 'a'))), !!(hw & (1 << ('d' - 'a'))),
           !!(hw & (1 << ('c' - 'a'))));
    printf("AT_SECURE: %lu AT_BASE: %lu\n", getauxval(AT_SECURE), getauxval(AT_BASE));
    unsigned char *rnd = (unsigned char *)getauxval(AT_RANDOM);
    int nz = 0;
    for (int i = 0; i < 16; i++) nz |= rnd[i];
    printf("AT_RANDOM nonzero: %d\n", nz != 0);
    const char *fn = (const char *)getauxval(AT_EXECFN);
    printf("AT_EXECFN set: %d\n", fn && fn[0]);
    printf("AT_ENTRY set: %d AT_PHNUM>0: %d\n", getauxval(AT_ENTRY) != 0, getauxval(AT_PHNUM) > 0);
    printf("AT_MINSIGSTKSZ>0: %d\n", getauxval(51) > 0);
    int sp_aligned;
    {
        void *spv = __builtin_frame_address(0);
        sp_aligned = ((uintptr_t)spv & 15) == 0;
    }
    printf("frame aligned: %d\n", sp_aligned);
    printf("argc=%d argv0 set: %d\n", argc, argv[0] && argv[0][0]);
    const char *e = getenv("POLYVM_TEST_VAR");
    printf("env: %s\n", e ? e : "(unset)");

    struct hwprobe pairs[4] = {{3, 0}, {4, 0}, {1234, 0}, {0, 0}};
    long rc = syscall(258, pairs, 4, 0, 0, 0);
    printf("hwprobe: rc=%ld base=%lu ima_ext0 fd=%d c=%d zba=%d zbb=%d zbs=%d v=%d unknown_key=%ld\n", rc,
           (unsigned long)pairs[0].value, !!(pairs[1].value & 1), !!(pairs[1].value & 2), !!(pairs[1].value & 8),
           !!(pairs[1].value & 16), !!(pairs[1].value & 32), !!(pairs[1].value & 4), (long)pairs[2].key);
    printf("unknown syscall: %ld\n", syscall(1999));
    return 7;
}
