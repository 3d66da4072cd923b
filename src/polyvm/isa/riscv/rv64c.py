"""RV64C: compressed instructions, each expanded to the 32-bit instruction it stands for.

As in QEMU's insn16.decode, a pattern is named after the instruction it expands to and decodes
into that instruction's arguments (rd, rs1, rs2, imm, shamt), so the same `trans_*` function
lifts both encodings. Reserved encodings come first in their group as `illegal`; HINTs (rd = x0,
shamt = 0, ...) are ordinary instructions whose result is dropped, as the spec allows.
"""

from __future__ import annotations

from polyvm.isa.decodetree import Args
from polyvm.isa.riscv.common import RVBuilder

FUNCTIONS = {"creg": lambda r: r + 8}  # rd'/rs1'/rs2': x8..x15

FORMATS16 = r"""
%rd          7:5
%rs2_5       2:5
%rs1_3       7:3                          !function=creg
%rs2_3       2:3                          !function=creg

%imm_ci      12:s1 2:5
%imm_lui     12:s1 2:5                    !shift=12
%imm_16sp    12:s1 3:2 5:1 2:1 6:1        !shift=4
%imm_cb      12:s1 5:2 2:1 10:2 3:2       !shift=1
%imm_cj      12:s1 8:1 9:2 6:1 7:1 2:1 11:1 3:3  !shift=1
%uimm_4spn   7:4 11:2 5:1 6:1             !shift=2
%uimm_cl_d   5:2 10:3                     !shift=3
%uimm_cl_w   5:1 10:3 6:1                 !shift=2
%uimm_ldsp   2:3 12:1 5:2                 !shift=3
%uimm_lwsp   2:2 12:1 4:3                 !shift=2
%uimm_sdsp   7:3 10:3                     !shift=3
%uimm_swsp   7:2 9:4                      !shift=2
%shamt6      12:1 2:5

@cr          .... ..... ..... ..          rs2=%rs2_5 rs1=%rd %rd
@ci          ... . ..... ..... ..         imm=%imm_ci rs1=%rd %rd
@c_li        ... . ..... ..... ..         imm=%imm_ci rs1=0 %rd
@c_lui       ... . ..... ..... ..         imm=%imm_lui %rd
@c_16sp      ... . ..... ..... ..         imm=%imm_16sp rs1=%rd %rd
@c_4spn      ... ........ ... ..          imm=%uimm_4spn rs1=2 rd=%rs2_3
@cl_d        ... ... ... .. ... ..        imm=%uimm_cl_d rs1=%rs1_3 rd=%rs2_3
@cl_w        ... ... ... .. ... ..        imm=%uimm_cl_w rs1=%rs1_3 rd=%rs2_3
@cs_d        ... ... ... .. ... ..        imm=%uimm_cl_d rs1=%rs1_3 rs2=%rs2_3
@cs_w        ... ... ... .. ... ..        imm=%uimm_cl_w rs1=%rs1_3 rs2=%rs2_3
@cs_2        ... ... ... .. ... ..        rs2=%rs2_3 rs1=%rs1_3 rd=%rs1_3
@cb_z        ... ... ... .. ... ..        imm=%imm_cb rs1=%rs1_3 rs2=0
@cj          ... ........... ..           imm=%imm_cj
@c_shift     ... . .. ... ..... ..        shamt=%shamt6 rs1=%rs1_3 rd=%rs1_3
@c_shift2    ... . ..... ..... ..         shamt=%shamt6 rs1=%rd %rd
@c_andi      ... . .. ... ..... ..        imm=%imm_ci rs1=%rs1_3 rd=%rs1_3
@c_ldsp      ... . ..... ..... ..         imm=%uimm_ldsp rs1=2 %rd
@c_lwsp      ... . ..... ..... ..         imm=%uimm_lwsp rs1=2 %rd
@c_sdsp      ... . ..... ..... ..         imm=%uimm_sdsp rs1=2 rs2=%rs2_5
@c_swsp      ... . ..... ..... ..         imm=%uimm_swsp rs1=2 rs2=%rs2_5
@c_jalr      ... . ..... ..... ..         imm=0 rs1=%rd
@c_mv        ... . ..... ..... ..         imm=0 rs1=%rs2_5 %rd
"""

