#include <stdio.h>
int main(int argc, char **argv) {
    printf("hello from %s with %d args\n", argc > 0 ? "riscv64" : "?", argc);
    for (int i = 1; i < argc; i++) printf("arg[%d]=%s\n", i, argv[i]);
    return 3;
}
