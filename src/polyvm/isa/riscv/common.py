"""What every RISC-V extension file shares: the state layout, the encoding formats and the
builder that reads and writes guest registers."""

from __future__ import annotations

from polyvm.ir import Builder, HelperRegistry, Val
from polyvm.isa import FIRST_ISA_SLOT

# ---- state layout (fixed: the Linux user-mode layer and the engines rely on it) ---------------
X0_SLOT = FIRST_ISA_SLOT  # x0..x31 -> slots 2..33 (x0 is never read or written)
F0_SLOT = X0_SLOT + 32  # f0..f31 -> slots 34..65, 64-bit patterns, singles NaN-boxed
FFLAGS_SLOT = F0_SLOT + 32  # 66: accrued exception flags, 5 bits
FRM_SLOT = FFLAGS_SLOT + 1  # 67: dynamic rounding mode, 3 bits
RES_ADDR_SLOT = FRM_SLOT + 1  # 68: LR/SC reservation address
RES_VALID_SLOT = RES_ADDR_SLOT + 1  # 69: reservation valid (0/1)
NSLOTS = RES_VALID_SLOT + 1  # 70

M32 = 0xFFFF_FFFF
M64 = 0xFFFF_FFFF_FFFF_FFFF
NAN_BOX = 0xFFFF_FFFF_0000_0000  # upper half of a NaN-boxed single
CANONICAL_NAN_S = 0x7FC0_0000

# Every RISC-V helper (IEEE arithmetic, counters) lives in this one registry: RISCV64.helpers.
HELPERS = HelperRegistry()


# ---- the base encoding formats (RISC-V unprivileged spec, chapter 2 and 34) ------------------
FORMATS32 = r"""
%rs3       27:5
%rs2       20:5
%rs1       15:5
%rd        7:5
%rm        12:3
%csr       20:12
%sh5       20:5
%sh6       20:6

%imm_i     20:s12
%imm_s     25:s7 7:5
%imm_b     31:s1 7:1 25:6 8:4      !shift=1
%imm_j     31:s1 12:8 20:1 21:10   !shift=1
%imm_u     12:s20                  !shift=12

@r         ....... ..... ..... ... ..... .......  %rs2 %rs1 %rd
@r2        ....... ..... ..... ... ..... .......  %rs1 %rd
@r_rm      ....... ..... ..... ... ..... .......  %rs2 %rs1 %rm %rd
@r2_rm     ....... ..... ..... ... ..... .......  %rs1 %rm %rd
@r4_rm     ..... .. ..... ..... ... ..... .......  %rs3 %rs2 %rs1 %rm %rd
@i         ............ ..... ... ..... .......  imm=%imm_i %rs1 %rd
@s         ....... ..... ..... ... ..... .......  imm=%imm_s %rs2 %rs1
@b         ....... ..... ..... ... ..... .......  imm=%imm_b %rs2 %rs1
@u         .................... ..... .......  imm=%imm_u %rd
@j         .................... ..... .......  imm=%imm_j %rd
@sh5       ....... ..... ..... ... ..... .......  shamt=%sh5 %rs1 %rd
@sh6       ...... ...... ..... ... ..... .......  shamt=%sh6 %rs1 %rd
@csr       ............ ..... ... ..... .......  %csr %rs1 %rd
@atom_ld   ..... . . ..... ..... ... ..... .......  %rs1 %rd
@atom_st   ..... . . ..... ..... ... ..... .......  %rs2 %rs1 %rd
"""


class RVBuilder(Builder):
    """An IR builder that knows the RISC-V register file.

    `ipc`, `isize` and `word` describe the instruction being lifted; `next_pc` follows it.
    """

    ipc: int = 0
    isize: int = 4
    word: int = 0

    @property
    def next_pc(self) -> int:
        return (self.ipc + self.isize) & M64

    def c64(self, x: int) -> Val:
        return self.const(x, 64)

    def c32(self, x: int) -> Val:
        return self.const(x, 32)

    # integer registers ---------------------------------------------------------------------
    def x(self, n: int) -> Val:
        """x[n] as 64 bits; x0 is the constant 0."""
        return self.const(0, 64) if n == 0 else self.get(X0_SLOT + n)

    def x32(self, n: int) -> Val:
        """The low 32 bits of x[n] (the operand of the *W instructions)."""
        return self.trunc(self.x(n), 32)

    def set_x(self, n: int, v: Val) -> None:
        """x[n] = v (64 bits); writes to x0 are dropped."""
        if n:
            assert v.w == 64, v
            self.put(X0_SLOT + n, v)

    def set_x_sext(self, n: int, v: Val) -> None:
        """x[n] = sext(v): narrower results (the *W instructions, loads) sign-extend."""
        if n:
            self.put(X0_SLOT + n, self.sext(v, 64))

    def set_x_zext(self, n: int, v: Val) -> None:
        if n:
            self.put(X0_SLOT + n, self.zext(v, 64))

    def set_x_bool(self, n: int, c: Val) -> None:
        """x[n] = c ? 1 : 0 for an i1 condition."""
        if n:
            self.put(X0_SLOT + n, self.zext(c, 64))

    # floating-point registers (64-bit patterns) ---------------------------------------------
    def fr(self, n: int) -> Val:
        return self.get(F0_SLOT + n)

    def set_fr(self, n: int, v: Val) -> None:
        assert v.w == 64, v
        self.put(F0_SLOT + n, v)

    def fr_s(self, n: int) -> Val:
        """f[n] as a single (32 bits): the canonical NaN unless properly NaN-boxed."""
        v = self.fr(n)
        boxed = self.eq(self.lshr(v, self.c64(32)), self.c64(M32))
        return self.select(boxed, self.trunc(v, 32), self.c32(CANONICAL_NAN_S))

    def set_fr_s(self, n: int, v: Val) -> None:
        """f[n] = NaN-box(v) for a 32-bit single."""
        self.set_fr(n, self.or_(self.zext(v, 64), self.c64(NAN_BOX)))

    # addressing ------------------------------------------------------------------------------
    def addr(self, rs1: int, imm: int) -> Val:
        return self.add(self.x(rs1), self.c64(imm))
