/* Loops forever (for --timeout and Ctrl-C tests); prints once so the test knows it started. */
#include <stdio.h>
int main(void) {
    volatile unsigned long x = 0;
    printf("spinning\n");
    fflush(stdout);
    for (;;) x++;
}
