"""A guest Linux process: address space, threads, files, signals, and the run loop.

Everything lives on the `Process` object (no module state), so several processes can run in
one Python process, one after another, interleaved, or on different host threads.

Guest threads are scheduled round-robin on the calling host thread: each gets a time slice of
`slice_blocks` translated blocks (`engine.run(state, max_blocks)`). A syscall that cannot
complete now (futex wait, nanosleep, read from an empty pipe) leaves its thread with a `Wait`;
the scheduler skips waiting threads, polls them, and sleeps the host when nobody can run.

Processes work as in qemu-user: a guest fork (clone without CLONE_VM, vfork) is a host
`os.fork()`, so guest pids are host pids, pipes are host pipes, wait4 is the host's wait4 on
the children this process forked, and kill() of another pid is a host kill. In the child only
the forking guest thread survives; it runs on inside the same `run()` call and ends with
`os._exit` (or by re-raising its fatal signal on itself, so the parent's wait status says
"killed by"), never returning to the caller's code. A child's exit is noticed at time-slice
boundaries (waitid WNOWAIT; pidfds wake a sleeping scheduler) and sends the parent its exit
signal. The child turns host signals that other processes send it (SIGTERM, SIGUSR1, ...)
into guest signals; the top-level process keeps Python's handlers, so Ctrl-C stops it.
When the top-level run ends normally, children still running are left alone, as a shell
leaves background jobs; on --timeout or Ctrl-C (request_stop) they are killed with SIGKILL and
reaped, as timeout(1) ends the whole job. A child inherits the run's deadline.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import stat
import sys
import time
from collections.abc import Callable
from typing import Any, NoReturn

from polyvm.engine import Stop
from polyvm.isa import SLOT_ICOUNT
from polyvm.linux import signals as S
from polyvm.linux.errnos import EINTR, EMFILE
from polyvm.linux.files import HostFile, OpenFile
from polyvm.linux.loader import (
    MAX_IMAGE,
    MMAP_BASE,
    STACK_SIZE,
    STACK_TOP,
    TASK_SIZE,
    LoadError,
    build_stack,
    parse_and_map,
)
from polyvm.linux.mm import MAP_PRIVATE, MemoryMap, Vma
from polyvm.linux.riscv64 import RISCV64_LINUX
from polyvm.linux.vfs import VFS, ProcView
from polyvm.memory import PAGE_SIZE, PROT_EXEC, PROT_READ, PROT_WRITE, AddressSpace, MemoryFault

NOFILE = 1024
EXIT_TIMEOUT = 124
EXIT_DEADLOCK = 125
EXIT_INTERRUPTED = 130

ABIS = {"riscv64": RISCV64_LINUX}


class Wait:
    """A syscall waiting to complete. `poll()` returns the result once it can, else None."""

    __slots__ = (
        "poll",
        "deadline",
        "on_timeout",
        "rfds",
        "wfds",
        "restart",
        "cancel",
        "ecall_pc",
        "what",
        "interval",
        "interruptible",
    )

    def __init__(
        self,
        poll: Callable[[], int | None],
        *,
        deadline: float | None = None,
        on_timeout: int = 0,
        rfds: tuple[int, ...] = (),
        wfds: tuple[int, ...] = (),
        restart: bool = True,
        cancel: Callable[[], None] | None = None,
        what: str = "",
        interval: float | None = None,
        interruptible: bool = True,
    ) -> None:
        self.poll = poll
        self.deadline = deadline  # time.monotonic() value
        self.on_timeout = on_timeout
        self.rfds = rfds
        self.wfds = wfds
        self.restart = restart  # re-run after a SA_RESTART handler instead of failing with EINTR
        self.cancel = cancel
        self.ecall_pc = 0
        self.what = what
        self.interval = interval  # poll at least this often (something outside may change)
        self.interruptible = interruptible  # False: signals wait until it completes (vfork)


class Child:
    """A child process (a host process, forked by `Process.fork`) not yet reaped by the guest."""

    __slots__ = ("pid", "exit_signal", "pidfd", "notified")

    def __init__(self, pid: int, exit_signal: int) -> None:
        self.pid = pid
        self.exit_signal = exit_signal  # clone's low byte: SIGCHLD for fork, 0 for none
        self.notified = False  # exit_signal already sent for its exit
        self.pidfd = -1  # readable once the child has exited (Linux 5.3+), for the scheduler's select
        pidfd_open = getattr(os, "pidfd_open", None)
        if pidfd_open is not None:
            try:
                self.pidfd = pidfd_open(pid)
            except OSError:
                self.pidfd = -1

    def close(self) -> None:
        if self.pidfd >= 0:
            try:
                os.close(self.pidfd)
            except OSError:
                pass
            self.pidfd = -1


class Thread:
    def __init__(self, tid: int, regs: list[int]) -> None:
        self.tid = tid
        self.regs = regs
        self.mask = 0
        # mask to restore after the handler that ends rt_sigsuspend (or ppoll/pselect6 with a mask)
        self.saved_mask: int | None = None
        self.pending: S.Pending = S.Pending()
        self.sync_sig = 0  # a fault's signal: delivered before anything else
        self.crash: dict[int, tuple[int, str]] = {}  # signo -> (pc, detail) for the death message
        self.wait: Wait | None = None
        self.clear_child_tid = 0
        self.robust_list = (0, 0)
        self.altstack = (0, S.SS_DISABLE, 0)  # ss_sp, ss_flags, ss_size
        self.yield_now = False
        self.exited = False
        self.syscall_name = ""
        self.syscall_args: list[int] = []


class Process:
    def __init__(
        self,
        image: bytes,
        argv: list[str | bytes],
        *,
        env: list[str | bytes] | dict[str, str] | None = None,
        arch: str = "riscv64",
        root: str | None = None,
        exe: str | None = None,
        stdin: int = 0,
        stdout: int = 1,
        stderr: int = 2,
        strace: bool = False,
        quiet: bool = False,
        engine_factory: Callable[[Any, AddressSpace], Any] | None = None,
        slice_blocks: int = 2000,
        diag: int | None = None,
        gpu_backend: str = "auto",
    ) -> None:
        """Load `image` (the bytes of an ELF executable); raises LoadError if it cannot be run.

        stdin/stdout/stderr are host fds the guest's fds 0-2 are duplicated from; polyvm's own
        messages (warnings, strace, death) go to `diag`, by default a copy of `stderr`.
        """
        self.abi = ABIS[arch]
        self.isa = self.arch = self.abi.arch
        self._retired = 0  # instructions of threads that have exited
        # The paravirtual GPU (syscall 0x4750, docs/gpu.md), opened on the guest's first call;
        # gpu_backend "none" hides it (-ENOSYS).
        self.gpu_backend = gpu_backend
        self.gpu: Any = None
        # API hooks called as hook(nr, args) before each syscall; an int result answers it.
        self.syscall_hooks: list[Callable[[int, list[int]], int | None]] = []
        self.quiet = quiet
        self.strace = strace
        self.slice_blocks = slice_blocks
        self.pid = os.getpid()
        self.ppid = os.getppid()
        self._next_tid = self.pid
        self.exit_status: int | None = None
        self.exit_message = ""
        self._stop_requested = False
        self._warned: set[int] = set()
        self.umask = 0o022
        self.cpu_time = 0.0
        self.start_time = time.monotonic()
        self.start_wall = time.time()
        self._rr = 0
        self._last_thread: Thread | None = None
        self.futex_waiters: dict[int, list[Any]] = {}
        self.actions = [S.SigAction() for _ in range(S.NSIG + 1)]
        self.pending: S.Pending = S.Pending()
        self.rlimits: dict[int, tuple[int, int]] = {}
        self.children: dict[int, Child] = {}
        self.forked = False  # this is a fork's child: it ends with os._exit, never returning
        self.death_signal = 0  # the signal that killed the guest (default action), if any
        self._vfork_fd = -1  # write end closed at execve/exit, ending the parent's vfork wait
        self._child_check = 0.0
        self._host_signals: list[int] = []

        # ---- files -----------------------------------------------------------------------
        self.fds: dict[int, OpenFile] = {}
        self.cloexec: set[int] = set()
        self._diag_fd = os.dup(stderr if diag is None else diag)
        self._owned_fds = [self._diag_fd]
        for gfd, hfd in ((0, stdin), (1, stdout), (2, stderr)):
            try:
                dup = os.dup(hfd)
            except OSError:
                continue
            flags = {0: 0, 1: 1, 2: 1}[gfd]
            try:
                import fcntl

                acc = fcntl.fcntl(dup, fcntl.F_GETFL) & os.O_ACCMODE
                flags = {os.O_RDONLY: 0, os.O_WRONLY: 1, os.O_RDWR: 2}.get(acc, flags)
            except OSError:
                pass
            self.install_fd(HostFile(dup, f"/dev/fd/{hfd}", flags), gfd)

        self.vfs = VFS(
            root,
            ProcView(
                lambda: self.pid,
                lambda: self.exe_guest,
                lambda: self.cwd,
                lambda: self.mm.maps_text(),
                lambda: b"".join(a + b"\0" for a in self.argv),
                self._fd_links,
            ),
        )
        host_cwd = os.getcwd()
        self.cwd = self.vfs.guest_from_host(host_cwd) or "/"
        exe_host = os.path.abspath(exe) if exe else None
        self.exe_guest = (self.vfs.guest_from_host(exe_host) if exe_host else None) or (exe or "/unknown")
        self.exe_host = exe_host

        # ---- memory and the main thread -------------------------------------------------
        self.argv = [a if isinstance(a, bytes) else os.fsencode(a) for a in argv]
        if env is None:
            envb = [k + b"=" + v for k, v in os.environb.items()]
        elif isinstance(env, dict):
            envb = [os.fsencode(f"{k}={v}") for k, v in env.items()]
        else:
            envb = [e if isinstance(e, bytes) else os.fsencode(e) for e in env]
        self.envp = envb
        if engine_factory is None:
            from polyvm.engine.reference import Engine

            engine_factory = Engine
        self._engine_factory = engine_factory
        self._root = root
        self.threads: list[Thread] = []
        try:
            self._load(image, self.argv[0] if root is None and self.argv else os.fsencode(self.exe_guest))
        except LoadError:
            self.close()
            raise
        self._next_tid = self.pid + 1

    def _load(self, image: bytes, execfn: bytes) -> None:
        """Map `image` into a fresh address space with its stack; make it the only thread.

        Nothing of the process changes if the image is refused (LoadError).
        """
        mem = AddressSpace(window=TASK_SIZE)
        mm = MemoryMap(mem, MMAP_BASE)
        img = parse_and_map(image, mem, self.abi.e_machine)
        for seg in img.segments:
            if seg.end > STACK_TOP - STACK_SIZE - PAGE_SIZE:
                raise LoadError(f"segment at {seg.start:#x} overlaps the stack area below {STACK_TOP:#x}")
        ident = (0, 0)
        if self.exe_host:
            try:
                s = os.stat(self.exe_host)
                ident = (s.st_dev, s.st_ino)
            except OSError:
                pass
        for seg in img.segments:
            mm.add(
                Vma(seg.start, seg.end, seg.prot, MAP_PRIVATE, self.exe_guest, seg.offset, ident[0], ident[1])
            )
        mm.brk_start = mm.brk = img.brk
        try:
            sp = build_stack(
                mem,
                img,
                self.argv,
                self.envp,
                execfn=execfn,
                hwcap=self.abi.hwcap,
                minsigstksz=self.abi.minsigstksz,
                platform=self.abi.platform,
                ids=(os.getuid(), os.geteuid(), os.getgid(), os.getegid()),
                exec_stack=img.exec_stack,
            )
        except MemoryFault:
            raise LoadError("argument list and environment too large for the stack") from None
        stack_prot = PROT_READ | PROT_WRITE | (PROT_EXEC if img.exec_stack else 0)
        mm.add(Vma(STACK_TOP - STACK_SIZE, STACK_TOP, stack_prot, name="[stack]"))
        tramp = mm.find_free(PAGE_SIZE)
        if tramp is None:
            raise LoadError("no room in the address space for the signal trampoline")
        mm.map(Vma(tramp, tramp + PAGE_SIZE, PROT_READ | PROT_EXEC, name="[vdso]"), self.abi.sigreturn_code)
        self.sigreturn_addr = tramp
        self.mem, self.mm, self.image = mem, mm, img
        self.engine = self._engine_factory(self.isa, mem)
        regs = self.isa.new_state()
        self.abi.init_regs(regs, img.entry, sp)
        for t in self.threads:
            t.exited = True
            self._retired += t.regs[SLOT_ICOUNT]
        self.threads = [Thread(self.pid, regs)]
        self._last_thread = None
        self.futex_waiters = {}

    def exec_image(
        self,
        image: bytes,
        argv: list[bytes],
        envp: list[bytes],
        exe_guest: str,
        exe_host: str,
        caller: Thread | None = None,
    ) -> None:
        """execve: replace the program. Raises LoadError, leaving the process untouched.

        As on Linux, the calling thread's signal mask and pending signals carry over; handled
        signals go back to their default action, ignored ones stay ignored."""
        old = (self.argv, self.envp, self.exe_guest, self.exe_host)
        self.argv, self.envp, self.exe_guest, self.exe_host = argv, envp, exe_guest, exe_host
        try:
            self._load(image, os.fsencode(exe_guest))
        except BaseException:
            self.argv, self.envp, self.exe_guest, self.exe_host = old
            raise
        if caller is not None:
            new = self.threads[0]
            new.mask, new.pending = caller.mask, caller.pending.copy()
        for fd in sorted(self.cloexec):
            self.close_fd(fd)
        for i, act in enumerate(self.actions):
            if act.handler != S.SIG_IGN:
                self.actions[i] = S.SigAction()
        self._end_vfork()

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike[str],
        argv: list[str | bytes] | None = None,
        env: list[str | bytes] | dict[str, str] | None = None,
        root: str | None = None,
        **kw: Any,
    ) -> Process:
        """Load the executable at host `path`. argv defaults to [path]."""
        path = os.fspath(path)
        try:
            with open(path, "rb") as f:
                st = os.fstat(f.fileno())
                if not stat.S_ISREG(st.st_mode):
                    raise LoadError(f"{path}: not a regular file")
                if st.st_size > MAX_IMAGE:
                    raise LoadError(f"{path}: too large ({st.st_size} bytes)")
                data = f.read(MAX_IMAGE + 1)
        except OSError as e:
            raise LoadError(f"cannot read {path}: {e.strerror}") from None
        return cls(data, argv if argv is not None else [path], env=env, root=root, exe=path, **kw)

    # ---- small helpers -------------------------------------------------------------------
    @property
    def instructions(self) -> int:
        """Guest instructions executed so far, all threads together."""
        return self._retired + sum(t.regs[SLOT_ICOUNT] for t in self.threads)

    @property
    def main_thread(self) -> Thread | None:
        return self.threads[0] if self.threads else None

    def diag(self, msg: str) -> None:
        try:
            os.write(self._diag_fd, (msg.rstrip("\n") + "\n").encode(errors="replace"))
        except OSError:
            pass

    def warn_unsupported(self, nr: int, name: str) -> None:
        if nr in self._warned:
            return
        self._warned.add(nr)
        if not self.quiet:
            self.diag(f"polyvm: warning: unsupported syscall {nr} ({name or '?'})")

    def new_tid(self) -> int:
        tid = self._next_tid
        self._next_tid += 1
        return tid

    def find_thread(self, tid: int) -> Thread | None:
        for t in self.threads:
            if t.tid == tid:
                return t
        return None

    # ---- file descriptors ----------------------------------------------------------------
    def install_fd(self, f: OpenFile, fd: int | None = None, *, minfd: int = 0, cloexec: bool = False) -> int:
        if fd is None:
            fd = minfd
            while fd in self.fds:
                fd += 1
            if fd >= self.nofile():
                from polyvm.linux.errnos import SyscallError

                raise SyscallError(EMFILE)
        else:
            self.close_fd(fd)
        f.refs += 1
        self.fds[fd] = f
        if cloexec:
            self.cloexec.add(fd)
        else:
            self.cloexec.discard(fd)
        return fd

    def close_fd(self, fd: int) -> bool:
        f = self.fds.pop(fd, None)
        self.cloexec.discard(fd)
        if f is None:
            return False
        f.refs -= 1
        if f.refs == 0:
            f.close()
        return True

    def nofile(self) -> int:
        return self.rlimits.get(7, (NOFILE, 4096))[0]

    def _fd_links(self) -> dict[int, str]:
        return {fd: f.path for fd, f in self.fds.items()}

    def close(self) -> None:
        """Release host resources (fds, the GPU). Safe to call more than once."""
        gpu, self.gpu = getattr(self, "gpu", None), None
        if gpu is not None:
            gpu.close()
        for c in getattr(self, "children", {}).values():
            c.close()
        for fd in list(getattr(self, "fds", {})):
            self.close_fd(fd)
        for fd in getattr(self, "_owned_fds", []):
            try:
                os.close(fd)
            except OSError:
                pass
        self._owned_fds = []

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    # ---- running -------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Ask a running `run()` to stop (Ctrl-C): it returns 130 at the next time slice."""
        self._stop_requested = True

    def run(self, timeout: float | None = None, *, max_slices: int | None = None) -> int | None:
        """Run until the process exits; returns its exit status (128+signo if killed).

        With `max_slices`, return None if it is still running after that many time slices
        (a later call continues where this one stopped).
        """
        deadline = time.monotonic() + timeout if timeout else None
        slices = 0
        try:
            while self.exit_status is None:
                if self._stop_requested:
                    self._finish(EXIT_INTERRUPTED, "polyvm: interrupted")
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    # A fork's child shares the run's deadline: the whole guest tree is bounded.
                    msg = "" if self.forked else f"polyvm: timeout: guest still running after {timeout:g} s"
                    self._finish(EXIT_TIMEOUT, msg)
                    break
                if max_slices is not None and not self.forked:
                    if slices >= max_slices:
                        return None
                    slices += 1
                if self._host_signals:
                    self._forward_host_signals()
                if self.children:
                    self._check_children()
                t = self._pick(deadline)
                if t is not None:
                    self._run_slice(t)
        except KeyboardInterrupt:
            if self.forked:
                self.death_signal = S.SIGINT
            self._finish(EXIT_INTERRUPTED, "" if self.forked else "polyvm: interrupted")
        except BaseException as e:
            if self.forked:  # never unwind into the caller's code (pytest, the CLI) in a child
                self.diag(f"polyvm: internal error in forked child {self.pid}: {type(e).__name__}: {e}")
                os._exit(EXIT_DEADLOCK)
            raise
        finish = getattr(self.engine, "finish", None)
        if finish is not None:
            # (work for the next run, e.g. for its cache: never a reason for this run to fail)
            with contextlib.suppress(Exception, KeyboardInterrupt):
                finish(submit=not self.forked)
        if self.forked:
            self._exit_host()
        return self.exit_status

    def _finish(self, status: int, message: str = "") -> None:
        if self.exit_status is not None:
            return
        self.exit_status = status
        self.exit_message = message
        if message:
            self.diag(message)
        for t in self.threads:
            t.exited = True
            self._retired += t.regs[SLOT_ICOUNT]
        self.threads = []
        # Children outlive a normal exit, as with a shell; a timeout or Ctrl-C ends them too.
        self._end_children(kill=status in (EXIT_TIMEOUT, EXIT_INTERRUPTED) and not self.death_signal)
        self._end_vfork()
        self.close()

    def _pick(self, run_deadline: float | None) -> Thread | None:
        threads = self.threads
        n = len(threads)
        now = time.monotonic()
        for i in range(n):
            t = threads[(self._rr + i) % n]
            if t.wait is not None:
                self._poll_wait(t, now)
            if t.wait is None and not t.exited:
                self._rr = (self._rr + i + 1) % max(1, n)
                return t
        if self.exit_status is not None or not self.threads:
            return None
        # Nobody can run: sleep until a deadline or a host fd becomes ready.
        deadlines = [t.wait.deadline for t in self.threads if t.wait and t.wait.deadline is not None]
        rfds = sorted({fd for t in self.threads if t.wait for fd in t.wait.rfds})
        wfds = sorted({fd for t in self.threads if t.wait for fd in t.wait.wfds})
        intervals = [t.wait.interval for t in self.threads if t.wait and t.wait.interval is not None]
        # A child's exit may yet wake someone (SIGCHLD, or a signal the child sends).
        live = [c for c in self.children.values() if not c.notified]
        rfds = sorted(set(rfds) | {c.pidfd for c in live if c.pidfd >= 0})
        # A fork's child takes signals from other processes: blocked is not blocked forever there.
        if not deadlines and not rfds and not wfds and not intervals and not live and not self.forked:
            what = ", ".join(f"{t.tid}: {t.wait.what or t.syscall_name}" for t in self.threads if t.wait)
            self._finish(EXIT_DEADLOCK, f"polyvm: deadlock: every guest thread is blocked forever ({what})")
            return None
        delay = 0.05
        if deadlines:
            delay = min(delay, max(0.0, min(deadlines) - now))
        if intervals:
            delay = min(delay, min(intervals))
        if run_deadline is not None:
            delay = min(delay, max(0.0, run_deadline - now))
        if rfds or wfds:
            try:
                select.select(rfds, wfds, [], delay)
            except (OSError, ValueError):
                time.sleep(delay)
        elif delay > 0:
            time.sleep(delay)
        return None

    def _poll_wait(self, t: Thread, now: float) -> None:
        from polyvm.linux.errnos import SyscallError

        w = t.wait
        assert w is not None
        try:
            res = w.poll()
        except SyscallError as e:
            res = -e.errno
        except MemoryFault:
            res = -14
        if res is not None:
            self._complete(t, res)
            return
        if w.deadline is not None and now >= w.deadline:
            if w.cancel:
                w.cancel()
            self._complete(t, w.on_timeout)
            return
        sig = self._deliverable(t) if w.interruptible else 0
        if sig:
            if w.cancel:
                w.cancel()
            t.wait = None
            act = self.actions[sig]
            if w.restart and act.flags & S.SA_RESTART and act.handler not in (S.SIG_DFL, S.SIG_IGN):
                t.regs[self.abi.pc_slot] = w.ecall_pc
                if self.strace:
                    from polyvm.linux.syscalls import strace_result

                    strace_result(self, t, "? (restarted)")
            else:
                self._complete(t, -EINTR, interrupted=True)

    def _complete(self, t: Thread, res: int, *, interrupted: bool = False) -> None:
        t.wait = None
        if t.saved_mask is not None and not interrupted:
            # ppoll/pselect6 waited with a temporary mask and ended without a signal: put the
            # thread's own mask back (after a signal, the handler's frame restores it).
            t.mask, t.saved_mask = t.saved_mask, None
        self.abi.set_result(t.regs, res)
        if self.strace:
            from polyvm.linux.syscalls import strace_result

            strace_result(self, t, res)

    def _run_slice(self, t: Thread) -> None:
        regs = t.regs
        if t is not self._last_thread:
            regs[self.abi.reservation_slot] = 0  # an LR reservation does not survive a switch
            self._last_thread = t
        t.yield_now = False
        engine = self.engine
        for _ in range(256):
            if t.sync_sig or t.pending or self.pending:
                self._deliver(t)
            if t.exited or t.wait is not None or self.exit_status is not None:
                return
            c0 = time.process_time()
            stop: Stop = engine.run(regs, self.slice_blocks)
            self.cpu_time += time.process_time() - c0
            if self.handle_stop(t, stop):
                return

    def handle_stop(self, t: Thread, stop: Stop) -> bool:
        """Act on why the engine stopped thread t; True if its time slice should end."""
        regs = t.regs
        reason = stop.reason
        if reason == "budget":
            return True
        if reason == "syscall":
            from polyvm.linux.syscalls import dispatch

            dispatch(self, t, stop)
            return t.yield_now
        if reason == "fault":
            code = S.SEGV_ACCERR if stop.mapped or self.mm.find(stop.addr) else S.SEGV_MAPERR
            self.force_signal(
                t, S.SIGSEGV, S.siginfo(S.SIGSEGV, code, addr=stop.addr), stop.pc, f"address {stop.addr:#x}"
            )
        elif reason == "illegal":
            word = stop.info if isinstance(stop.info, int) else 0
            self.force_signal(
                t,
                S.SIGILL,
                S.siginfo(S.SIGILL, S.ILL_ILLOPC, addr=stop.pc),
                stop.pc,
                f"instruction {word:#x}",
            )
        elif reason == "misaligned":
            addr = stop.info if isinstance(stop.info, int) else 0
            self.force_signal(
                t, S.SIGBUS, S.siginfo(S.SIGBUS, S.BUS_ADRALN, addr=addr), stop.pc, f"address {addr:#x}"
            )
        elif reason == "breakpoint":
            self.force_signal(t, S.SIGTRAP, S.siginfo(S.SIGTRAP, S.TRAP_BRKPT, addr=stop.pc), stop.pc, "")
        elif reason == "wfi":
            regs[self.abi.pc_slot] = stop.resume
            return True
        elif reason == "stopped":
            return True
        else:
            self.force_signal(
                t, S.SIGILL, S.siginfo(S.SIGILL, S.ILL_ILLOPC, addr=stop.pc), stop.pc, f"{reason}"
            )
        return False

    def step(self) -> int | None:
        """Execute one instruction of the current thread (the debugger's single step), with
        whatever it causes (a syscall, a signal delivery). Returns the exit status once the
        process has exited, else None."""
        if self.exit_status is None:
            t = self._last_thread
            if t is None or t not in self.threads or t.wait is not None or t.exited:
                t = self._pick(None)  # polls blocked threads; may sleep briefly if none can run
            if t is not None:
                if t is not self._last_thread:
                    t.regs[self.abi.reservation_slot] = 0
                    self._last_thread = t
                if t.sync_sig or t.pending or self.pending:
                    self._deliver(t)
                if not t.exited and t.wait is None and self.exit_status is None:
                    stop = self.engine.step(t.regs)
                    if stop is not None:
                        self.handle_stop(t, stop)
        return self.exit_status

    # ---- processes -----------------------------------------------------------------------
    def fork(self, t: Thread, exit_signal: int, *, vfork: bool = False) -> tuple[int, int]:
        """A guest fork is a host fork, as in qemu-user: guest pids are host pids.

        Returns (pid, vfork_fd): in the parent the child's pid, and with `vfork` the read end of
        a pipe that reaches EOF once the child has called execve or exited; in the child (0, -1),
        and only thread `t` survives there. Raises OSError if the host cannot fork.
        """
        if not hasattr(os, "fork"):
            raise OSError(errno.ENOSYS, "no fork on this host")
        for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            try:
                if stream is not None:
                    stream.flush()  # else both processes would flush the same buffered text
            except Exception:
                pass
        done_r, done_w = os.pipe() if vfork else (-1, -1)
        try:
            pid = os.fork()
        except OSError:
            if vfork:
                os.close(done_r)
                os.close(done_w)
            raise
        if pid == 0:
            try:
                if vfork:
                    os.close(done_r)
                self._after_fork_child(t, done_w)
            except BaseException as e:  # never return into the caller's code in the child
                self.diag(f"polyvm: internal error after fork: {type(e).__name__}: {e}")
                os._exit(EXIT_DEADLOCK)
            return 0, -1
        if vfork:
            os.close(done_w)
            os.set_blocking(done_r, False)
        self.children[pid] = Child(pid, exit_signal)
        return pid, done_r

    def _after_fork_child(self, t: Thread, vfork_fd: int) -> None:
        """Reset per-process and per-thread state as Linux does for a fork's child."""
        self.forked = True
        forked = getattr(self.engine, "forked", None)
        if forked is not None:
            forked()  # (what the parent's engine had is the parent's)
        self.gpu = None  # a GPU context does not survive fork: the child opens its own
        self.pid = os.getpid()
        self.ppid = os.getppid()
        for c in self.children.values():
            c.close()
        self.children = {}
        for other in self.threads:
            if other is not t:
                other.exited = True
        self.threads = [t]
        t.tid = self.pid
        t.wait = None
        t.pending.clear()
        t.sync_sig = 0
        t.robust_list = (0, 0)
        t.clear_child_tid = 0
        self._next_tid = self.pid + 1
        self._last_thread = None
        self._rr = 0
        self.futex_waiters = {}
        self.pending.clear()
        self.cpu_time = 0.0
        self.start_time = time.monotonic()
        self.start_wall = time.time()
        self._retired = -t.regs[SLOT_ICOUNT]  # the child counts its own instructions
        self._stop_requested = False
        self._end_vfork()  # a vfork pending in our parent is its business, not ours
        self._vfork_fd = vfork_fd
        self._install_host_signal_handlers()

    def _end_vfork(self) -> None:
        if self._vfork_fd >= 0:
            try:
                os.close(self._vfork_fd)
            except OSError:
                pass
            self._vfork_fd = -1

    def _install_host_signal_handlers(self) -> None:
        """In a fork's child, signals that other processes send become guest signals.

        The child is a whole host process of its own here, so taking over its handlers touches
        nobody else. (The top-level process keeps Python's: Ctrl-C there stops the guest.)
        """
        import signal as hsignal

        def handler(hsig: int, _frame: Any) -> None:
            self._host_signals.append(S.from_host(hsig))

        for sig in (S.SIGHUP, S.SIGINT, S.SIGQUIT, S.SIGUSR1, S.SIGUSR2, S.SIGALRM, S.SIGTERM, S.SIGWINCH):
            hs = S.to_host(sig)
            if hs is None:
                continue
            try:
                hsignal.signal(hs, handler)
            except (OSError, ValueError, RuntimeError):
                pass

    def _forward_host_signals(self) -> None:
        sigs, self._host_signals[:] = list(self._host_signals), []
        for sig in sigs:
            if sig:
                self.send_signal(sig, S.siginfo(sig, S.SI_USER, pid=0, uid=os.getuid()))

    def _check_children(self) -> None:
        """Send each child's exit signal (SIGCHLD) once it has exited, without reaping it."""
        now = time.monotonic()
        if now - self._child_check < 0.002:
            return
        self._child_check = now
        waitid = getattr(os, "waitid", None)
        for c in list(self.children.values()):
            if c.notified:
                continue
            if waitid is None:  # no peeking: only wait4 will notice the exit
                continue
            try:
                res = waitid(os.P_PID, c.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                c.notified = True
                continue
            except OSError:
                continue
            if res is not None:
                self.notify_child_exit(c, res.si_code, res.si_status)

    def notify_child_exit(self, c: Child, code: int, status: int) -> None:
        """Generate the child's exit signal (once), with siginfo as Linux fills it for SIGCHLD."""
        if c.notified:
            return
        c.notified = True
        if c.exit_signal:
            guest_status = status if code == S.CLD_EXITED else S.from_host(status)
            self.send_signal(
                c.exit_signal, S.sigchld_info(c.exit_signal, code, c.pid, os.getuid(), guest_status)
            )

    def forget_child(self, pid: int) -> None:
        c = self.children.pop(pid, None)
        if c is not None:
            c.close()

    def _end_children(self, *, kill: bool) -> None:
        """At exit: reap children that have already exited; with `kill`, end the others first."""
        for c in list(self.children.values()):
            try:
                if kill:
                    os.kill(c.pid, S.to_host(S.SIGKILL) or 9)
                    os.waitpid(c.pid, 0)
                else:
                    os.waitpid(c.pid, os.WNOHANG)
            except OSError:
                pass
            c.close()
        self.children = {}

    def _exit_host(self) -> NoReturn:
        """End a fork's child: the host status tells the guest parent how it ended."""
        status = self.exit_status if self.exit_status is not None else EXIT_DEADLOCK
        sig = self.death_signal
        try:
            if sig:
                import signal as hsignal

                hs = S.to_host(sig)
                if hs is not None:
                    if sig in S.DEFAULT_CORE:
                        _no_core_dump()
                    if sig not in (S.SIGKILL, S.SIGSTOP):
                        try:
                            hsignal.signal(hs, hsignal.SIG_DFL)
                            hsignal.pthread_sigmask(hsignal.SIG_UNBLOCK, [hs])
                        except (OSError, ValueError, RuntimeError):
                            pass
                    os.kill(os.getpid(), hs)
                    time.sleep(0.1)  # the signal arrives; reaching the next line is unusual
        finally:
            os._exit(status & 0xFF)

    # ---- signals -------------------------------------------------------------------------
    def force_signal(self, t: Thread, sig: int, info: bytes, pc: int, detail: str) -> None:
        """A synchronous signal (fault): if blocked or ignored, the default action applies."""
        act = self.actions[sig]
        if act.handler == S.SIG_IGN or t.mask & S.bit(sig):
            self.actions[sig] = S.SigAction()
            t.mask &= ~S.bit(sig)
        t.pending[sig] = info
        t.sync_sig = sig
        t.crash[sig] = (pc, detail)

    def send_signal(self, sig: int, info: bytes, thread: Thread | None = None) -> None:
        """Queue an asynchronous signal for the process, or for one thread."""
        if sig == S.SIGKILL:
            self._die(sig, thread or self.main_thread)
            return
        act = self.actions[sig]
        if act.handler == S.SIG_IGN or (act.handler == S.SIG_DFL and sig in S.DEFAULT_IGNORE):
            return  # discarded at generation, as Linux does for ignored signals
        if thread is not None:
            thread.pending.setdefault(sig, info)
        else:
            self.pending.setdefault(sig, info)

    def _deliverable(self, t: Thread) -> int:
        if t.sync_sig:
            return t.sync_sig
        bits = 0
        for sig in t.pending:
            bits |= S.bit(sig)
        for sig in self.pending:
            bits |= S.bit(sig)
        bits &= ~t.mask
        if not bits:
            return 0
        return (bits & -bits).bit_length()

    def _deliver(self, t: Thread) -> None:
        sig = self._deliverable(t)
        if not sig:
            return
        if t.sync_sig == sig:
            t.sync_sig = 0
        info = t.pending.pop(sig, None)
        if info is None:
            info = self.pending.pop(sig)
        act = self.actions[sig]
        if act.handler == S.SIG_IGN:
            return
        if act.handler == S.SIG_DFL:
            if sig in S.DEFAULT_IGNORE:
                return
            self._die(sig, t)
            return
        regs = t.regs
        sp = regs[self.abi.sp_slot]
        ss_sp, ss_flags, ss_size = t.altstack
        on_alt = ss_size and ss_sp < sp <= ss_sp + ss_size
        if act.flags & S.SA_ONSTACK and not ss_flags & S.SS_DISABLE and not on_alt:
            sp = ss_sp + ss_size
        uc_flags = S.SS_ONSTACK if on_alt else (ss_flags & S.SS_DISABLE) | (ss_flags & S.SS_AUTODISARM)
        old_mask = t.saved_mask if t.saved_mask is not None else t.mask
        restorer = self.sigreturn_addr
        if self.abi.sigaction_has_restorer and act.flags & S.SA_RESTORER and act.restorer:
            restorer = act.restorer
        try:
            self.abi.setup_frame(
                self.mem, regs, sp, sig, info, act.handler, restorer, old_mask, (ss_sp, uc_flags, ss_size)
            )
        except MemoryFault as e:
            pc = regs[self.abi.pc_slot]
            if sig == S.SIGSEGV:
                t.crash[S.SIGSEGV] = (pc, f"address {e.addr:#x}, while delivering a signal")
                self._die(S.SIGSEGV, t)
                return
            self.actions[S.SIGSEGV] = S.SigAction()
            self.force_signal(
                t, S.SIGSEGV, S.siginfo(S.SIGSEGV, S.SEGV_MAPERR, addr=e.addr), pc, f"address {e.addr:#x}"
            )
            return
        if act.flags & S.SA_ONSTACK and ss_flags & S.SS_AUTODISARM:
            t.altstack = (0, S.SS_DISABLE, 0)
        t.saved_mask = None
        t.mask |= act.mask
        if not act.flags & S.SA_NODEFER:
            t.mask |= S.bit(sig)
        t.mask &= ~S.UNBLOCKABLE
        if act.flags & S.SA_RESETHAND:
            self.actions[sig] = S.SigAction()

    def _die(self, sig: int, t: Thread | None) -> None:
        """The default action of a fatal signal: the whole process ends with 128+sig."""
        msg = ""
        self.death_signal = sig
        # A fork's child dies quietly, as under qemu: its parent (a shell) reports it if it wants.
        if sig not in (S.SIGPIPE, S.SIGINT) and (not self.forked or self.strace):
            pc, detail = (t.crash.get(sig) if t else None) or (t.regs[self.abi.pc_slot] if t else 0, "")
            msg = f"polyvm: guest killed by {S.name(sig)} at pc {pc:#x}" + (f" ({detail})" if detail else "")
        self._finish(128 + sig, msg)

    # ---- threads -------------------------------------------------------------------------
    def exit_thread(self, t: Thread, status: int) -> None:
        t.exited = True
        if t.clear_child_tid:
            try:
                self.mem.write_u(t.clear_child_tid, 4, 0)
                from polyvm.linux.syscalls import futex_wake

                futex_wake(self, t.clear_child_tid, 1, 0xFFFFFFFF)
            except MemoryFault:
                pass
        if t in self.threads:
            self.threads.remove(t)
            self._retired += t.regs[SLOT_ICOUNT]
        if not self.threads:
            self._finish(status & 0xFF)


def _no_core_dump() -> None:
    """Die of a core-dumping signal without writing (or piping) a core file for polyvm itself."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0
    except Exception:
        pass
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except Exception:
        pass
