"""polyvm: a multi-architecture virtual machine (RISC-V 64, AArch64, x86_64) over one IR."""

__version__ = "0.1.0"
