"""The guest GPU interface (syscall 0x4750) over the fake backend: pointers, handles, errors."""

import struct

import pytest

from polyvm.gpu import guest as G
from polyvm.gpu import open_device
from polyvm.gpu.errors import BackendUnavailableError
from polyvm.gpu.kernels import MATMUL, SAXPY


class GuestTestFault(Exception):
    pass


class FakeGuestMemory:
    """Guest memory with mapped regions only; anything else faults like polyvm.memory does."""

    def __init__(self, base=0x10000, size=1 << 20, fault=GuestTestFault):
        self.base, self.data, self.fault = base, bytearray(size), fault
        self.brk = base + 0x100

    def _off(self, addr, size):
        if addr < self.base or addr + size > self.base + len(self.data):
            raise self.fault(addr)
        return addr - self.base

    def read_bytes(self, addr, size):
        o = self._off(addr, size)
        return bytes(self.data[o : o + size])

    def write_bytes(self, addr, data):
        o = self._off(addr, len(data))
        self.data[o : o + len(data)] = data

    def put(self, data: bytes, align=16) -> int:
        self.brk = (self.brk + align - 1) // align * align
        addr = self.brk
        self.write_bytes(addr, data)
        self.brk += max(len(data), 1)
        return addr

    def cstr(self, s: str) -> int:
        return self.put(s.encode() + b"\0")

    def u64(self, addr):
        return struct.unpack("<Q", self.read_bytes(addr, 8))[0]


UNMAPPED = 0xDEAD_0000


@pytest.fixture
def dev():
    d = open_device("fake", cache=False)
    yield d
    d.close()


@pytest.fixture
def vm(dev):
    g = G.GuestGPU(dev, fault_exceptions=(GuestTestFault,))
    yield g
    g.close()


def compile_(vm, mem, source, opts=(), log_cap=4096):
    src = mem.put(source.encode())
    optv = mem.put(struct.pack(f"<{len(opts)}Q", *[mem.cstr(o) for o in opts])) if opts else 0
    log = mem.put(bytes(log_cap)) if log_cap else 0
    argp = mem.put(G.COMPILE.pack(src, len(source.encode()), optv, len(opts), 0, 0, 0, log, log_cap, 0, 0))
    rc = vm.syscall(mem, G.OP_COMPILE, argp)
    return rc, mem.u64(argp + 80), mem, log, mem.u64(argp + 72)


def get_function(vm, mem, module, name):
    argp = mem.put(G.FUNCTION.pack(module, mem.cstr(name), 0, 0, 0))
    rc = vm.syscall(mem, G.OP_GET_FUNCTION, argp)
    return rc, mem.u64(argp + 16)


def malloc(vm, mem, size):
    argp = mem.put(G.MALLOC.pack(size, 0))
    rc = vm.syscall(mem, G.OP_MALLOC, argp)
    return rc, mem.u64(argp + 8)


def copy(vm, mem, op, handle, offset, gaddr, size):
    return vm.syscall(mem, op, mem.put(G.COPY.pack(handle, offset, gaddr, size)))


def launch(vm, mem, fn, grid, block, args, shmem=0):
    argv = mem.put(b"".join(G.ARG.pack(*a) for a in args)) if args else 0
    return vm.syscall(mem, G.OP_LAUNCH, mem.put(G.LAUNCH.pack(fn, *grid, *block, shmem, argv, len(args))))


def f32bits(x):
    return struct.unpack("<I", struct.pack("<f", x))[0]


def test_version_and_unknown_op(vm):
    mem = FakeGuestMemory()
    assert vm.syscall(mem, G.OP_VERSION, 0) == G.ABI_VERSION
    assert vm.syscall(mem, 999, 0) == -G.ENOSYS


def test_info(vm):
    mem = FakeGuestMemory()
    argp = mem.put(bytes(G.INFO.size))
    assert vm.syscall(mem, G.OP_INFO, argp) == 0
    f = G.INFO.unpack(mem.read_bytes(argp, G.INFO.size))
    assert f[0] == G.ABI_VERSION
    assert f[4] == 1 << 30  # total memory
    assert f[8] == 1024  # max threads per block
    assert f[-2].rstrip(b"\0") == b"polyvm fake GPU"
    assert vm.syscall(mem, G.OP_INFO, UNMAPPED) == -G.EFAULT
    assert vm.syscall(mem, G.OP_INFO, 0) == -G.EFAULT


