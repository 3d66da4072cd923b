"""The Linux user-mode ABI: run one Linux program (like qemu-user).

ISA-independent: ELF loading, the memory map, files, signals, threads and the syscalls are
shared; each architecture contributes a small module (`riscv64.py`) with its syscall numbers,
register conventions and signal frame.

    from polyvm.linux import Process
    status = Process.from_file("prog", ["prog", "arg"]).run()
"""

from polyvm.linux.loader import LoadError
from polyvm.linux.process import Process

__all__ = ["LoadError", "Process"]
