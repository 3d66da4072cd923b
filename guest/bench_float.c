/* Floating-point CPU benchmark (bench/cpu_suite.py): the five-body planetary simulation
 * (double, sqrt and divide), a double and a float dense matrix product (fmadd), a float
 * rational-polynomial/sqrt kernel (fdiv.s, fsqrt.s) and a double Mandelbrot set.
 *
 *     bench_float [SCALE]     SCALE (default 1.0) multiplies every kernel's repetitions; below 1
 *                             it also shrinks the matrices and arrays, so tiny scales run quickly.
 *
 * Prints one line of results. Every operation is IEEE-754 with round-to-nearest, so the line
 * is the same on every correct riscv64 implementation. (The compiler fuses a * b + c into
 * fmadd, so a host build without FMA differs in the last digits of sgemm and poly.) */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static long scaled(double scale, long base) {
    long n = (long)(base * scale + 0.5);
    return n < 1 ? 1 : n;
}

/* Array sizes: full size from scale 1 up, shrunk below 1 (never under min). */
static int elems(double scale, int full, int min) {
    if (scale >= 1) return full;
    int n = (int)(full * scale);
    return n < min ? min : n;
}

/* ---- n-body (the Computer Language Benchmarks Game's planets) ---- */
#define PI 3.141592653589793
#define SOLAR_MASS (4 * PI * PI)
#define DAYS_PER_YEAR 365.24
#define NBODIES 5

struct body { double x, y, z, vx, vy, vz, mass; };

static struct body bodies[NBODIES] = {
    {0, 0, 0, 0, 0, 0, SOLAR_MASS},
    {4.84143144246472090e+00, -1.16032004402742839e+00, -1.03622044471123109e-01,
     1.66007664274403694e-03 * DAYS_PER_YEAR, 7.69901118419740425e-03 * DAYS_PER_YEAR,
     -6.90460016972063023e-05 * DAYS_PER_YEAR, 9.54791938424326609e-04 * SOLAR_MASS},
    {8.34336671824457987e+00, 4.12479856412430479e+00, -4.03523417114321381e-01,
     -2.76742510726862411e-03 * DAYS_PER_YEAR, 4.99852801234917238e-03 * DAYS_PER_YEAR,
     2.30417297573763929e-05 * DAYS_PER_YEAR, 2.85885980666130812e-04 * SOLAR_MASS},
    {1.28943695621391310e+01, -1.51111514016986312e+01, -2.23307578892655734e-01,
     2.96460137564761618e-03 * DAYS_PER_YEAR, 2.37847173959480950e-03 * DAYS_PER_YEAR,
     -2.96589568540237556e-05 * DAYS_PER_YEAR, 4.36624404335156298e-05 * SOLAR_MASS},
    {1.53796971148509165e+01, -2.59193146099879641e+01, 1.79258772950371181e-01,
     2.68067772490389322e-03 * DAYS_PER_YEAR, 1.62824170038242295e-03 * DAYS_PER_YEAR,
     -9.51592254519715870e-05 * DAYS_PER_YEAR, 5.15138902046611451e-05 * SOLAR_MASS},
};

static void offset_momentum(void) {
    double px = 0, py = 0, pz = 0;
    for (int i = 0; i < NBODIES; i++) {
        px += bodies[i].vx * bodies[i].mass;
        py += bodies[i].vy * bodies[i].mass;
        pz += bodies[i].vz * bodies[i].mass;
    }
    bodies[0].vx = -px / SOLAR_MASS;
    bodies[0].vy = -py / SOLAR_MASS;
    bodies[0].vz = -pz / SOLAR_MASS;
}

static double energy(void) {
    double e = 0;
    for (int i = 0; i < NBODIES; i++) {
        struct body *b = &bodies[i];
        e += 0.5 * b->mass * (b->vx * b->vx + b->vy * b->vy + b->vz * b->vz);
        for (int j = i + 1; j < NBODIES; j++) {
            struct body *c = &bodies[j];
            double dx = b->x - c->x, dy = b->y - c->y, dz = b->z - c->z;
            e -= b->mass * c->mass / sqrt(dx * dx + dy * dy + dz * dz);
        }
    }
    return e;
}

static void advance(double dt) {
    for (int i = 0; i < NBODIES; i++) {
        struct body *b = &bodies[i];
        for (int j = i + 1; j < NBODIES; j++) {
            struct body *c = &bodies[j];
            double dx = b->x - c->x, dy = b->y - c->y, dz = b->z - c->z;
            double d2 = dx * dx + dy * dy + dz * dz;
            double mag = dt / (d2 * sqrt(d2));
            b->vx -= dx * c->mass * mag;
            b->vy -= dy * c->mass * mag;
            b->vz -= dz * c->mass * mag;
            c->vx += dx * b->mass * mag;
            c->vy += dy * b->mass * mag;
            c->vz += dz * b->mass * mag;
        }
    }
    for (int i = 0; i < NBODIES; i++) {
        bodies[i].x += dt * bodies[i].vx;
        bodies[i].y += dt * bodies[i].vy;
        bodies[i].z += dt * bodies[i].vz;
    }
}