def test_saxpy_and_matmul_end_to_end(vm):
    mem = FakeGuestMemory()
    rc, module, _, _, _ = compile_(vm, mem, SAXPY + MATMUL, opts=["--use_fast_math"])
    assert rc == 0 and module
    rc, saxpy = get_function(vm, mem, module, "saxpy")
    assert rc == 0 and saxpy
    n = 100
    xs = [i * 0.5 for i in range(n)]
    ys = [1.0 - i for i in range(n)]
    gx, gy = mem.put(struct.pack(f"<{n}f", *xs)), mem.put(struct.pack(f"<{n}f", *ys))
    (rc1, hx), (rc2, hy) = malloc(vm, mem, 4 * n), malloc(vm, mem, 4 * n)
    assert rc1 == rc2 == 0 and hx != hy
    assert copy(vm, mem, G.OP_COPY_HTOD, hx, 0, gx, 4 * n) == 0
    assert copy(vm, mem, G.OP_COPY_HTOD, hy, 0, gy, 4 * n) == 0
    args = [
        (G.ARG_I32, 4, n, 0),
        (G.ARG_F32, 4, f32bits(2.0), 0),
        (G.ARG_BUFFER, 8, hx, 0),
        (G.ARG_BUFFER, 8, hy, 0),
    ]
    assert launch(vm, mem, saxpy, (1, 1, 1), (128, 1, 1), args) == 0
    assert vm.syscall(mem, G.OP_SYNCHRONIZE, 0) == 0
    out = mem.put(bytes(4 * n))
    assert copy(vm, mem, G.OP_COPY_DTOH, hy, 0, out, 4 * n) == 0
    got = struct.unpack(f"<{n}f", mem.read_bytes(out, 4 * n))
    assert got == pytest.approx([2 * x + y for x, y in zip(xs, ys, strict=True)])

    rc, mm = get_function(vm, mem, module, "matmul")
    assert rc == 0
    A, B = [1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]
    hs = [malloc(vm, mem, 16)[1] for _ in range(3)]
    copy(vm, mem, G.OP_COPY_HTOD, hs[0], 0, mem.put(struct.pack("<4f", *A)), 16)
    copy(vm, mem, G.OP_COPY_HTOD, hs[1], 0, mem.put(struct.pack("<4f", *B)), 16)
    args = [(G.ARG_BUFFER, 8, h, 0) for h in hs] + [(G.ARG_I32, 4, 2, 0)] * 3
    assert launch(vm, mem, mm, (1, 1, 1), (16, 16, 1), args) == 0
    out = mem.put(bytes(16))
    assert copy(vm, mem, G.OP_COPY_DTOH, hs[2], 0, out, 16) == 0
    assert struct.unpack("<4f", mem.read_bytes(out, 16)) == (19.0, 22.0, 43.0, 50.0)


class ViewGuestMemory(FakeGuestMemory):
    def host_view(self, addr, size):
        o = self._off(addr, size)
        return memoryview(self.data)[o : o + size]


def test_zero_copy_accessor(vm):
    mem = ViewGuestMemory()
    rc, h = malloc(vm, mem, 64)
    src = mem.put(bytes(range(64)))
    assert copy(vm, mem, G.OP_COPY_HTOD, h, 0, src, 64) == 0
    out = mem.put(bytes(64))
    assert copy(vm, mem, G.OP_COPY_DTOH, h, 16, out, 48) == 0
    assert mem.read_bytes(out, 48) == bytes(range(16, 64))
    end = mem.base + len(mem.data) - 10
    assert copy(vm, mem, G.OP_COPY_HTOD, h, 0, end, 64) == -G.EFAULT
    assert copy(vm, mem, G.OP_COPY_DTOH, h, 0, end, 64) == -G.EFAULT


