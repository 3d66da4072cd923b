/* polyvm paravirtual GPU: small wrappers over the 0x4750 syscall (see polyvm_gpu.h). */
#include "polyvm_gpu.h"

#define P(x) ((uint64_t)(uintptr_t)(x))

int pvgpu_version(void) { return (int)pvgpu_syscall(PVGPU_OP_VERSION, 0); }

int pvgpu_info(struct pvgpu_info *out) { return (int)pvgpu_syscall(PVGPU_OP_INFO, out); }

int pvgpu_compile(const char *src, const char *const *opts, int num_opts, char *log, size_t log_cap,
                  uint64_t *module)
{
    struct pvgpu_compile c = {0};
    c.src = P(src);
    c.src_len = 0; /* NUL-terminated */
    c.opts = P(opts);
    c.num_opts = num_opts > 0 ? (uint64_t)num_opts : 0;
    c.log = P(log);
    c.log_cap = log ? log_cap : 0;
    int rc = (int)pvgpu_syscall(PVGPU_OP_COMPILE, &c);
    if (rc == 0 && module)
        *module = c.module;
    return rc;
}

int pvgpu_get_function(uint64_t module, const char *name, uint64_t *function)
{
    struct pvgpu_function f = {module, P(name), 0, 0, 0};
    int rc = (int)pvgpu_syscall(PVGPU_OP_GET_FUNCTION, &f);
    if (rc == 0 && function)
        *function = f.function;
    return rc;
}

int pvgpu_malloc(uint64_t size, uint64_t *handle)
{
    struct pvgpu_malloc m = {size, 0};
    int rc = (int)pvgpu_syscall(PVGPU_OP_MALLOC, &m);
    if (rc == 0 && handle)
        *handle = m.handle;
    return rc;
}

int pvgpu_free(uint64_t handle)
{
    struct pvgpu_handle h = {handle};
    return (int)pvgpu_syscall(PVGPU_OP_FREE, &h);
}

int pvgpu_copy_htod(uint64_t handle, uint64_t offset, const void *src, uint64_t size)
{
    struct pvgpu_copy c = {handle, offset, P(src), size};
    return (int)pvgpu_syscall(PVGPU_OP_COPY_HTOD, &c);
}

int pvgpu_copy_dtoh(void *dst, uint64_t handle, uint64_t offset, uint64_t size)
{
    struct pvgpu_copy c = {handle, offset, P(dst), size};
    return (int)pvgpu_syscall(PVGPU_OP_COPY_DTOH, &c);
}

int pvgpu_copy_dtod(uint64_t dst, uint64_t dst_offset, uint64_t src, uint64_t src_offset, uint64_t size)
{
    struct pvgpu_copy_dtod c = {dst, dst_offset, src, src_offset, size};
    return (int)pvgpu_syscall(PVGPU_OP_COPY_DTOD, &c);
}

int pvgpu_memset(uint64_t handle, uint64_t offset, int value, uint64_t size)
{
    struct pvgpu_memset m = {handle, offset, (uint64_t)(unsigned char)value, size};
    return (int)pvgpu_syscall(PVGPU_OP_MEMSET, &m);
}

int pvgpu_launch(uint64_t function, const uint32_t grid[3], const uint32_t block[3], uint64_t shmem,
                 const struct pvgpu_arg *args, uint64_t num_args)
{
    struct pvgpu_launch l;
    l.function = function;
    for (int i = 0; i < 3; i++) {
        l.grid[i] = grid[i];
        l.block[i] = block[i];
    }
    l.shmem = shmem;
    l.args = P(args);
    l.num_args = num_args;
    return (int)pvgpu_syscall(PVGPU_OP_LAUNCH, &l);
}

int pvgpu_synchronize(void) { return (int)pvgpu_syscall(PVGPU_OP_SYNCHRONIZE, 0); }

int pvgpu_module_unload(uint64_t module)
{
    struct pvgpu_handle h = {module};
    return (int)pvgpu_syscall(PVGPU_OP_MODULE_UNLOAD, &h);
}

const char *pvgpu_strerror(int rc)
{
    switch (-rc) {
    case 0: return "success";
    case 2: return "ENOENT: no such kernel in the module";
    case 5: return "EIO: the host GPU call failed";
    case 7: return "E2BIG: over a size limit";
    case 8: return "ENOEXEC: the kernel did not compile (see the log)";
    case 9: return "EBADF: unknown handle";
    case 12: return "ENOMEM: out of GPU memory";
    case 14: return "EFAULT: bad guest pointer";
    case 19: return "ENODEV: no GPU backend on the host";
    case 22: return "EINVAL: invalid argument or launch configuration";
    case 28: return "ENOSPC: too many handles";
    case 38: return "ENOSYS: no GPU interface (not running under polyvm?)";
    default: return "unknown error";
    }
}
