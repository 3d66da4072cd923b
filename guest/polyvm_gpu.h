/*
 * polyvm paravirtual GPU: the guest side of the ABI (see docs/gpu.md).
 *
 * A guest calls syscall(0x4750, op, argp): on riscv64 a7 = 0x4750, a0 = op, a1 = argp, result
 * in a0. The result is >= 0 on success or -errno: -EFAULT (a bad pointer), -EINVAL (a bad
 * argument or launch configuration), -EBADF (an unknown handle), -ENOENT (no such kernel),
 * -ENOEXEC (compile error: read the log), -ENOMEM, -ENODEV (no GPU on the host), -EIO (the host
 * call failed), -E2BIG (over a size limit), -ENOSYS (unknown op).
 *
 * All structs are little-endian with 64-bit fields for pointers and sizes, so their layout is
 * the same for every 64-bit guest. Handles are opaque numbers private to this VM.
 */
#ifndef POLYVM_GPU_H
#define POLYVM_GPU_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define PVGPU_SYSCALL 0x4750
#define PVGPU_ABI_VERSION 1

enum pvgpu_op {
    PVGPU_OP_VERSION = 0,       /* argp ignored; returns the ABI version */
    PVGPU_OP_INFO = 1,          /* struct pvgpu_info (out) */
    PVGPU_OP_COMPILE = 2,       /* struct pvgpu_compile */
    PVGPU_OP_GET_FUNCTION = 3,  /* struct pvgpu_function */
    PVGPU_OP_MALLOC = 4,        /* struct pvgpu_malloc */
    PVGPU_OP_FREE = 5,          /* struct pvgpu_handle */
    PVGPU_OP_COPY_HTOD = 6,     /* struct pvgpu_copy: guest memory -> buffer */
    PVGPU_OP_COPY_DTOH = 7,     /* struct pvgpu_copy: buffer -> guest memory (waits for queued work) */
    PVGPU_OP_COPY_DTOD = 8,     /* struct pvgpu_copy_dtod */
    PVGPU_OP_MEMSET = 9,        /* struct pvgpu_memset */
    PVGPU_OP_LAUNCH = 10,       /* struct pvgpu_launch; asynchronous */
    PVGPU_OP_SYNCHRONIZE = 11,  /* argp ignored; waits for this VM's queued work */
    PVGPU_OP_MODULE_UNLOAD = 12 /* struct pvgpu_handle */
};

enum pvgpu_vendor { PVGPU_VENDOR_UNKNOWN = 0, PVGPU_VENDOR_NVIDIA = 1, PVGPU_VENDOR_AMD = 2 };

struct pvgpu_info {                 /* 160 bytes; 0 where the host driver gives no value */
    uint32_t abi_version;
    uint32_t vendor;                /* enum pvgpu_vendor */
    uint32_t cc_major, cc_minor;    /* CUDA compute capability */
    uint64_t total_mem, free_mem;   /* bytes */
    uint32_t multiprocessor_count;
    uint32_t warp_size;
    uint32_t max_threads_per_block;
    uint32_t max_shared_per_block;
    uint32_t max_block[3];
    uint32_t max_grid[3];
    uint32_t clock_khz, mem_clock_khz;
    char name[64];                  /* NUL-terminated */
    char arch[16];                  /* "sm_90", "gfx90a" */
};

struct pvgpu_compile {              /* 88 bytes */
    uint64_t src;                   /* const char *: CUDA C++ (HIP C++ on AMD) source */
    uint64_t src_len;               /* bytes; 0 = NUL-terminated */
    uint64_t opts;                  /* const char *const *: compiler options, e.g. "-O3" */
    uint64_t num_opts;
    uint64_t header_srcs;           /* const char *const *: header texts ... */
    uint64_t header_names;          /* const char *const *: ... and the names #include uses */
    uint64_t num_headers;
    uint64_t log;                   /* char *: compiler log out (may be 0) */
    uint64_t log_cap;               /* its size; the log is truncated and NUL-terminated */
    uint64_t log_len;               /* out: the full log's length */
    uint64_t module;                /* out: module handle */
};

struct pvgpu_function {             /* 32 bytes */
    uint64_t module;
    uint64_t name;                  /* const char *: an extern "C" kernel name */
    uint64_t function;              /* out: function handle */
    uint32_t num_regs;              /* out */
    uint32_t max_threads_per_block; /* out: this kernel's limit */
};

struct pvgpu_malloc { uint64_t size; uint64_t handle; /* out */ };
struct pvgpu_handle { uint64_t handle; };
struct pvgpu_copy { uint64_t handle, offset, guest_addr, size; };
struct pvgpu_copy_dtod { uint64_t dst, dst_offset, src, src_offset, size; };
struct pvgpu_memset { uint64_t handle, offset, value /* a byte */, size; };

enum pvgpu_arg_kind {
    PVGPU_ARG_BUFFER = 1,  /* value = buffer handle, aux = byte offset into it: a device pointer */
    PVGPU_ARG_I32 = 2,     /* value holds the bits, low bytes first */
    PVGPU_ARG_U32 = 3,
    PVGPU_ARG_I64 = 4,
    PVGPU_ARG_U64 = 5,
    PVGPU_ARG_F32 = 6,     /* IEEE bits in the low 32 bits of value */
    PVGPU_ARG_F64 = 7,
    PVGPU_ARG_BYTES = 8    /* a struct by value: value = guest pointer, size = bytes, aux = alignment */
};

