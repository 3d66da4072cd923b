/* Opens each path in argv and prints its first line, or the errno: for --root escape tests. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    char buf[256];
    for (int i = 1; i < argc; i++) {
        if (!strncmp(argv[i], "readlink:", 9)) {
            ssize_t n = readlink(argv[i] + 9, buf, sizeof buf - 1);
            if (n < 0) printf("%s: errno %d\n", argv[i], errno);
            else printf("%s: -> %.*s\n", argv[i], (int)n, buf);
            continue;
        }
        if (!strncmp(argv[i], "chdir:", 6)) {
            int rc = chdir(argv[i] + 6);
            printf("%s: %d cwd=%s\n", argv[i], rc, getcwd(buf, sizeof buf) ? buf : "?");
            continue;
        }
        int fd = open(argv[i], O_RDONLY);
        if (fd < 0) {
            printf("%s: errno %d\n", argv[i], errno);
            continue;
        }
        ssize_t n = read(fd, buf, sizeof buf - 1);
        buf[n > 0 ? n : 0] = 0;
        char *nl = strchr(buf, '\n');
        if (nl) *nl = 0;
        printf("%s: %s\n", argv[i], buf);
        close(fd);
    }
    return 0;
}
