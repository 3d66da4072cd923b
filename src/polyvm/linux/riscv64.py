"""What is RISC-V specific in the Linux user ABI: syscall numbers and registers, the signal
frame, hardware capabilities. Everything else is in the shared layer.

The signal frame follows arch/riscv/kernel/signal.c and uapi asm/{sigcontext,ucontext}.h:

    struct rt_sigframe { siginfo_t info;            //   0, 128 bytes
                         struct ucontext uc; }      // 128
    struct ucontext    { u64 uc_flags;              //   0
                         u64 uc_link;               //   8
                         stack_t uc_stack;          //  16, 24 bytes
                         sigset_t uc_sigmask;       //  40, 8 bytes + 120 reserved
                         struct sigcontext uc_mcontext; }  // 176 (16-aligned)
    struct sigcontext  { u64 sc_regs[32];           // pc, then x1..x31
                         union { d: u64 f[32]; u32 fcsr; / q: 528 bytes } }
"""

from __future__ import annotations

import struct

from polyvm.isa import SLOT_PC, Arch
from polyvm.linux import asm_generic
from polyvm.linux.asm_generic import POLYVM_GPU_SYSCALL
from polyvm.memory import AddressSpace

X0 = 2  # slot of x0; xN is X0 + N (polyvm.isa.riscv.common.X0_SLOT)
F0 = 34  # fN
FFLAGS, FRM = 66, 67
RES_VALID = 69  # LR/SC reservation valid flag
RA, SP, GP, TP = X0 + 1, X0 + 2, X0 + 3, X0 + 4
A0, A7 = X0 + 10, X0 + 17

SIGINFO_SIZE = 128
UC_STACK, UC_SIGMASK, UC_MCONTEXT = 16, 40, 176
FP_STATE = UC_MCONTEXT + 256
UCONTEXT_SIZE = UC_MCONTEXT + 256 + 528
FRAME_SIZE = SIGINFO_SIZE + UCONTEXT_SIZE  # 1088

# `li a7, 139 (rt_sigreturn); ecall`: where handlers return (Linux uses the vDSO's copy).
SIGRETURN_CODE = struct.pack("<II", (139 << 20) | (17 << 7) | 0x13, 0x73)

# AT_HWCAP: one bit per single-letter extension, bit (letter - 'a').
HWCAP = sum(1 << (ord(c) - ord("a")) for c in "imafdc")

# riscv_hwprobe keys (asm/hwprobe.h)
HWPROBE_MVENDORID, HWPROBE_MARCHID, HWPROBE_MIMPID = 0, 1, 2
HWPROBE_BASE_BEHAVIOR, HWPROBE_IMA_EXT_0, HWPROBE_CPUPERF_0 = 3, 4, 5
HWPROBE_ZICBOZ_BLOCK_SIZE, HWPROBE_HIGHEST_VIRT_ADDRESS, HWPROBE_TIME_CSR_FREQ = 6, 7, 8
HWPROBE_MISALIGNED_SCALAR_PERF = 9
HWPROBE_IMA_FD, HWPROBE_IMA_C = 1 << 0, 1 << 1
HWPROBE_ZBA, HWPROBE_ZBB, HWPROBE_ZBS = 1 << 3, 1 << 4, 1 << 5