PATTERNS = r"""
# ---- quadrant 0 ----
{
  illegal   000 00000000 --- 00           # all zeros, and c.addi4spn with nzuimm = 0
  addi      000 ........ ... 00  @c_4spn  # c.addi4spn
}
fld         001 ... ... .. ... 00  @cl_d  # c.fld
lw          010 ... ... .. ... 00  @cl_w  # c.lw
ld          011 ... ... .. ... 00  @cl_d  # c.ld
fsd         101 ... ... .. ... 00  @cs_d  # c.fsd
sw          110 ... ... .. ... 00  @cs_w  # c.sw
sd          111 ... ... .. ... 00  @cs_d  # c.sd

# ---- quadrant 1 ----
addi        000 . ..... ..... 01  @ci      # c.addi (c.nop)
{
  illegal   001 - 00000 ----- 01           # c.addiw with rd = 0
  addiw     001 . ..... ..... 01  @ci      # c.addiw
}
addi        010 . ..... ..... 01  @c_li    # c.li
{
  illegal   011 0 ----- 00000 01           # c.addi16sp / c.lui with a zero immediate
  addi      011 . 00010 ..... 01  @c_16sp  # c.addi16sp
  lui       011 . ..... ..... 01  @c_lui   # c.lui
}
srli        100 . 00 ... ..... 01  @c_shift   # c.srli
srai        100 . 01 ... ..... 01  @c_shift   # c.srai
andi        100 . 10 ... ..... 01  @c_andi    # c.andi
sub         100 0 11 ... 00 ... 01  @cs_2     # c.sub
xor         100 0 11 ... 01 ... 01  @cs_2     # c.xor
or          100 0 11 ... 10 ... 01  @cs_2     # c.or
and         100 0 11 ... 11 ... 01  @cs_2     # c.and
subw        100 1 11 ... 00 ... 01  @cs_2     # c.subw
addw        100 1 11 ... 01 ... 01  @cs_2     # c.addw
jal         101 ........... 01  @cj  rd=0     # c.j
beq         110 ... ... ..... 01  @cb_z       # c.beqz
bne         111 ... ... ..... 01  @cb_z       # c.bnez

# ---- quadrant 2 ----
slli        000 . ..... ..... 10  @c_shift2   # c.slli
fld         001 . ..... ..... 10  @c_ldsp     # c.fldsp
{
  illegal   010 - 00000 ----- 10              # c.lwsp with rd = 0
  lw        010 . ..... ..... 10  @c_lwsp     # c.lwsp
}
{
  illegal   011 - 00000 ----- 10              # c.ldsp with rd = 0
  ld        011 . ..... ..... 10  @c_ldsp     # c.ldsp
}
{
  illegal   100 0 00000 00000 10              # c.jr with rs1 = 0
  jalr      100 0 ..... 00000 10  @c_jalr rd=0  # c.jr
  addi      100 0 ..... ..... 10  @c_mv       # c.mv
}
{
  ebreak    100 1 00000 00000 10              # c.ebreak
  jalr      100 1 ..... 00000 10  @c_jalr rd=1  # c.jalr
  add       100 1 ..... ..... 10  @cr         # c.add
}
fsd         101 . ..... ..... 10  @c_sdsp     # c.fsdsp
sw          110 . ..... ..... 10  @c_swsp     # c.swsp
sd          111 . ..... ..... 10  @c_sdsp     # c.sdsp
"""


def trans_illegal(b: RVBuilder, f: Args, insn: int) -> bool:
    return False