/* ---- dense matrix products (dn x dn, dn <= DN) ---- */
#define DN 96
static int dn = DN;
static double da[DN][DN], db[DN][DN], dc[DN][DN];
static float fa[DN][DN], fb[DN][DN], fc[DN][DN];

static double dgemm(int round) {
    for (int i = 0; i < dn; i++)
        for (int j = 0; j < dn; j++) {
            da[i][j] = (double)((i * 7 + j * 3 + round) % 17) * 0.125 - 1.0;
            db[i][j] = (double)((i * 5 - j * 11 + 3 * round) % 13) * 0.0625 + 0.5;
            dc[i][j] = 0;
        }
    for (int i = 0; i < dn; i++)
        for (int k = 0; k < dn; k++) {
            double a = da[i][k];
            for (int j = 0; j < dn; j++) dc[i][j] += a * db[k][j];
        }
    double s = 0;
    for (int i = 0; i < dn; i++)
        for (int j = 0; j < dn; j++) s += dc[i][j] * (double)(1 + ((i ^ j) & 7));
    return s;
}

static float sgemm(int round) {
    for (int i = 0; i < dn; i++)
        for (int j = 0; j < dn; j++) {
            fa[i][j] = (float)((i * 3 + j * 13 + round) % 19) * 0.1f - 0.9f;
            fb[i][j] = (float)((i * 17 + j * 7 + 2 * round) % 23) * 0.05f + 0.25f;
        }
    for (int i = 0; i < dn; i++)
        for (int j = 0; j < dn; j++) {
            float s = 0;
            for (int k = 0; k < dn; k++) s += fa[i][k] * fb[k][j];
            fc[i][j] = s;
        }
    float s = 0;
    for (int i = 0; i < dn; i++) s += fc[i][(i * 5) % dn] - fc[(i * 3) % dn][i] * 0.5f;
    return s;
}

/* ---- rational polynomial and square roots (float, pn <= PN points) ---- */
#define PN 4096
static int pn = PN;
static float px[PN], py[PN];

static double poly_kernel(int round) {
    for (int i = 0; i < pn; i++) px[i] = (float)(i - pn / 2) * (1.0f / 1024.0f) + (float)round * 1e-3f;
    for (int i = 0; i < pn; i++) {
        float x = px[i];
        float num = ((((0.0078125f * x - 0.046875f) * x + 0.25f) * x - 0.5f) * x + 1.0f) * x + 0.75f;
        float den = (0.125f * x * x + 0.5f) * x * x + 1.0f;
        py[i] = num / den + sqrtf(x * x + 2.0f) - sqrtf(fabsf(x) + 0.25f);
    }
    double s = 0;
    for (int i = 0; i < pn; i++) s += py[i];
    return s;
}

/* ---- Mandelbrot (double) ---- */
static long mandelbrot(int w, int h, int maxit) {
    long total = 0;
    for (int py_ = 0; py_ < h; py_++) {
        double ci = -1.25 + 2.5 * py_ / h;
        for (int px_ = 0; px_ < w; px_++) {
            double cr = -2.0 + 2.75 * px_ / w;
            double zr = 0, zi = 0;
            int it = 0;
            while (it < maxit && zr * zr + zi * zi <= 4.0) {
                double t = zr * zr - zi * zi + cr;
                zi = 2.0 * zr * zi + ci;
                zr = t;
                it++;
            }
            total += it;
        }
    }
    return total;
}

int main(int argc, char **argv) {
    double scale = argc > 1 ? strtod(argv[1], NULL) : 1.0;
    if (!(scale > 0)) scale = 1.0;

    dn = elems(scale, DN, 16);
    pn = elems(scale, PN, 256);

    offset_momentum();
    double e0 = energy();
    long steps = scaled(scale, 80000);
    for (long s = 0; s < steps; s++) advance(0.01);
    double e1 = energy();

    double dsum = 0;
    long drounds = scaled(scale, 10);
    for (long r = 0; r < drounds; r++) dsum += dgemm((int)r);

    double fsum = 0;
    long frounds = scaled(scale, 10);
    for (long r = 0; r < frounds; r++) fsum += sgemm((int)r);

    double psum = 0;
    long prounds = scaled(scale, 80);
    for (long r = 0; r < prounds; r++) psum += poly_kernel((int)r);

    int mside = elems(scale, 160, 8);
    long mand = 0;
    long mrounds = scale > 1 ? scaled(scale, 1) : 1;
    for (long r = 0; r < mrounds; r++) mand += mandelbrot(mside, mside, 200);

    printf("float: nbody=%.9f,%.9f dgemm=%.6f sgemm=%.4f poly=%.6f mandel=%ld\n", e0, e1, dsum,
           fsum, psum, mand);
    return 0;
}