def test_bad_guest_pointers_are_efault_never_exceptions(vm):
    mem = FakeGuestMemory()
    rc, h = malloc(vm, mem, 64)
    assert rc == 0
    for op in (
        G.OP_INFO,
        G.OP_COMPILE,
        G.OP_GET_FUNCTION,
        G.OP_MALLOC,
        G.OP_FREE,
        G.OP_COPY_HTOD,
        G.OP_LAUNCH,
    ):
        assert vm.syscall(mem, op, UNMAPPED) == -G.EFAULT, op
    # struct readable, but what it points to is not
    assert copy(vm, mem, G.OP_COPY_HTOD, h, 0, UNMAPPED, 64) == -G.EFAULT
    assert copy(vm, mem, G.OP_COPY_DTOH, h, 0, UNMAPPED, 64) == -G.EFAULT
    end = mem.base + len(mem.data) - 10  # straddles the end of the mapping
    assert copy(vm, mem, G.OP_COPY_HTOD, h, 0, end, 64) == -G.EFAULT
    assert copy(vm, mem, G.OP_COPY_DTOH, h, 0, end, 64) == -G.EFAULT
    assert copy(vm, mem, G.OP_COPY_HTOD, h, 0, 0, 64) == -G.EFAULT
    argp = mem.put(G.COMPILE.pack(UNMAPPED, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0))
    assert vm.syscall(mem, G.OP_COMPILE, argp) == -G.EFAULT
    argp = mem.put(G.FUNCTION.pack(1, UNMAPPED, 0, 0, 0))
    assert vm.syscall(mem, G.OP_GET_FUNCTION, argp) in (-G.EFAULT, -G.EBADF)
    # a string running off the end of mapped memory without a NUL
    tail = mem.base + len(mem.data) - 4
    mem.write_bytes(tail, b"abcd")
    rc, module, *_ = compile_(
        vm, mem, 'extern "C" __global__ void saxpy(int n, float a, float* x, float* y) {}'
    )
    argp = mem.put(G.FUNCTION.pack(module, tail, 0, 0, 0))
    assert vm.syscall(mem, G.OP_GET_FUNCTION, argp) == -G.EFAULT
    # launch args array unmapped
    rc, fn = get_function(vm, mem, module, "saxpy")
    assert (
        vm.syscall(mem, G.OP_LAUNCH, mem.put(G.LAUNCH.pack(fn, 1, 1, 1, 1, 1, 1, 0, UNMAPPED, 2)))
        == -G.EFAULT
    )
    assert vm.handles["buffers"] == 1  # nothing leaked or lost


def test_default_fault_types_are_caught(dev):
    vm = G.GuestGPU(dev)
    assert vm.syscall(FakeGuestMemory(fault=G.GuestFault), G.OP_INFO, UNMAPPED) == -G.EFAULT
    try:
        from polyvm.memory import MemoryFault
    except ImportError:
        pytest.skip("polyvm.memory.MemoryFault is not there yet")
    mem = FakeGuestMemory(fault=lambda addr: MemoryFault(addr, "r", False))
    assert vm.syscall(mem, G.OP_INFO, UNMAPPED) == -G.EFAULT
    assert vm.syscall(mem, G.OP_MALLOC, mem.put(G.MALLOC.pack(16, 0))) == 0


def test_handles_are_per_vm(dev):
    vm_a = G.GuestGPU(dev, fault_exceptions=(GuestTestFault,))
    vm_b = G.GuestGPU(dev, fault_exceptions=(GuestTestFault,))
    mem_a, mem_b = FakeGuestMemory(), FakeGuestMemory()
    rc, ha = malloc(vm_a, mem_a, 64)
    assert rc == 0
    secret = mem_a.put(b"A's secret data!" * 4)
    assert copy(vm_a, mem_a, G.OP_COPY_HTOD, ha, 0, secret, 64) == 0
    out = mem_b.put(bytes(64))
    # B names A's handle: it does not exist in B's table
    assert copy(vm_b, mem_b, G.OP_COPY_DTOH, ha, 0, out, 64) == -G.EBADF
    assert vm_b.syscall(mem_b, G.OP_FREE, mem_b.put(G.HANDLE.pack(ha))) == -G.EBADF
    assert mem_b.read_bytes(out, 64) == bytes(64)
    # B's own first handle may have the same number, but it names B's buffer
    rc, hb = malloc(vm_b, mem_b, 64)
    assert rc == 0
    assert copy(vm_b, mem_b, G.OP_COPY_DTOH, hb, 0, out, 64) == 0
    assert mem_b.read_bytes(out, 64) == bytes(64)
    # closing B frees B's buffers only
    vm_b.close()
    out_a = mem_a.put(bytes(64))
    assert copy(vm_a, mem_a, G.OP_COPY_DTOH, ha, 0, out_a, 64) == 0
    assert mem_a.read_bytes(out_a, 64) == b"A's secret data!" * 4
    vm_a.close()
    assert not dev.driver._allocs


def test_forged_and_confused_handles(vm):
    mem = FakeGuestMemory()
    rc, module, *_ = compile_(vm, mem, 'extern "C" __global__ void empty() {}')
    rc, fn = get_function(vm, mem, module, "empty")
    rc, buf = malloc(vm, mem, 16)
    dev_ptr = vm._buffers[buf].device_ptr
    out = mem.put(bytes(16))
    for forged in (0, 1, dev_ptr, buf + 1, fn, module, 2**64 - 1):
        assert copy(vm, mem, G.OP_COPY_DTOH, forged, 0, out, 16) == -G.EBADF
    assert launch(vm, mem, buf, (1, 1, 1), (1, 1, 1), []) == -G.EBADF
    assert launch(vm, mem, fn, (1, 1, 1), (1, 1, 1), [(G.ARG_BUFFER, 8, dev_ptr, 0)]) == -G.EBADF
    assert get_function(vm, mem, buf, "empty")[0] == -G.EBADF