class RiscV64Linux:
    name = "riscv64"
    e_machine = 243  # EM_RISCV
    uname_machine = "riscv64"
    platform: bytes | None = None  # RISC-V Linux passes no AT_PLATFORM
    hwcap = HWCAP
    minsigstksz = (FRAME_SIZE + 15) & ~15
    sigaction_has_restorer = False  # no SA_RESTORER field in the RISC-V struct sigaction
    sigreturn_code = SIGRETURN_CODE
    syscall_names: dict[int, str] = {
        **asm_generic.SYSCALL_NAMES,
        258: "riscv_hwprobe",
        259: "riscv_flush_icache",
        POLYVM_GPU_SYSCALL: "polyvm_gpu",
    }
    pack_stat = staticmethod(asm_generic.pack_stat)
    pc_slot = SLOT_PC
    sp_slot = SP
    reservation_slot = RES_VALID

    def __init__(self) -> None:
        self.numbers = {v: k for k, v in self.syscall_names.items()}

    @property
    def arch(self) -> Arch:
        from polyvm.isa.riscv import RISCV64

        return RISCV64

    # ---- registers -----------------------------------------------------------------------
    @staticmethod
    def syscall_nr(r: list[int]) -> int:
        return r[A7]

    @staticmethod
    def syscall_args(r: list[int]) -> list[int]:
        return r[A0 : A0 + 6]

    @staticmethod
    def set_result(r: list[int], value: int) -> None:
        r[A0] = value & 0xFFFFFFFFFFFFFFFF

    @staticmethod
    def init_regs(r: list[int], entry: int, sp: int) -> None:
        r[SLOT_PC] = entry
        r[SP] = sp
        r[A0] = 0  # no rtld_fini for a static program

    @staticmethod
    def set_tls(r: list[int], tls: int) -> None:
        r[TP] = tls

    @staticmethod
    def clone_args(a: list[int]) -> tuple[int, int, int, int, int]:
        """(flags, newsp, parent_tid, child_tid, tls) from clone's arguments.

        RISC-V selects CONFIG_CLONE_BACKWARDS: the syscall takes (flags, newsp, parent_tid,
        tls, child_tid), tls before child_tid (x86_64 has them the other way round).
        """
        return a[0], a[1], a[2], a[4], a[3]

    @staticmethod
    def child_return(r: list[int], newsp: int) -> None:
        r[A0] = 0
        if newsp:
            r[SP] = newsp

    # ---- signals -------------------------------------------------------------------------
    def setup_frame(
        self,
        mem: AddressSpace,
        r: list[int],
        sp: int,
        signo: int,
        info: bytes,
        handler: int,
        restorer: int,
        old_mask: int,
        uc_stack: tuple[int, int, int],
    ) -> None:
        """Write the rt_sigframe below `sp` and point the registers at the handler.

        Raises MemoryFault if the frame cannot be written (the caller forces SIGSEGV).
        """
        frame = (sp - FRAME_SIZE) & ~15
        uc = bytearray(UCONTEXT_SIZE)
        struct.pack_into("<QiiQ", uc, UC_STACK, uc_stack[0], uc_stack[1], 0, uc_stack[2])
        struct.pack_into("<Q", uc, UC_SIGMASK, old_mask)
        gregs = [r[SLOT_PC]] + r[X0 + 1 : X0 + 32]
        struct.pack_into("<32Q", uc, UC_MCONTEXT, *gregs)
        struct.pack_into("<32Q", uc, FP_STATE, *r[F0 : F0 + 32])
        struct.pack_into("<I", uc, FP_STATE + 256, (r[FRM] & 7) << 5 | (r[FFLAGS] & 0x1F))
        mem.write(frame, info + bytes(uc))
        r[SLOT_PC] = handler
        r[A0] = signo
        r[A0 + 1] = frame
        r[A0 + 2] = frame + SIGINFO_SIZE
        r[SP] = frame
        r[RA] = restorer

    def restore_frame(self, mem: AddressSpace, r: list[int]) -> tuple[int, tuple[int, int, int]]:
        """rt_sigreturn: restore registers from the frame at sp; returns (mask, uc_stack)."""
        frame = r[SP]
        uc = mem.read(frame + SIGINFO_SIZE, UCONTEXT_SIZE)
        gregs = struct.unpack_from("<32Q", uc, UC_MCONTEXT)
        fregs = struct.unpack_from("<32Q", uc, FP_STATE)
        (fcsr,) = struct.unpack_from("<I", uc, FP_STATE + 256)
        (mask,) = struct.unpack_from("<Q", uc, UC_SIGMASK)
        ss_sp, ss_flags, _pad, ss_size = struct.unpack_from("<QiiQ", uc, UC_STACK)
        r[SLOT_PC] = gregs[0]
        r[X0 + 1 : X0 + 32] = gregs[1:]
        r[F0 : F0 + 32] = fregs
        r[FFLAGS] = fcsr & 0x1F
        r[FRM] = (fcsr >> 5) & 7
        return mask, (ss_sp, ss_flags, ss_size)

    # ---- hwprobe -------------------------------------------------------------------------
    @staticmethod
    def hwprobe(key: int) -> int | None:
        return {
            HWPROBE_MVENDORID: 0,
            HWPROBE_MARCHID: 0,
            HWPROBE_MIMPID: 0,
            HWPROBE_BASE_BEHAVIOR: 1,  # RISCV_HWPROBE_BASE_BEHAVIOR_IMA
            HWPROBE_IMA_EXT_0: HWPROBE_IMA_FD | HWPROBE_IMA_C | HWPROBE_ZBA | HWPROBE_ZBB | HWPROBE_ZBS,
            HWPROBE_CPUPERF_0: 0,  # misaligned access speed unknown
            HWPROBE_ZICBOZ_BLOCK_SIZE: 0,
            HWPROBE_HIGHEST_VIRT_ADDRESS: (1 << 46) - 1,
            HWPROBE_TIME_CSR_FREQ: 10_000_000,
            HWPROBE_MISALIGNED_SCALAR_PERF: 0,
        }.get(key)


RISCV64_LINUX = RiscV64Linux()