struct pvgpu_arg {                  /* 24 bytes */
    uint32_t kind;                  /* enum pvgpu_arg_kind */
    uint32_t size;                  /* 0 or the kind's size for scalars; bytes for PVGPU_ARG_BYTES */
    uint64_t value;
    uint64_t aux;
};

struct pvgpu_launch {               /* 56 bytes */
    uint64_t function;
    uint32_t grid[3];
    uint32_t block[3];
    uint64_t shmem;                 /* dynamic shared memory, bytes */
    uint64_t args;                  /* const struct pvgpu_arg * */
    uint64_t num_args;
};

_Static_assert(sizeof(struct pvgpu_info) == 160, "pvgpu_info layout");
_Static_assert(sizeof(struct pvgpu_compile) == 88, "pvgpu_compile layout");
_Static_assert(sizeof(struct pvgpu_function) == 32, "pvgpu_function layout");
_Static_assert(sizeof(struct pvgpu_launch) == 56, "pvgpu_launch layout");
_Static_assert(sizeof(struct pvgpu_arg) == 24, "pvgpu_arg layout");

static inline long pvgpu_syscall(long op, void *argp)
{
#if defined(__riscv) && __riscv_xlen == 64
    register long a0 __asm__("a0") = op;
    register long a1 __asm__("a1") = (long)argp;
    register long a7 __asm__("a7") = PVGPU_SYSCALL;
    __asm__ volatile("ecall" : "+r"(a0) : "r"(a1), "r"(a7) : "memory");
    return a0;
#elif defined(__aarch64__)
    register long x0 __asm__("x0") = op;
    register long x1 __asm__("x1") = (long)argp;
    register long x8 __asm__("x8") = PVGPU_SYSCALL;
    __asm__ volatile("svc 0" : "+r"(x0) : "r"(x1), "r"(x8) : "memory");
    return x0;
#elif defined(__x86_64__)
    long ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"((long)PVGPU_SYSCALL), "D"(op), "S"((long)argp)
                     : "rcx", "r11", "memory");
    return ret;
#else
#error "polyvm_gpu.h: no syscall sequence for this architecture"
#endif
}

/* Argument builders for pvgpu_launch. */
static inline struct pvgpu_arg pvgpu_arg_buffer(uint64_t handle, uint64_t offset)
{
    struct pvgpu_arg a = {PVGPU_ARG_BUFFER, 8, handle, offset};
    return a;
}
static inline struct pvgpu_arg pvgpu_arg_i32(int32_t v)
{
    struct pvgpu_arg a = {PVGPU_ARG_I32, 4, (uint64_t)(uint32_t)v, 0};
    return a;
}
static inline struct pvgpu_arg pvgpu_arg_u32(uint32_t v)
{
    struct pvgpu_arg a = {PVGPU_ARG_U32, 4, v, 0};
    return a;
}
static inline struct pvgpu_arg pvgpu_arg_i64(int64_t v)
{
    struct pvgpu_arg a = {PVGPU_ARG_I64, 8, (uint64_t)v, 0};
    return a;
}
static inline struct pvgpu_arg pvgpu_arg_u64(uint64_t v)
{
    struct pvgpu_arg a = {PVGPU_ARG_U64, 8, v, 0};
    return a;
}
static inline struct pvgpu_arg pvgpu_arg_f32(float v)
{
    uint32_t bits;
    memcpy(&bits, &v, 4);
    struct pvgpu_arg a = {PVGPU_ARG_F32, 4, bits, 0};
    return a;
}
static inline struct pvgpu_arg pvgpu_arg_f64(double v)
{
    uint64_t bits;
    memcpy(&bits, &v, 8);
    struct pvgpu_arg a = {PVGPU_ARG_F64, 8, bits, 0};
    return a;
}
static inline struct pvgpu_arg pvgpu_arg_bytes(const void *p, uint32_t size, uint32_t align)
{
    struct pvgpu_arg a = {PVGPU_ARG_BYTES, size, (uint64_t)(uintptr_t)p, align};
    return a;
}

/* Wrappers (polyvm_gpu.c). Each returns 0 (or the ABI version) on success, -errno on failure. */
int pvgpu_version(void);
int pvgpu_info(struct pvgpu_info *out);
int pvgpu_compile(const char *src, const char *const *opts, int num_opts, char *log, size_t log_cap,
                  uint64_t *module);
int pvgpu_get_function(uint64_t module, const char *name, uint64_t *function);
int pvgpu_malloc(uint64_t size, uint64_t *handle);
int pvgpu_free(uint64_t handle);
int pvgpu_copy_htod(uint64_t handle, uint64_t offset, const void *src, uint64_t size);
int pvgpu_copy_dtoh(void *dst, uint64_t handle, uint64_t offset, uint64_t size);
int pvgpu_copy_dtod(uint64_t dst, uint64_t dst_offset, uint64_t src, uint64_t src_offset, uint64_t size);
int pvgpu_memset(uint64_t handle, uint64_t offset, int value, uint64_t size);
int pvgpu_launch(uint64_t function, const uint32_t grid[3], const uint32_t block[3], uint64_t shmem,
                 const struct pvgpu_arg *args, uint64_t num_args);
int pvgpu_synchronize(void);
int pvgpu_module_unload(uint64_t module);
const char *pvgpu_strerror(int rc);

#endif /* POLYVM_GPU_H */