def test_range_and_argument_validation(vm):
    mem = FakeGuestMemory()
    rc, h = malloc(vm, mem, 32)
    g = mem.put(bytes(64))
    assert copy(vm, mem, G.OP_COPY_HTOD, h, 0, g, 33) == -G.EINVAL
    assert copy(vm, mem, G.OP_COPY_HTOD, h, 30, g, 4) == -G.EINVAL
    assert copy(vm, mem, G.OP_COPY_HTOD, h, 2**64 - 1, g, 2) == -G.EINVAL
    assert vm.syscall(mem, G.OP_MEMSET, mem.put(G.MEMSET.pack(h, 0, 256, 4))) == -G.EINVAL
    assert vm.syscall(mem, G.OP_MEMSET, mem.put(G.MEMSET.pack(h, 0, 7, 32))) == 0
    assert malloc(vm, mem, 0)[0] == -G.EINVAL
    rc, module, *_ = compile_(vm, mem, 'extern "C" __global__ void empty() {}')
    rc, fn = get_function(vm, mem, module, "empty")
    assert get_function(vm, mem, module, "missing")[0] == -G.ENOENT
    assert launch(vm, mem, fn, (1, 1, 1), (2048, 1, 1), []) == -G.EINVAL
    assert launch(vm, mem, fn, (0, 1, 1), (1, 1, 1), []) == -G.EINVAL
    assert launch(vm, mem, fn, (1, 1, 1), (1, 1, 1), [(99, 0, 0, 0)]) == -G.EINVAL
    assert launch(vm, mem, fn, (1, 1, 1), (1, 1, 1), [(G.ARG_I32, 3, 0, 0)]) == -G.EINVAL
    assert launch(vm, mem, fn, (1, 1, 1), (1, 1, 1), [(G.ARG_BUFFER, 8, h, 33)]) == -G.EINVAL
    assert launch(vm, mem, fn, (1, 1, 1), (1, 1, 1), [(G.ARG_BYTES, 0, g, 0)]) == -G.EINVAL
    assert launch(vm, mem, fn, (1, 1, 1), (1, 1, 1), [(G.ARG_BYTES, 12, g, 3)]) == -G.EINVAL
    assert launch(vm, mem, fn, (1, 1, 1), (1, 1, 1), [(G.ARG_BYTES, 12, UNMAPPED, 4)]) == -G.EFAULT
    assert launch(vm, mem, fn, (1, 1, 1), (1, 1, 1), [(G.ARG_BUFFER, 8, h, 32), (G.ARG_BYTES, 12, g, 4)]) == 0
    launched = vm._dev().driver.launches[-1]
    assert launched[4][0] == vm._buffers[h].device_ptr + 32
    assert (
        vm.syscall(mem, G.OP_LAUNCH, mem.put(G.LAUNCH.pack(fn, 1, 1, 1, 1, 1, 1, 0, g, G.MAX_ARGS + 1)))
        == -G.E2BIG
    )


def test_scalar_arguments_decode(vm):
    mem = FakeGuestMemory()
    rc, module, *_ = compile_(vm, mem, 'extern "C" __global__ void probe() {}')
    rc, fn = get_function(vm, mem, module, "probe")
    f64 = struct.unpack("<Q", struct.pack("<d", -1.25))[0]
    args = [
        (G.ARG_I32, 4, 0xFFFFFFFF, 0),
        (G.ARG_U32, 0, 0xFFFFFFFF, 0),
        (G.ARG_I64, 8, 2**64 - 2, 0),
        (G.ARG_U64, 8, 2**63, 0),
        (G.ARG_F32, 4, f32bits(0.5), 0),
        (G.ARG_F64, 8, f64, 0),
    ]
    assert launch(vm, mem, fn, (1, 1, 1), (1, 1, 1), args) == 0
    assert vm._dev().driver.launches[-1][4] == (-1, 0xFFFFFFFF, -2, 2**63, 0.5, -1.25)


