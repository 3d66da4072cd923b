/* File syscalls in a scratch directory given as argv[1]. Expected output: hand-written in
 * tests/test_linux_guest.py from POSIX semantics. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

static char paths[4][1024];
static int which;
static const char *P(const char *dir, const char *name) {
    char *path = paths[which++ & 3];
    snprintf(path, sizeof paths[0], "%s/%s", dir, name);
    return path;
}

static int cmp(const void *a, const void *b) { return strcmp(*(char **)a, *(char **)b); }

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    const char *d = argv[1];
    char buf[256];

    int fd = open(P(d, "a.txt"), O_CREAT | O_WRONLY | O_TRUNC, 0640);
    printf("open: %s\n", fd >= 3 ? "ok" : "fail");
    printf("write: %zd\n", write(fd, "hello, world\n", 13));
    struct iovec iov[2] = {{"abc", 3}, {"defg\n", 5}};
    printf("writev: %zd\n", writev(fd, iov, 2));
    printf("pwrite: %zd\n", pwrite(fd, "HELLO", 5, 0));
    close(fd);

    fd = open(P(d, "a.txt"), O_RDONLY);
    ssize_t n = read(fd, buf, sizeof buf);
    buf[n] = 0;
    printf("read %zd: %s", n, buf);
    printf("lseek end: %ld\n", (long)lseek(fd, 0, SEEK_END));
    printf("lseek set: %ld\n", (long)lseek(fd, 7, SEEK_SET));
    n = read(fd, buf, 5);
    buf[n] = 0;
    printf("after seek: %s\n", buf);
    n = pread(fd, buf, 3, 13);
    buf[n] = 0;
    printf("pread: %s\n", buf);
    char b1[4] = {0}, b2[4] = {0};
    struct iovec riov[2] = {{b1, 3}, {b2, 3}};
    lseek(fd, 0, SEEK_SET);
    printf("readv: %zd %s %s\n", readv(fd, riov, 2), b1, b2);

    struct stat st;
    fstat(fd, &st);
    printf("fstat: size=%ld reg=%d mode=%o\n", (long)st.st_size, S_ISREG(st.st_mode), st.st_mode & 0777);
    int fd2 = dup(fd);
    printf("dup shares offset: %ld\n", (long)lseek(fd2, 0, SEEK_CUR));
    int fd3 = fcntl(fd, F_DUPFD_CLOEXEC, 10);
    printf("dupfd_cloexec: %d cloexec=%d\n", fd3 >= 10, fcntl(fd3, F_GETFD) & FD_CLOEXEC);
    printf("getfl rdonly: %d\n", (fcntl(fd, F_GETFL) & O_ACCMODE) == O_RDONLY);
    printf("dup2: %d\n", dup2(fd, 20));
    close(fd2);
    close(fd3);
    close(20);
    printf("close twice: %d errno=%d\n", close(20), errno);
    printf("read bad fd: %zd errno=%d\n", read(99, buf, 1), errno);
    close(fd);

    printf("stat missing: %d errno=%d\n", stat(P(d, "missing"), &st), errno);
    printf("open missing: %d errno=%d\n", open(P(d, "missing"), O_RDONLY), errno);
    printf("excl exists: %d errno=%d\n", open(P(d, "a.txt"), O_CREAT | O_EXCL | O_WRONLY, 0600), errno);
    printf("mkdir: %d\n", mkdir(P(d, "sub"), 0755));
    printf("mkdir again: %d errno=%d\n", mkdir(P(d, "sub"), 0755), errno);
    printf("stat dir: %d\n", stat(P(d, "sub"), &st) == 0 && S_ISDIR(st.st_mode));
    printf("rename: %d\n", rename(P(d, "a.txt"), P(d, "sub/b.txt")));
    printf("access old: %d errno=%d\n", access(P(d, "a.txt"), F_OK), errno);
    printf("access new: %d\n", access(P(d, "sub/b.txt"), R_OK | W_OK));
    printf("symlink: %d\n", symlink("sub/b.txt", P(d, "link")));
    n = readlink(P(d, "link"), buf, sizeof buf);
    buf[n < 0 ? 0 : n] = 0;
    printf("readlink: %s\n", buf);
    printf("lstat link: %d\n", lstat(P(d, "link"), &st) == 0 && S_ISLNK(st.st_mode));
    printf("stat via link: size=%ld\n", stat(P(d, "link"), &st) == 0 ? (long)st.st_size : -1L);

    int fdd = open(P(d, "x1"), O_CREAT | O_WRONLY, 0644);
    close(fdd);
    DIR *dir = opendir(d);
    char *names[16];
    int cnt = 0;
    struct dirent *de;
    while ((de = readdir(dir)) && cnt < 16) names[cnt++] = strdup(de->d_name);
    closedir(dir);
    qsort(names, cnt, sizeof *names, cmp);
    printf("dir:");
    for (int i = 0; i < cnt; i++) printf(" %s", names[i]);
    printf("\n");

    printf("rmdir nonempty: %d errno=%d\n", rmdir(P(d, "sub")), errno);
    printf("unlink: %d\n", unlink(P(d, "sub/b.txt")));
    printf("rmdir: %d\n", rmdir(P(d, "sub")));
    printf("unlink dangling link: %d\n", unlink(P(d, "link")));

    if (chdir(d) == 0) {
        char *cwd = getcwd(buf, sizeof buf);
        printf("chdir+getcwd: %d\n", cwd && strcmp(cwd, d) == 0);
        fdd = open("rel.txt", O_CREAT | O_RDWR, 0600);
        write(fdd, "0123456789", 10);
        ftruncate(fdd, 4);
        fstat(fdd, &st);
        printf("ftruncate: %ld\n", (long)st.st_size);
        int fo = open("copy.txt", O_CREAT | O_WRONLY, 0600);
        off_t off = 1;
        printf("sendfile: %zd off=%ld\n", sendfile(fo, fdd, &off, 100), (long)off);
        close(fo);
        fo = open("copy.txt", O_RDONLY);
        n = read(fo, buf, 10);
        buf[n] = 0;
        printf("copy: %s\n", buf);
        close(fo);
        close(fdd);
        fdd = open("app.txt", O_CREAT | O_WRONLY | O_APPEND, 0600);
        write(fdd, "one", 3);
        lseek(fdd, 0, SEEK_SET);
        write(fdd, "two", 3);
        close(fdd);
        fdd = open("app.txt", O_RDONLY);
        n = read(fdd, buf, 10);
        buf[n] = 0;
        printf("append: %s\n", buf);
        close(fdd);
    }

    int p[2];
    printf("pipe: %d\n", pipe(p));
    write(p[1], "through a pipe", 14);
    n = read(p[0], buf, sizeof buf);
    buf[n] = 0;
    printf("pipe read: %s\n", buf);
    close(p[1]);
    printf("pipe eof: %zd\n", read(p[0], buf, sizeof buf));
    close(p[0]);
    printf("isatty file: %d errno=%d\n", isatty(open("rel.txt", O_RDONLY)), errno);

    n = readlink("/proc/self/exe", buf, sizeof buf);
    printf("proc self exe: %d\n", n > 0 && buf[0] == '/');
    fdd = open("/proc/self/maps", O_RDONLY);
    n = read(fdd, buf, sizeof buf - 1);
    buf[n > 0 ? n : 0] = 0;
    printf("proc self maps: %d\n", n > 0 && strchr(buf, '-') != NULL);
    printf("bad pointer: %zd errno=%d\n", write(1, (void *)16, 10), errno);
    printf("bad path: %d errno=%d\n", open((char *)16, O_RDONLY), errno);
    return 0;
}
