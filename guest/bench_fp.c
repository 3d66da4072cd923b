/* Floating-point benchmark: a small n-body step loop and a double matrix product. */
#include <math.h>
#include <stdio.h>

static double a[24][24], b[24][24], c[24][24];

int main(void) {
    double x[5] = {0, 1, 0, -1, 0.5}, y[5] = {0, 0, 1, 0, 0.5}, vx[5] = {0}, vy[5] = {0};
    for (int step = 0; step < 4000; step++)
        for (int i = 0; i < 5; i++) {
            double ax = 0, ay = 0;
            for (int j = 0; j < 5; j++) {
                if (i == j) continue;
                double dx = x[j] - x[i], dy = y[j] - y[i];
                double d2 = dx * dx + dy * dy + 0.01;
                double inv = 1.0 / (d2 * sqrt(d2));
                ax += dx * inv;
                ay += dy * inv;
            }
            vx[i] += 0.001 * ax;
            vy[i] += 0.001 * ay;
            x[i] += 0.001 * vx[i];
            y[i] += 0.001 * vy[i];
        }
    for (int i = 0; i < 24; i++)
        for (int j = 0; j < 24; j++) { a[i][j] = i * 0.5 + j; b[i][j] = i - j * 0.25; }
    for (int i = 0; i < 24; i++)
        for (int j = 0; j < 24; j++) {
            double s = 0;
            for (int k = 0; k < 24; k++) s += a[i][k] * b[k][j];
            c[i][j] = s;
        }
    double sum = 0;
    for (int i = 0; i < 24; i++) for (int j = 0; j < 24; j++) sum += c[i][j];
    printf("x0=%.6f y0=%.6f sum=%.3f\n", x[0], y[0], sum);
    return 0;
}