def test_compile_error_returns_log(vm):
    mem = FakeGuestMemory()
    rc, module, _, log, log_len = compile_(vm, mem, "#error guest typo\n", log_cap=64)
    assert rc == -G.ENOEXEC and module == 0
    text = mem.read_bytes(log, 64)
    assert text.endswith(b"\0") and b"guest typo" in text  # truncated to fit, NUL-terminated
    assert log_len > 64  # the full length, so the guest can retry with a bigger buffer
    rc, *_ = compile_(vm, mem, "#error x\n", log_cap=0)
    assert rc == -G.ENOEXEC


def test_no_backend_is_enodev():
    def opener():
        raise BackendUnavailableError("no GPU backend available: test")

    vm = G.GuestGPU(opener=opener, fault_exceptions=(GuestTestFault,))
    mem = FakeGuestMemory()
    assert vm.syscall(mem, G.OP_VERSION, 0) == G.ABI_VERSION
    assert vm.syscall(mem, G.OP_INFO, mem.put(bytes(G.INFO.size))) == -G.ENODEV
    assert malloc(vm, mem, 16)[0] == -G.ENODEV
    assert vm.syscall(mem, G.OP_SYNCHRONIZE, 0) == -G.ENODEV
    assert "no GPU backend" in vm.last_error


def test_failed_host_calls_are_eio_and_the_vm_goes_on(vm, dev):
    mem = FakeGuestMemory()
    rc, h = malloc(vm, mem, 16)
    g = mem.put(bytes(16))
    dev.driver.fail.add("memcpy_htod")
    assert copy(vm, mem, G.OP_COPY_HTOD, h, 0, g, 16) == -G.EIO
    assert "FAKE_ERROR_INJECTED" in vm.last_error
    assert copy(vm, mem, G.OP_COPY_HTOD, h, 0, g, 16) == 0
    dev.driver.fail.add("mem_alloc")
    assert malloc(vm, mem, 16)[0] == -G.EIO
    dev.driver.fail.add("stream_synchronize")
    assert vm.syscall(mem, G.OP_SYNCHRONIZE, 0) == -G.EIO
    assert vm.syscall(mem, G.OP_SYNCHRONIZE, 0) == 0


def test_memory_limits(dev):
    vm = G.GuestGPU(dev, max_memory=100, fault_exceptions=(GuestTestFault,))
    mem = FakeGuestMemory()
    rc, h = malloc(vm, mem, 80)
    assert rc == 0
    assert malloc(vm, mem, 40)[0] == -G.ENOMEM
    assert vm.syscall(mem, G.OP_FREE, mem.put(G.HANDLE.pack(h))) == 0
    assert malloc(vm, mem, 40)[0] == 0
    assert malloc(vm, mem, 2 << 30)[0] == -G.ENOMEM or vm.max_memory is not None
    vm2 = G.GuestGPU(dev, fault_exceptions=(GuestTestFault,))
    assert malloc(vm2, mem, 2 << 30)[0] == -G.ENOMEM  # device out of memory
    vm.close()
    vm2.close()


def test_free_and_unload(vm, dev):
    mem = FakeGuestMemory()
    rc, h = malloc(vm, mem, 16)
    assert vm.syscall(mem, G.OP_FREE, mem.put(G.HANDLE.pack(h))) == 0
    assert vm.syscall(mem, G.OP_FREE, mem.put(G.HANDLE.pack(h))) == -G.EBADF  # double free
    rc, module, *_ = compile_(vm, mem, 'extern "C" __global__ void empty() {}')
    rc, fn = get_function(vm, mem, module, "empty")
    assert vm.syscall(mem, G.OP_MODULE_UNLOAD, mem.put(G.HANDLE.pack(module))) == 0
    assert launch(vm, mem, fn, (1, 1, 1), (1, 1, 1), []) == -G.EBADF
    assert vm.handles == {"modules": 0, "functions": 0, "buffers": 0}


def test_dtod_copy(vm):
    mem = FakeGuestMemory()
    (_, a), (_, b) = malloc(vm, mem, 16), malloc(vm, mem, 16)
    copy(vm, mem, G.OP_COPY_HTOD, a, 0, mem.put(bytes(range(16))), 16)
    assert vm.syscall(mem, G.OP_COPY_DTOD, mem.put(G.COPY_DTOD.pack(b, 4, a, 0, 8))) == 0
    assert vm.syscall(mem, G.OP_COPY_DTOD, mem.put(G.COPY_DTOD.pack(b, 12, a, 0, 8))) == -G.EINVAL
    out = mem.put(bytes(16))
    copy(vm, mem, G.OP_COPY_DTOH, b, 0, out, 16)
    assert mem.read_bytes(out, 16) == bytes(4) + bytes(range(8)) + bytes(4)
