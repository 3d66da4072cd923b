"""The native tiers: an LLVM JIT (and AOT through the translation cache) behind the same
`run(state, max_blocks) -> Stop` interface as the reference engine.

Tiers (`JitEngine(tier=...)`):

* ``jit``  every block is compiled before it first runs (regions of up to REGION_BLOCKS
  blocks found by following direct branches, REGION_BLOCKS_EMITTED where the first tier is
  emitted without LLVM), in the compact first-tier form (opt 0).
* ``auto`` cold code runs on the reference engine (the cheap tier); a block dispatched
  HOT times is compiled in the first-tier form together with every other block that has
  turned warm (one batched LLVM module).
  In both, a region that has run TIER2_INSNS instructions is recompiled by LLVM's optimizing
  pipeline (in the compile worker process, `cworker`) together with the regions on their way,
  as one bigger region; translations found in the persistent cache are used at once.
* ``aot``  like ``auto`` but expects `polyvm aot` to have filled the cache; whatever it did
  not discover is handled as in ``jit``.

All tiers share the state layout (a `uint64_t[]` here, the same slots as the reference
engine's list), so a run can move between them at any block boundary; `switch_every`
forces that (tests).
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import importlib.util
import json
import marshal
import os
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from polyvm.engine import GuestTrap, Stop, elfload, x64
from polyvm.engine import lower as L
from polyvm.engine.reference import Engine as Interp
from polyvm.engine.reference import HookStop
from polyvm.engine.tcache import TranslationCache, bundle_owner, load_aux, store_aux, write_files
from polyvm.ir import Block
from polyvm.isa import SLOT_ICOUNT, SLOT_PC, Arch, decodetree
from polyvm.memory import PAGE_SHIFT, PROT_EXEC, PROT_READ, PROT_WRITE, MemoryFault

M64 = (1 << 64) - 1
REGION_BLOCKS = 32  # a first-tier region made by LLVM (the compact form), blocks at most
# A first-tier region emitted without LLVM (`x64`): smaller, as each region has its own
# tier-up counter, so a hot region is rooted near the loop that made it hot (a hot module of
# that loop and little else, compiled sooner), and fewer blocks that never run are emitted.
# Alternating cold and warm runs on an empty cache, three rounds, medians of the guest loop
# (32 -> 8 blocks): bench_int cold 0.589 -> 0.534 s, bench_branch 0.570 -> 0.562, bench_float
# 0.330 -> 0.319, warm runs the same (0.385 -> 0.381, 0.377 -> 0.365, 0.112 -> 0.114); 4, 6
# and 16 blocks measured too: 6 the same as 8, 4 and 16 slower cold.
REGION_BLOCKS_EMITTED = 8
REGION_BLOCKS_T2 = 64
REGION_BLOCKS_T2_MAX = 128  # a hot region formed from several hot entries (LLVM time grows faster than size)
T2_ROOTS = 32  # hot entries in one hot region at most
HOT = 16
JIT_OPT = 0  # the first tier: the compact form, straight to fast instruction selection
TIER2_INSNS = 1_500_000  # instructions run in a region before it is recompiled hot


# A hot module goes to the compile worker once its quick x64 code has run HOT_STAY times
# TIER2_INSNS instructions (`_release_held`): a phase over before that leaves the worker free
# for the next one's.
def _env_number(name: str, default: float) -> float:
    """A tuning knob from the environment: the number in $name, else (unset, or not a number
    of default's type, or negative) the default."""
    try:
        v = type(default)(os.environ.get(name, default))
    except ValueError:
        return default
    return v if v >= 0 else default


HOT_STAY = int(_env_number("POLYVM_HOT_STAY", 16))
# ... or once it has run this long (`_release_held`: the run's time shared out by the counts):
# 24 M instructions of quick code take about this long where they are bound by the CPU, ten to
# forty times longer in a phase that waits on memory (a cold bench_mem's loops over 32 MiB
# arrays ran whole phases, two passes of each, on quick code: none of their modules was sent).
HOT_STAY_SECONDS = _env_number("POLYVM_HOT_STAY_SECONDS", 0.016)
BLOCK_INSNS = 4  # a time slice of N blocks (run's max_blocks) is N * BLOCK_INSNS instructions natively
# Tier-up counters, one per region, chosen by a hash of its name (`_counter_of`: cached code
# has its counter's offset in it). Two regions of a run that share one see each other's counts:
# with 4096 of them a cold bench_mem had a 64-block vfprintf region "hot" from a loop's counts
# (recompiled for nothing). With 65536 (512 KiB, touched only where used), a run of 180 regions
# has about 0.25 pairs sharing one to expect (n^2 / 2N), against about 4 with 4096.
N_COUNTERS = 1 << 16
FINISH_BLOCKS = 20_000  # interpreted blocks `finish` hands to the compile worker at most
FILL_PAGES = 32  # software-TLB entries one miss fills (the page and those after it, one mapping)
T2_OPT = 2  # the hot tier (see Compiler.compile)
DIRECT_VARIANT = "direct"  # the cache's part for code made for direct guest memory (`cache_for`)

# Decode tables are kept in the cache's per-host part like the dispatcher (`tcache.load_aux`):
# a program's first run loads them instead of parsing and compiling (`decodetree.persist`).
decodetree.persist(
    lambda name, key: load_aux("decode", name, key),
    lambda name, key, data: store_aux("decode", name, key, data),
)

_SLOW_LD = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64)
_SLOW_ST = ctypes.CFUNCTYPE(
    ctypes.c_uint64, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64, ctypes.c_uint64
)
_CALL = ctypes.CFUNCTYPE(
    ctypes.c_uint64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint64, ctypes.POINTER(ctypes.c_uint64)
)
_HOOK = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64)
_REGION = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_void_p, ctypes.c_void_p)


class JitUnavailable(RuntimeError):
    """llvmlite is missing or cannot target this host."""


_FACT_KEYS = ("triple", "cpu", "features", "llvm", "data_layout")
# /proc/cpuinfo's lines that say which CPU this is and what it can do (x86, Arm, RISC-V)
_CPU_KEYS = {
    b"vendor_id", b"cpu family", b"model", b"model name", b"stepping", b"flags",
    b"CPU implementer", b"CPU architecture", b"CPU variant", b"CPU part", b"CPU revision",
    b"Features", b"isa", b"uarch",
}  # fmt: skip
_host_facts: dict[str, str] | None = None


def host_facts() -> dict[str, str]:
    """What LLVM says of this host: its triple, CPU, CPU features, LLVM's version and the data
    layout. Kept in the cache (an aux entry) under a fingerprint of the CPU (/proc/cpuinfo's
    description and flags) and of LLVM's library file, so that a later run knows it without
    loading LLVM; asked of LLVM where there is no fingerprint (no /proc/cpuinfo) or nothing
    kept. Raises JitUnavailable without llvmlite."""
    global _host_facts
    if _host_facts is not None:
        return _host_facts
    from polyvm.engine import tcache

    fp = _host_fingerprint()
    facts = None
    data = tcache.load_aux("", "host", fp) if fp is not None else None
    if data:
        try:
            got = json.loads(data)
        except ValueError:
            got = None
        if (
            isinstance(got, dict)
            and sorted(got) == sorted(_FACT_KEYS)
            and all(isinstance(v, str) for v in got.values())
        ):
            facts = got
    if facts is None:
        try:
            import llvmlite.binding as llvm
        except ImportError as e:  # pragma: no cover - depends on the install
            raise JitUnavailable("the JIT needs llvmlite (pip install 'polyvm[jit]')") from e
        facts = _facts_from_llvm(llvm)
        _store_host_facts(facts, fp)
        return facts
    _host_facts = facts
    return facts


def _store_host_facts(facts: dict[str, str], fp: str | None = None) -> None:
    """Make `facts` this process's and keep them for later runs (under `fp`, the host's
    fingerprint, computed here if not given)."""
    global _host_facts
    from polyvm.engine import tcache

    _host_facts = facts
    fp = fp or _host_fingerprint()
    if fp is not None:
        tcache.store_aux("", "host", fp, json.dumps(facts).encode())


def _facts_from_llvm(llvm: Any) -> dict[str, str]:
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    triple = llvm.get_process_triple()
    cpu = llvm.get_host_cpu_name()
    features = llvm.get_host_cpu_features().flatten()
    tm = llvm.Target.from_triple(triple).create_target_machine(
        cpu=cpu, features=features, opt=2, reloc="pic", codemodel="large"
    )
    ver = llvm.llvm_version_info
    return {
        "triple": triple,
        "cpu": cpu,
        "features": features,
        "llvm": f"{ver[0]}.{ver[1]}.{ver[2]}",
        "data_layout": str(tm.target_data),
    }


def _host_fingerprint() -> str | None:
    """This host's CPU as /proc/cpuinfo describes it (its first processor) and llvmlite's
    library file (name, size, modification time); None where either cannot be read."""
    try:
        spec = importlib.util.find_spec("llvmlite")
        if spec is None or not spec.submodule_search_locations:
            return None
        libdir = os.path.join(next(iter(spec.submodule_search_locations)), "binding")
        libs = []
        for f in sorted(os.listdir(libdir)):
            if "llvmlite" in f and f.endswith((".so", ".dylib", ".dll")):
                st = os.stat(os.path.join(libdir, f))
                libs.append(f"{f}:{st.st_size}:{st.st_mtime_ns}".encode())
        with open("/proc/cpuinfo", "rb") as fh:
            text = fh.read(1 << 14)
    except (OSError, ImportError, ValueError):
        return None
    cpu = [ln for ln in text.split(b"\n\n", 1)[0].split(b"\n") if ln.split(b":", 1)[0].strip() in _CPU_KEYS]
    if not libs or not cpu:
        return None
    return hashlib.sha256(b"\n".join([sys.platform.encode(), *libs, *cpu])).hexdigest()


class Compiler:
    """One per process: LLVM target machines and the MCJIT engine that holds loaded objects."""

    _instance: Compiler | None = None

    @classmethod
    def get(cls) -> Compiler:
        if cls._instance is None:
            cls._instance = Compiler()
        return cls._instance

    def __init__(self) -> None:
        # What LLVM says of this host, without loading LLVM where a run has asked it before
        # (`host_facts`): a run that compiles nothing itself (its code cached, or emitted by
        # the first tier, the hot tier compiled in the worker) never imports llvmlite.
        facts = host_facts()
        self.triple, self.cpu, self.features = facts["triple"], facts["cpu"], facts["features"]
        self.data_layout = facts["data_layout"]
        self._llvm: Any = None  # llvmlite.binding, its target machines and MCJIT: `_init_llvm`
        self._tms: dict[int, Any] = {}
        self._ee: Any = None
        self.symbols: dict[str, int] = {}
        self.objects: set[bytes] = set()  # sha256 of the object files loaded
        self._recent: list[bytes] = []
        self._placed: dict[str, int] = {}  # functions of the objects `elfload` placed
        self.obj_bytes: dict[str, bytes] = {}  # cached objects made here (to rewrite bad files)
        # region name -> (symbol, address, cached object name or None, entry pcs), for code
        # loaded in this process
        self.regions: dict[str, tuple[str, int, str | None, list[int]]] = {}
        # regions whose code can be entered at every block: name -> the blocks not entries
        self.latent: dict[str, list[int]] = {}
        # What a cached object depends on besides the guest code (see tcache).
        self.host_id = f"{self.triple}|{self.cpu}|{self.features}|llvm{facts['llvm']}|cg{L.CODEGEN_REV}"
        self.compile_time = 0.0
        self._runtime: dict[str, int] | None = None
        self._fpn: dict[str, int | None] = {}  # "arch.helper" -> its out-of-line fast path
        self._worker: Any = None
        # The first tier's own code generator where the host allows it (`x64.available`).
        self.emitter: x64.Loader | None = x64.Loader() if x64.available() else None
        # POLYVM_PERF_MAP=1: name the native code for `perf` (/tmp/perf-PID.map, like QEMU's
        # -perfmap); function sizes come from each loaded object's symbol table.
        self._perf_map: Any = None
        self._perf_sizes: dict[str, int] = {}
        if os.environ.get("POLYVM_PERF_MAP", "0") not in ("", "0"):
            try:
                self._perf_map = open(f"/tmp/perf-{os.getpid()}.map", "a", buffering=1)  # noqa: SIM115
            except OSError:
                pass

    def _init_llvm(self) -> None:
        """Load LLVM (on the first compile, or an object `elfload` leaves to MCJIT)."""
        try:
            import llvmlite.binding as llvm
        except ImportError as e:  # pragma: no cover - depends on the install
            raise JitUnavailable("the JIT needs llvmlite (pip install 'polyvm[jit]')") from e
        facts = _facts_from_llvm(llvm)  # (which initializes LLVM's native target)
        if facts != host_facts():
            # (the facts kept for this host were not LLVM's after all: kept right for the next
            # run; this one's code is made for what LLVM says, never for features it lacks)
            _store_host_facts(facts)
            self.cpu, self.features = facts["cpu"], facts["features"]
        self._tms = self._target_machines(llvm)
        self._ee = llvm.create_mcjit_compiler(llvm.parse_assembly(""), self._tms[2])
        self._llvm = llvm

    @property
    def llvm(self) -> Any:
        """llvmlite.binding, loaded on first use."""
        if self._llvm is None:
            self._init_llvm()
        return self._llvm

    @property
    def tms(self) -> dict[int, Any]:
        if self._llvm is None:
            self._init_llvm()
        return self._tms

    @property
    def ee(self) -> Any:
        if self._llvm is None:
            self._init_llvm()
        return self._ee

    @property
    def worker(self) -> Any:
        """The compile worker process (started on the first submission)."""
        if self._worker is None:
            from polyvm.engine.cworker import CompileWorker

            self._worker = CompileWorker()
        return self._worker

    def module_text(self, functions: list[str], decls: dict[str, str]) -> str:
        head = f'target triple = "{self.triple}"\ntarget datalayout = "{self.data_layout}"\n'
        return head + "\n".join(decls.values()) + "\n" + "\n".join(functions) + "\n" + L.PROF_META + "\n"

    def _target_machines(self, llvm: Any) -> dict[int, Any]:
        """Target machines by code-generator level: 0 (fast isel) for the first tier, 2 for the
        hot tier."""
        target = llvm.Target.from_triple(self.triple)
        return {
            o: target.create_target_machine(
                cpu=self.cpu, features=self.features, opt=o, reloc="pic", codemodel="large"
            )
            for o in (0, 2)
        }

    def compile(self, module: str, opt: int, *, account: bool = True) -> bytes:
        """LLVM IR module -> native object file bytes.

        opt 0 is the first tier: the compact form (`lower.RegionLowering(compact=True)`) goes
        straight to LLVM's fast instruction selector and register allocator, no IR passes.
        opt 2 (hot regions) is LLVM's -O1 pipeline with the optimizing code generator.
        """
        llvm = self.llvm
        t0 = time.perf_counter()
        tms = self.tms
        mod = llvm.parse_assembly(resolve_native(module))
        if opt < 2:
            tm = tms[0]  # the compact form (no locals to promote): straight to fast isel
            if "alwaysinline" in module:
                # Native FP fast paths: inlined (a direct call in the large code model would
                # send fast isel to the slow selector at every call site).
                pb = llvm.create_pass_builder(tm, llvm.create_pipeline_tuning_options(speed_level=0))
                pm = llvm.create_new_module_pass_manager()
                pm.add_always_inliner_pass()
                pm.run(mod, pb)
        else:
            # The hot tier: LLVM's -O1 pipeline (it cost half as much as -O2 on a large region
            # and gave code of the same size) and the optimizing code generator.
            tm = tms[2]
            pb = llvm.create_pass_builder(tm, llvm.create_pipeline_tuning_options(speed_level=1))
            pb.getModulePassManager().run(mod, pb)
            # Then jump threading (an -O2 pass -O1 leaves out), with a clean-up after it: a
            # group of accesses checked in the TLB once (`lower.mem_groups`) branches on the
            # same condition at each access, and threading makes the accesses after the first
            # one straight-line code (a copy loop's eight byte stores: one compare instead of
            # eight). The same or less compile time on every hot module of the bench programs.
            pm = llvm.create_new_module_pass_manager()
            pm.add_jump_threading_pass()
            pm.add_instruction_combine_pass()
            pm.add_simplify_cfg_pass()
            pm.run(mod, pb)
        obj = tm.emit_object(mod)
        if account:
            self.compile_time += time.perf_counter() - t0
        return obj

    def load(self, obj: bytes, names: list[str]) -> dict[str, int]:
        """Load an object (once per process) and return the addresses of `names` in it. An
        object may also be a blob of regions the first tier emitted without LLVM (`x64`)."""
        if x64.is_blob(obj):
            if self.emitter is None:
                raise RuntimeError("emitted code for another host")
            out = self.emitter.load(obj, names)
            if self._perf_map is not None:
                self._perf_sizes.update((n, self.emitter.sizes[n]) for n in names)
            return out
        if all(n in self.symbols for n in names):
            return {n: self.symbols[n] for n in names}
        if not any(obj is o for o in self._recent):
            # (a module holds many regions, loaded one at a time from the same bytes: the
            # last few objects are recognised without hashing them again)
            self._recent = [obj, *self._recent[:7]]
            key = hashlib.sha256(obj).digest()
            if key not in self.objects:
                # (placed here where `elfload` can, else by LLVM's MCJIT)
                placed = elfload.load(obj, self.emitter.reserve) if self.emitter is not None else None
                if placed is not None:
                    for n, a in placed.symbols.items():
                        self._placed.setdefault(n, a)
                    if self._perf_map is not None:
                        self._perf_sizes.update(placed.sizes)
                else:
                    self.ee.add_object_file(self.llvm.ObjectFileRef.from_data(obj))
                    self.ee.finalize_object()
                    if self._perf_map is not None:
                        self._perf_sizes.update(_function_sizes(obj))
                self.objects.add(key)
        out = {}
        for n in names:
            a = self._placed.get(n) or (self._ee.get_function_address(n) if self._ee is not None else 0)
            if not a:
                raise RuntimeError(f"symbol {n} missing from translated object")
            out[n] = self.symbols[n] = a
            if not n.startswith("pv_"):
                self.perf_note(a, n)
        return out

    @property
    def perf_map_on(self) -> bool:
        return self._perf_map is not None

    def perf_note(self, addr: int, name: str, label: str | None = None) -> None:
        """One line of the perf map (when POLYVM_PERF_MAP is set): native code at addr."""
        size = self._perf_sizes.get(name)
        if self._perf_map is not None and size:
            self._perf_map.write(f"{addr:x} {size:x} {label or name}\n")

    def runtime(self) -> dict[str, int]:
        """Addresses of the runtime module's functions (`lower.runtime_text`: the dispatcher
        and the compact form's memory accesses), compiled once per host and cached."""
        if self._runtime is None:
            from polyvm.engine import tcache

            m = self.module_text([L.runtime_text()], {})
            obj = tcache.load_aux(self.host_id, "runtime", m)
            if obj is None:
                obj = self.compile(m, 2)
                tcache.store_aux(self.host_id, "runtime", m, obj)
            names = ["polyvm_dispatch", *(f"polyvm_{k}" for k in L.MEM_FNS)]
            self._runtime = self.load(obj, names)
        return self._runtime

    def prepare(self, archs: list[Arch]) -> int:
        """Compile what is made once per host whatever the program (the runtime module and
        every helper fast path of `archs`, and their decode tables: `decodetree.persist`)
        into the cache, so a program's first run compiles only its own code (`polyvm cache
        prepare`). Returns the number of objects."""
        self.runtime()
        n = 1
        for arch in archs:
            arch.prepare()
            names = sorted(getattr(arch, "native_names", ()))
            n += sum(1 for v in self.fast_paths(arch, names).values() if v is not None)
        return n

    def fast_paths(self, arch: Arch, names: list[str]) -> dict[str, int | None]:
        """The addresses of helpers' out-of-line fast paths (`lower.fpn_wrapper_text`), which
        the first tier calls through ctx's table; None for a helper that has none. Compiled
        once per host and helper (the first tier's way), those not cached yet together in one
        module, and cached under each name (the object shared), like translations: what they
        are made of (the ISA's fast paths) is the same for one polyvm version and CODEGEN_REV."""
        from polyvm.engine import tcache

        out: dict[str, int | None] = {}
        todo: list[tuple[str, str, str, tuple[str, str]]] = []  # (name, key, symbol, fast path)
        for name in dict.fromkeys(names):
            key = f"{arch.name}.{name}"
            if key in self._fpn:
                out[name] = self._fpn[key]
                continue
            sym = "polyvm_fpn_" + hashlib.sha1(key.encode()).hexdigest()[:16]
            obj = tcache.load_aux(self.host_id, f"fpn-{key}", sym)
            if obj is not None:
                out[name] = self._fpn[key] = self.load(obj, [sym])[sym]
                continue
            h = arch.helpers[name] if name in arch.helpers else None
            native = native_helper_text(arch, name, (None,) * len(h.arg_widths)) if h is not None else None
            if native is None:
                out[name] = self._fpn[key] = None
                continue
            todo.append((name, key, sym, native))
        if todo:
            decls: dict[str, str] = {}
            funcs: list[str] = []
            for _, _, sym, (inline, text) in todo:
                d, body = L.split_decls(text)
                decls.update(d)
                funcs += [body, L.fpn_wrapper_text(sym, inline)]
            obj = self.compile(self.module_text(funcs, decls), 0)
            addrs = self.load(obj, [sym for _, _, sym, _ in todo])
            for name, key, sym, _ in todo:
                tcache.store_aux(self.host_id, f"fpn-{key}", sym, obj)
                out[name] = self._fpn[key] = addrs[sym]
        return out


class _Held:
    """A hot module held back (`JitEngine._release_held`): the worker's arguments, what it
    makes, the quick regions' counters, their count when it was held and at the last look,
    and the time its quick code has run since (an estimate)."""

    __slots__ = ("args", "made", "opt", "hashes", "flushes", "counters", "start", "last", "spent")

    def __init__(
        self, args: tuple, made: list, opt: int, hashes: dict, flushes: int, counters: list[int], start: int
    ) -> None:
        self.args, self.made, self.opt, self.hashes, self.flushes = args, made, opt, hashes, flushes
        self.counters, self.start, self.last, self.spent = counters, start, start, 0.0


class _Region:
    __slots__ = ("name", "pcs", "pages", "opt", "counter", "addr", "entry")

    def __init__(
        self, name: str, entry: int, pcs: list[int], pages: set[int], opt: int, counter: int
    ) -> None:
        self.name, self.entry, self.pcs, self.pages, self.opt, self.counter = (
            name,
            entry,
            pcs,
            pages,
            opt,
            counter,
        )
        self.addr = 0


class JitEngine:
    """Native execution of IR regions; the reference engine is the cold tier and the debugger."""

    def __init__(
        self,
        arch: Arch,
        mem: Any,
        *,
        tier: str = "auto",
        cache: Any = None,
        switch_every: int = 0,
        max_insns: int = 64,
        background: bool | None = None,
        baseline: str | None = None,
        direct: bool | None = None,
    ) -> None:
        if tier not in ("jit", "auto", "aot"):
            raise ValueError(f"unknown tier {tier}")
        # The first tier's code generator: "x64" (`x64`, where the host allows it; the
        # default) or "llvm" (`lower.RegionLowering(compact=True)`); $POLYVM_BASELINE.
        baseline = baseline or os.environ.get("POLYVM_BASELINE") or "x64"
        if baseline not in ("x64", "llvm"):
            raise ValueError(f"unknown baseline {baseline}")
        self.arch, self.mem, self.tier = arch, mem, tier
        # Guest memory at one host offset (`memory.AddressSpace(window=...)`): native code adds
        # ctx's CTX_GUEST_BASE to an address the TLB allows, and only pages at that offset are
        # put in the TLB. Such code is another variant in the cache. (`direct` True without
        # such memory: code made for a process that has it, by the compile worker.)
        base = getattr(mem, "direct_base", None)
        self.direct = base is not None if direct is None else direct
        self.cache = self.cache_for(cache)
        self.name = tier
        self.max_insns = max_insns
        self.compiler = Compiler.get()
        self.emit_first = baseline == "x64" and self.compiler.emitter is not None
        self.region_blocks = REGION_BLOCKS_EMITTED if self.emit_first else REGION_BLOCKS
        self.interp = Interp(arch, mem, max_insns=max_insns)
        mem.on_code_write = self.invalidate_page
        mem.page_listeners.append(self._on_pages)
        # Memory hooks (API) read and write registers in the caller's state list: current
        # around each access's hooks (native code stores the pc and count first).
        mem.hook_sync = (self._sync_out, self._sync_in)
        self.switch_every = switch_every
        # Background compilation in the compile worker process (cworker) while the guest runs
        # on the code it has. None (default): hot-tier recompiles go there when the host has a
        # second core ($POLYVM_JIT_BACKGROUND=0 turns it off, =1 on); True: the auto tier's
        # first compiles too; False: everything is compiled in place, before it runs.
        if background is None:
            env = os.environ.get("POLYVM_JIT_BACKGROUND", "")
            self.bg_hot = env == "1" or (env != "0" and (os.cpu_count() or 1) >= 2)
            self.background = False
        else:
            self.bg_hot = self.background = background
        n = arch.nslots
        self.st = (ctypes.c_uint64 * n)()
        self._st_addr = ctypes.addressof(self.st)
        # (its words, then the first tier's block marks: `lower.SEEN_AT`)
        self.ctx = (ctypes.c_uint64 * (L.CTX_WORDS + L.SEEN_SIZE // 8))()
        self._ctx_addr = ctypes.addressof(self.ctx)
        self.tlb = (ctypes.c_uint64 * (L.TLB_SIZE * L.TLB_ENTRY_WORDS))()
        ctypes.memset(self.tlb, 0xFF, ctypes.sizeof(self.tlb))
        self._tlb_pages: dict[int, Any] = {}  # pn -> keep-alive of its host buffer export
        self.ctx[L.CTX_TLB] = ctypes.addressof(self.tlb)
        self.ctx[L.CTX_GUEST_BASE] = base or 0
        self.counters = (ctypes.c_uint64 * N_COUNTERS)()
        self.ctx[L.CTX_COUNTERS] = ctypes.addressof(self.counters)
        self.seen = (ctypes.c_uint8 * L.SEEN_SIZE).from_address(ctypes.addressof(self.ctx) + L.SEEN_AT)
        self.table: dict[int, int] = {}  # pc -> native address
        # target pc -> the words of emitted code's chained exits to it, by address (`_chain_to`)
        self._chain_words: dict[int, dict[int, Any]] = {}
        self._table_arr: Any = None
        self._table_dirty = True
        self.regions: dict[str, _Region] = {}
        self.pc_region: dict[int, _Region] = {}
        self.page_regions: dict[int, set[str]] = {}
        self.heat: dict[int, int] = {}
        self._page_hashes: dict[int, str | None] = {}
        self._not_cached: set[int] = set()
        self._no_native: set[int] = set()  # pcs whose code the native tier cannot translate
        self._lifted: dict[int, Block] = {}  # pc -> lifted block (dropped when its pages change)
        self.insn_size: dict[int, int] = {}
        self.code_hooks: list[tuple[int, int, Callable[[int, int], Any]]] = []
        self.breakpoints = self.interp.breakpoints
        self.blocks_compiled = 0
        self.regions_compiled = 0
        self.regions_loaded = 0
        self.compile_time = 0.0
        self.native_blocks = 0
        self._pending: BaseException | None = None
        self._returns = 0
        self._slice_start = 0  # the count when run() began, and its time slice (instructions)
        self._slice = 0
        self._inherited: set[int] = set()  # interpreted before a fork (see `forked`)
        self._child = False  # a fork's child (see `forked`)
        if self.cache is not None and self.bg_hot and self.cache.writes_in_background:
            # (the CLI's cache: what a run stores goes to disk when it ends, through the worker)
            self.cache.defer()
        self._jobs: list[tuple[Any, list, int, dict[int, str | None], int]] = []
        # Hot modules held back until their quick code has run a while (`_release_held`)
        self._held: list[_Held] = []
        self._held_clock = (0.0, 0)  # (time, instruction count) at the last look at them
        self._pending_pcs: set[int] = set()
        # Blocks inside first-tier regions that are not (yet) entries: pc -> the region's name
        self._latent: dict[int, str] = {}
        self._flushes = 0
        self.bg_compile_time = 0.0
        self._cur: list[int] | None = None
        names = sorted(n for n, _ in arch.helpers.items())
        self.helper_index = {n: i for i, n in enumerate(names)}
        self.helper_list = [arch.helpers[n] for n in names]
        self.native_emit = getattr(arch, "native_emit", None)
        # Callbacks (kept alive as attributes: native code holds their addresses).
        self._cb_ld = _SLOW_LD(self._slow_ld)
        self._cb_st = _SLOW_ST(self._slow_st)
        self._cb_call = _CALL(self._call)
        self._cb_hook = _HOOK(self._hook)
        self._cb_fpn = _CALL(self._call_first)
        for k, cb in (
            (L.CTX_SLOW_LD, self._cb_ld),
            (L.CTX_SLOW_ST, self._cb_st),
            (L.CTX_CALL, self._cb_call),
            (L.CTX_HOOK, self._cb_hook),
        ):
            self.ctx[k] = ctypes.cast(cb, ctypes.c_void_p).value or 0
        rt = self.compiler.runtime()
        for i, k in enumerate(L.MEM_FNS):
            self.ctx[L.CTX_MEM_FN + i] = rt[f"polyvm_{k}"]
        # The first tier's helper table (by helper index): `_call_first` until the helper's
        # out-of-line fast path is there (see `_fast_path`).
        self._fpn_first = ctypes.cast(self._cb_fpn, ctypes.c_void_p).value or 0
        self.fpn = (ctypes.c_uint64 * max(1, len(names)))(*[self._fpn_first] * max(1, len(names)))
        self.ctx[L.CTX_FPN] = ctypes.addressof(self.fpn)
        self._dispatch = _REGION(rt["polyvm_dispatch"])
        self._rebuild_table()

    def cache_for(self, cache: Any) -> Any:
        """The part of `cache` that holds code of this engine's kind (see `direct`)."""
        return cache.variant(DIRECT_VARIANT) if cache is not None and self.direct else cache

    # ---- stats -------------------------------------------------------------------------
    @property
    def stats(self) -> str:
        return (
            f"{self.regions_compiled} regions ({self.blocks_compiled} blocks) compiled in "
            f"{self.compile_time:.3f} s, {self.regions_loaded} loaded from the translation cache, "
            f"{self.ctx[L.CTX_DISPATCHES]} native dispatches, {self.bg_compile_time:.3f} s compiling "
            f"in the background; "
            f"interpreter: {self.interp.blocks_compiled} blocks translated in {self.interp.compile_time:.3f} s"
        )

    # ---- the pc -> code table ---------------------------------------------------------------
    def _rebuild_table(self) -> None:
        cap = 1024
        while cap < 2 * len(self.table) + 16:
            cap *= 2
        arr = (ctypes.c_uint64 * (2 * cap))()
        ctypes.memset(arr, 0xFF, ctypes.sizeof(arr))
        mask = cap - 1
        for pc, addr in self.table.items():
            h = ((pc >> 1) ^ (pc >> 13)) & mask
            while arr[2 * h] != L.EMPTY_PC:
                h = (h + 1) & mask
            arr[2 * h] = pc
            arr[2 * h + 1] = addr
        self._table_arr = arr
        self._table_cap = cap
        self.ctx[L.CTX_TABLE] = ctypes.addressof(arr)
        self.ctx[L.CTX_TABLE_MASK] = mask
        self._table_dirty = False
        for pc in self._chain_words:
            self._chain_to(pc)

    def _chain_to(self, pc: int) -> None:
        """Point the chained exits to pc (`x64.X64Region._chain`) at its translation (or at
        the thunk back to the dispatcher): kept equal to the table, which they bypass."""
        words = self._chain_words.get(pc)
        if words:
            to = self.table.get(pc) or self.compiler.emitter.thunk
            for w in words.values():
                w.value = to

    def _table_set(self, pc: int, addr: int) -> None:
        old = self.table.get(pc)
        self.table[pc] = addr
        if pc in self._chain_words:
            self._chain_to(pc)
        if self._table_dirty:
            return
        if old is not None or 2 * len(self.table) > self._table_cap:
            self._table_dirty = True
            return
        arr, mask = self._table_arr, self._table_cap - 1
        h = ((pc >> 1) ^ (pc >> 13)) & mask
        while arr[2 * h] != L.EMPTY_PC:
            h = (h + 1) & mask
        arr[2 * h + 1] = addr
        arr[2 * h] = pc

    # ---- invalidation --------------------------------------------------------------------
    def invalidate_page(self, pn: int) -> None:
        self.interp.invalidate_page(pn)
        self._forget_hashes(pn, pn + 1)
        removed = False
        for name in self.page_regions.pop(pn, ()):
            r = self.regions.pop(name, None)
            if r is None:
                continue
            self._drop_latent(name)
            for pc in r.pcs:
                if self.pc_region.get(pc) is r:
                    del self.pc_region[pc]
                    self.table.pop(pc, None)
            removed = True
        if removed:
            # At once, not at the next return to Python: this may run inside native code (a
            # store into code, through the slow-path callback), whose dispatcher goes on
            # looking pcs up in the table it has until then.
            self._rebuild_table()

    def flush(self) -> None:
        self._flushes += 1  # background results made before this are dropped
        self.interp.flush()
        self._page_hashes.clear()
        self._not_cached.clear()
        self._no_native.clear()
        self._lifted.clear()
        self._latent.clear()
        self.regions.clear()
        self.pc_region.clear()
        self.page_regions.clear()
        self.table.clear()
        self._rebuild_table()  # at once: a hook (native code running) may flush
        self._chain_words.clear()  # (all pointed back at the dispatcher by the rebuild)
        self._tlb_flush()

    def _tlb_flush(self) -> None:
        ctypes.memset(self.tlb, 0xFF, ctypes.sizeof(self.tlb))
        self._tlb_pages.clear()

    def _watched(self, b: Block) -> bool:
        """Stores into every page of b are reported (so a cached lift of b is current)."""
        code = self.mem._code_pages
        return all(pn in code for pn in range(b.pc >> PAGE_SHIFT, ((b.end - 1) >> PAGE_SHIFT) + 1))

    def _forget_hashes(self, a: int, b: int) -> None:
        """Pages [a, b) may have new contents or mappings: forget what was learnt about them."""
        if self._page_hashes:
            for pn in [p for p in self._page_hashes if a <= p < b] if b - a > 64 else range(a, b):
                self._page_hashes.pop(pn, None)
        if self._not_cached:
            self._not_cached = {pc for pc in self._not_cached if not a <= pc >> PAGE_SHIFT < b}
        if self._no_native:
            self._no_native = {pc for pc in self._no_native if not a - 1 <= pc >> PAGE_SHIFT < b}
        if self._lifted:
            # A block may start on the page before the one it runs into.
            self._lifted = {pc: blk for pc, blk in self._lifted.items() if not a - 1 <= pc >> PAGE_SHIFT < b}

    def _on_pages(self, a: int, b: int, became_code: bool = False) -> None:
        if not became_code:  # (a page becoming code keeps its contents)
            self._forget_hashes(a, b)
        if not self._tlb_pages:
            return
        if b - a > len(self._tlb_pages):
            pns = [pn for pn in self._tlb_pages if a <= pn < b]
        else:
            pns = [pn for pn in range(a, b) if pn in self._tlb_pages]
        tlb = self.tlb
        for pn in pns:
            i = (pn & (L.TLB_SIZE - 1)) * L.TLB_ENTRY_WORDS
            if tlb[i] == pn << PAGE_SHIFT or tlb[i + 1] == pn << PAGE_SHIFT:
                tlb[i] = tlb[i + 1] = L.EMPTY_PC
            del self._tlb_pages[pn]

    def _fill(self, addr: int) -> None:
        """Software-TLB entries for the page of addr (just accessed through the slow path) and
        up to FILL_PAGES - 1 pages after it in the same mapping: code streaming through fresh
        memory then leaves native code once per FILL_PAGES pages, not once per page."""
        mem = self.mem
        if mem.hooks:
            return
        pn = (addr & M64) >> PAGE_SHIFT
        sp = mem._find(pn)
        if sp is None or not sp.prot & PROT_READ:
            return
        if self.direct and not mem.direct(pn):
            return  # (not at the direct offset native code adds: always the slow path)
        try:
            # (holds the host buffer exported while native code may use its address)
            keep = ctypes.c_char.from_buffer(sp.buf, sp.off + ((pn - sp.start) << PAGE_SHIFT))
        except (TypeError, ValueError):
            return
        host = ctypes.addressof(keep)
        writable = bool(sp.prot & PROT_WRITE)
        code = mem._code_pages
        tlb, pages = self.tlb, self._tlb_pages
        for p in range(pn, min(pn + FILL_PAGES, sp.end)):
            i = (p & (L.TLB_SIZE - 1)) * L.TLB_ENTRY_WORDS
            old = tlb[i] if tlb[i] != L.EMPTY_PC else tlb[i + 1]
            if old != L.EMPTY_PC and old >> PAGE_SHIFT != p:
                pages.pop(old >> PAGE_SHIFT, None)
            base = p << PAGE_SHIFT
            tlb[i] = base
            tlb[i + 1] = base if writable and p not in code else L.EMPTY_PC
            tlb[i + 2] = (host - base) & M64
            host += 1 << PAGE_SHIFT
            pages[p] = keep

    # ---- callbacks from native code ---------------------------------------------------------
    def _fail(self, e: BaseException) -> int:
        self._pending = e
        self.ctx[L.CTX_STATUS] = 1
        return 0

    def _slow_ld(self, _ctx: int, addr: int, size: int) -> int:
        try:
            v = self.mem._slow_load(addr, size)
            self._fill(addr)
            return v
        except BaseException as e:  # noqa: BLE001 - reported after native code returns
            return self._fail(e)

    def _slow_st(self, _ctx: int, addr: int, size: int, value: int) -> int:
        try:
            self.mem._slow_store(addr, size, value)
            self._fill(addr)
            return 0
        except BaseException as e:  # noqa: BLE001
            self._fail(e)
            return 1

    def _call(self, _ctx: int, _state: int, idx: int, args: Any) -> int:
        try:
            h = self.helper_list[idx]
            a = [args[i] for i in range(len(h.arg_widths))]
            r = h.fn(self.st, *a) if h.state else h.fn(*a)
            return (r or 0) & M64
        except BaseException as e:  # noqa: BLE001
            return self._fail(e)

    def _call_first(self, ctx: int, state: int, idx: int, args: Any) -> int:
        """Helper idx called through the first tier's table before its fast path was put
        there (code loaded from the cache): put it there, then call the helper."""
        self._fast_path(idx)
        return self._call(ctx, state, idx, args)

    def _fast_path(self, *idxs: int) -> None:
        """Put the out-of-line fast paths of helpers idxs, those that have one, into the first
        tier's table (compiled together where none is cached, `Compiler.fast_paths`); else
        the table calls the helper itself. Once per helper: an entry that is no longer
        `_call_first` is done."""
        idxs = tuple(i for i in dict.fromkeys(idxs) if self.fpn[i] == self._fpn_first)
        if not idxs:
            return
        addrs: dict[str, int | None] = {}
        if self.native_emit is not None:
            t0 = time.perf_counter()
            try:
                addrs = self.compiler.fast_paths(self.arch, [self.helper_list[i].name for i in idxs])
            except Exception:  # noqa: BLE001 - (LLVM failed: the helper itself still gives the result)
                addrs = {}
            self.compile_time += time.perf_counter() - t0
        for i in idxs:
            self.fpn[i] = addrs.get(self.helper_list[i].name) or (self.ctx[L.CTX_CALL])

    def _hook(self, _ctx: int, pc: int, size: int) -> int:
        try:
            self._sync_out()
            stop = False
            for b, e, cb in list(self.code_hooks):
                if b <= pc <= e and cb(pc, size) is False:
                    stop = True
                    break  # as in the interpreter, hooks after the one that stops are not called
            self._sync_in()
            return 1 if stop else 0
        except HookStop:
            return 1
        except BaseException as e:  # noqa: BLE001
            self._fail(e)
            return 1

    def _sync_out(self) -> None:
        if self._cur is not None:
            self._cur[:] = self.st[: len(self._cur)]

    def _sync_in(self) -> None:
        if self._cur is not None:
            self.st[: len(self._cur)] = self._cur

    # ---- hooks ---------------------------------------------------------------------------
    def add_code_hook(self, begin: int, end: int, cb: Callable[[int, int], Any]) -> None:
        self.code_hooks.append((begin, end, cb))

        def interp_cb(pc: int, size: int, _cb: Callable = cb) -> Any:
            self._sync_out()
            try:
                return _cb(pc, size)
            finally:
                self._sync_in()

        interp_cb.original = cb  # type: ignore[attr-defined]
        self.interp.add_code_hook(begin, end, interp_cb)
        self.flush()

    def remove_code_hook(self, cb: Callable[[int, int], Any]) -> None:
        self.code_hooks = [h for h in self.code_hooks if h[2] is not cb]
        for h in [h for h in self.interp.code_hooks if getattr(h[2], "original", None) is cb]:
            self.interp.remove_code_hook(h[2])
        self.flush()

    def request_stop(self) -> None:
        raise HookStop()

    def request_stop_after(self, on: bool = True) -> None:
        """As `reference.Engine.request_stop_after` (memory-hooked native code checks ctx)."""
        self.ctx[L.CTX_STOP_NEXT] = int(on)
        self.interp.request_stop_after(on)

    @property
    def _instrumented(self) -> bool:
        """Hooks are installed: translations made now call them (and are never cached)."""
        return bool(self.code_hooks or self.mem.hooks)

    def _hooked(self, pc: int, size: int) -> bool:
        return any(b <= pc <= e for b, e, _ in self.code_hooks)

    # ---- running -------------------------------------------------------------------------
    def step(self, r: list[int]) -> Stop | None:
        return self.interp.step(r)

    def run(self, r: list[int], max_blocks: int) -> Stop:
        n = len(r)
        st = self.st
        st[:n] = r
        self._cur = r
        try:
            return self._run(max_blocks)
        finally:
            r[:] = st[:n]
            self._cur = None

    def _left(self) -> int:
        """Instructions left in the time slice."""
        return self._slice - ((self.st[SLOT_ICOUNT] - self._slice_start) & M64)

    def _run(self, max_blocks: int) -> Stop:
        ctx, st = self.ctx, self.st
        # The time slice, in instructions (native code compares the count with ctx's limit
        # at every dispatch and backward edge): BLOCK_INSNS per block asked for.
        self._slice_start = st[SLOT_ICOUNT]
        self._slice = max(1, max_blocks) * BLOCK_INSNS
        limit = (self._slice_start + self._slice) & M64
        ctx[L.CTX_LIMIT] = limit
        every = self.switch_every
        while True:
            if self._jobs:
                self._poll_jobs()
            if self._held:
                self._release_held()
            if self._table_dirty:
                self._rebuild_table()
            if every:
                # Forced switching (tests): at most `every` blocks' worth natively, then
                # `every` blocks on the interpreter, alternating.
                ctx[L.CTX_LIMIT] = (st[SLOT_ICOUNT] + min(self._left(), every * BLOCK_INSNS)) & M64
                code = self._dispatch(self._ctx_addr, self._st_addr)
                ctx[L.CTX_LIMIT] = limit
                if code == L.RET_BUDGET:
                    if self._left() <= 0:
                        return Stop("budget", st[SLOT_PC])
                    stop = self._interp_blocks(min(every, self._left()))
                    if stop is not None:
                        return stop
                    continue
            else:
                code = self._dispatch(self._ctx_addr, self._st_addr)
            self._returns += 1
            if code == L.RET_BUDGET or self._returns & 63 == 0:
                self._maybe_tier2()
            if code == L.RET_MISS:
                pc = st[SLOT_PC]
                if pc in self.breakpoints:
                    return Stop("stopped", pc)
                if pc in self.table and not self._table_dirty:
                    # The code the table gives for pc has no entry there (never made so: a
                    # safeguard against calling it for ever, as a bad cache entry could make
                    # the engine do): dropped, and pc translated afresh.
                    self._refused(pc)
                if not self._enter(pc):
                    stop = self._interp_blocks(1)
                else:
                    stop = None
                if stop is not None:
                    return stop
                continue
            if code == L.RET_BUDGET:
                return Stop("budget", st[SLOT_PC])
            if code == L.RET_EXIT:
                rid = ctx[L.CTX_EXIT_REASON]
                reason = L.EXIT_REASONS[rid & 0xFF]
                info = ctx[L.CTX_EXIT_INFO] if rid >> 8 else None
                pc = st[SLOT_PC]
                if reason == "fetch_fault":
                    addr = info if info is not None else pc
                    return Stop("fault", pc, addr=addr, access="x", mapped=self.mem.is_mapped(addr))
                return Stop(reason, pc, resume=ctx[L.CTX_EXIT_RESUME], info=info)
            if code == L.RET_FAULT:
                e, self._pending = self._pending, None
                ctx[L.CTX_STATUS] = 0
                pc = st[SLOT_PC]
                if isinstance(e, MemoryFault):
                    return Stop("fault", pc, addr=e.addr, access=e.access, mapped=e.mapped)
                if isinstance(e, GuestTrap):
                    return Stop(e.reason, pc, resume=pc + self._size_at(pc), info=e.info)
                if isinstance(e, HookStop):
                    return Stop("stopped", pc)
                assert e is not None
                raise e
            if code == L.RET_STOPPED:
                ctx[L.CTX_STATUS] = 0
                self.request_stop_after(False)  # (taken: the interpreter's flag too)
                e, self._pending = self._pending, None
                if e is not None and not isinstance(e, HookStop):
                    raise e
                return Stop("stopped", st[SLOT_PC])
            raise RuntimeError(f"native code returned {code}")

    def _size_at(self, pc: int) -> int:
        """The size of the instruction at pc (a trap's resume address): known when this
        engine lowered it, else lifted again (a region reused from another engine or loaded
        from the cache)."""
        n = self.insn_size.get(pc)
        if n is None:
            try:
                b = self.arch.lift_block(self.mem.fetch, pc, 1)
            except MemoryFault:
                b = None
            n = b.insns[0].size if b is not None and b.insns else 4
        return n

    def _interp_blocks(self, n: int) -> Stop | None:
        """Run up to n blocks on the reference engine (the cold tier), on the same state."""
        self._cur_sync_hooks = True
        stop = self.interp.run(self.st, n)  # type: ignore[arg-type]
        if stop.reason != "budget":
            if stop.reason == "stopped":
                self.request_stop_after(False)  # (a memory hook's stop taken there: ctx's too)
            return stop
        if self._left() <= 0:
            return Stop("budget", self.st[SLOT_PC])
        return None

    def finish(self, *, submit: bool = True) -> Any:
        """The run is over (the end of `Process.run`). With the `auto` tier and a cache, the
        blocks that only the interpreter ran are written (their pcs and code pages) to a job
        file in the cache directory, and with `submit` every job file there goes to the compile
        worker, which translates them (first tier) into the cache after the run has exited:
        the next run of the program starts them on native code instead of translating them
        into Python again (0.9 s of a 2.1 s busybox `sh -c` run before this). A fork's child
        only writes its file (`submit=False`): the top process hands them all to one worker,
        rather than each child starting its own. Returns the last job sent (None: none)."""
        if self._held and not self._child:
            self._release_held(all_=True)
        cache = self.cache
        # (the worker as it is: a run that started none does not import it to ask)
        worker = self.compiler._worker
        if cache is not None and submit and worker is not None and worker.alive():
            # What the run stored, as one bundle for the compile worker to write after the run
            # has exited (`tcache.write_bundle`); written here if that fails.
            files = cache.take_deferred()
            if files:
                try:
                    # (named after the worker that writes it: a run that finds it after that
                    # worker has died writes it itself, `tcache.bundle_owner`)
                    owner = bundle_owner(worker.proc.pid)
                    worker.submit_files(_publish(cache.dir, f"files-{owner}", files))
                except OSError:
                    write_files(files)
        if cache is not None:
            cache.flush()  # (what this process stored, before it exits: a fork's child never runs atexit)
        if (
            self.tier != "auto"
            or cache is None
            or not cache.enabled
            or self.code_hooks
            or self.mem.hooks
            or (worker is not None and not worker.usable)
        ):
            return None
        skip = self.table.keys() | self._no_native | self._pending_pcs | self._inherited
        pcs = sorted(pc for pc in self.interp.cache if pc not in skip)
        if pcs:
            pcs = pcs[:FINISH_BLOCKS]
            pns = {pc >> PAGE_SHIFT for pc in pcs} | {(pc >> PAGE_SHIFT) + 1 for pc in pcs}
            pages = self._code_pages(pn for pn in sorted(pns) if self._executable(pn))
            job = {
                "arch": self.arch.name,
                "pages": pages,
                "pcs": pcs,
                "root": cache.root,
                "host_id": cache.host_id,
            }
            with contextlib.suppress(OSError):
                _publish(cache.dir, "job", job)
        if not submit:
            return None
        try:
            # (files: the messages stay small, so exiting never waits for the worker to read)
            names = sorted(n for n in os.listdir(cache.dir) if n.startswith("job-") and "." not in n)
            sent = None
            for name in names:
                sent = self.compiler.worker.submit_job(os.path.join(cache.dir, name))
            if sent is not None:
                self.compiler.worker.flush()
            return sent
        except OSError:
            return None

    def forked(self) -> None:
        """In a fork's child (the Linux layer calls it): what the interpreter ran so far was
        the parent's, whose `finish` hands it on."""
        self._inherited = set(self.interp.cache)
        self._child = True
        # (hot modules the parent held back are the parent's to send, as its jobs are)
        for h in self._held:
            self._pending_pcs.difference_update(e for m in h.made for e in m[2])
        self._held = []

    # ---- translation ---------------------------------------------------------------------
    def _enter(self, pc: int) -> bool:
        """Make a translation for pc available if the tier wants one now; True if it did."""
        if pc in self._no_native:
            return False
        if pc in self._latent and self._promote(pc):
            return True
        if self.cache is not None and self._load_cached(pc):
            return True
        if (
            self.tier == "jit"
            or (self.tier == "aot" and self.cache is not None)
            # (`auto` where the first tier is emitted without LLVM: emitting a block costs
            # less than the interpreter's translation of it into Python, so nothing waits)
            or (self.tier == "auto" and self.emit_first and not self._instrumented)
        ):
            return self._translate([pc], opt=JIT_OPT, limit=self.region_blocks)
        if pc in self._pending_pcs:
            return False
        h = self.heat.get(pc, 0) + 1
        self.heat[pc] = h
        if h < HOT:
            return False
        warm = [
            p
            for p, k in self.heat.items()
            if k >= HOT // 2 and p not in self.table and p != pc and p not in self._pending_pcs
        ]
        for p in warm:
            self.heat[p] = 0
        self.heat[pc] = 0
        return self._translate(
            [pc, *warm[:63]], opt=JIT_OPT, limit=self.region_blocks, background=self.background
        )

    def _refused(self, pc: int) -> None:
        """Forget the translation the table gives for pc, which returned RET_MISS for it,
        and what the cache says of pc (it led there), so that `_enter` translates it afresh."""
        r = self.pc_region.pop(pc, None)
        if r is not None and pc in r.pcs:
            r.pcs.remove(pc)
        self.table.pop(pc, None)
        self._latent.pop(pc, None)
        self._not_cached.add(pc)
        self._rebuild_table()

    def _add_latent(self, name: str) -> None:
        """Note the blocks of region `name` that could become entries (`_promote`)."""
        table, latent = self.table, self._latent
        for p in self.compiler.latent.get(name, ()):
            if p not in table:
                latent[p] = name

    def _drop_latent(self, name: str) -> None:
        latent = self._latent
        for p in self.compiler.latent.get(name, ()):
            if latent.get(p) == name:
                del latent[p]

    def _promote(self, pc: int) -> bool:
        """Make pc, a block inside a first-tier region that was not one of its entries, an
        entry of that region (its code can be entered at every block: `x64.X64Region`'s
        `latent`), instead of emitting the block again as the start of a region of its own;
        cached as an entry of the region's object, so the next run finds it there too."""
        name = self._latent.pop(pc)
        r = self.regions.get(name)
        known = self.compiler.regions.get(name)
        if r is None or r.opt != JIT_OPT or known is None or known[1] != r.addr:
            return False  # (the region is gone: invalidated, or replaced by hot code)
        r.pcs.append(pc)
        self.pc_region[pc] = r
        self._table_set(pc, r.addr)
        sym, addr, obj_name, entries = known
        entries = [*entries, pc]
        self.compiler.regions[name] = (sym, addr, obj_name, entries)
        if obj_name is not None and self.cache is not None and not self._instrumented:
            self.cache.store_entry(
                self.mem,
                entries,
                sym,
                obj_name,
                JIT_OPT,
                sorted(r.pages),
                known=self._page_hashes,
                only=[pc],
                latent=self.compiler.latent.get(name),
            )
        return True

    def _maybe_tier2(self) -> None:
        """Recompile the regions that turned hot with the hot tier, together with the ones
        on their way (a sixty-fourth of the way there): code that runs together, such as the
        handlers an interpreter loop's jump table reaches, then becomes one region."""
        pending, pc_region = self._pending_pcs, self.pc_region
        # (also a region whose first entry's hot code is on its way, where one of its other
        # entries still leads to it: a loop after the one that turned hot, say, which the hot
        # region did not take in, as it had not run yet)
        cand = [
            r
            for r in self.regions.values()
            if r.opt < T2_OPT
            and (r.entry not in pending or any(p not in pending and pc_region.get(p) is r for p in r.pcs))
        ]
        if not any(self.counters[r.counter] >= TIER2_INSNS for r in cand):
            return
        batch = sorted(
            (r for r in cand if self.counters[r.counter] >= TIER2_INSNS // 64),
            key=lambda r: -self.counters[r.counter],
        )[:T2_ROOTS]
        for r in batch:
            self.counters[r.counter] = 0
        # A region whose first entry has hot code already runs on through its other entries
        # (a return site, a loop head the hot region does not enter at): root at those.
        roots: list[int] = []
        for r in batch:
            live = [p for p in r.pcs if pc_region.get(p) is r and p not in pending]
            roots += [p for p in (live if live and live[0] != r.entry else live[:1]) if p not in roots]
        if not roots:
            return
        self._translate(
            roots,
            opt=T2_OPT,
            limit=REGION_BLOCKS_T2,
            whole=True,
            background=self.bg_hot,
        )

    def _form_region(
        self,
        pc: int | list[int],
        limit: int,
        whole: bool = False,
        per_root: int | None = None,
        ran_only: bool = False,
    ) -> list[Block]:
        """Blocks reachable from pc through direct edges, breadth first: first the function's
        own blocks (branches, jumps and the return sites after calls), then the callees.

        A first-tier region stops at code that already has a translation, or that is a block
        inside another first-tier region's code (`_latent`: entered there through the
        dispatcher); a hot region (`whole`) takes it in again so its loops, calls and returns
        stay inside one native function. With several roots (hottest first), each root's own
        blocks come in turn (up to `per_root` each), then the callees of all of them.
        `ran_only` (hot regions): only blocks the first tier has marked as run (`L.SEEN_AT`)
        besides the roots; an edge to any other is an exit, to the first tier's code. A hot
        region takes in only the callees called from the roots' loops (`lower.looping_blocks`;
        then all that those call): a function the root calls once before or after its loop (a
        program's `strtod` of its argument before the work) stays first-tier code, reached
        through the dispatcher, instead of making the hot module several times bigger (a
        cold bench_int with an argument sent an 87-block module that kept the compile
        worker busy for the rest of the run)."""
        roots = [pc] if isinstance(pc, int) else pc
        pc = roots[0]
        blocks: dict[int, Block] = {}
        callees: deque[int] = deque()
        sites: list[tuple[int, int]] = []  # (a call's block, its callee) in the roots' own code
        fetch = self.mem.fetch
        # (with code hooks, blocks end before hooked instructions: see `Arch.lift_block`)
        stop = (lambda a: self._hooked(a, 1)) if self.code_hooks else None
        # (with memory hooks, blocks of one instruction: see `reference.Engine._compile`)
        max_insns = 1 if self.mem.hooks else self.max_insns
        seen = self.seen

        def walk(local: deque[int], cap: int, into_callees: bool = True) -> bool:
            """Take blocks from `local` (then `callees`) until cap; False: pc is no code."""
            while (local or (into_callees and callees)) and len(blocks) < cap:
                p = local.popleft() if local else callees.popleft()
                if p in blocks or (p != pc and not whole and (p in self.table or p in self._latent)):
                    continue  # already translated: reached through the dispatcher
                if ran_only and not seen[L.seen_index(p)] and p not in roots:
                    continue  # (never run in the first tier: left to it)
                try:
                    b = self._lifted.get(p)
                    if b is None or not self._watched(b):
                        b = self._lifted[p] = self.arch.lift_block(fetch, p, max_insns, stop)
                except MemoryFault:
                    continue
                if not b.insns:
                    if p == pc:
                        return False
                    continue
                blocks[p] = b
                t = b.term
                if t.kind == "branch":
                    local += [t.target.const, t.fallthrough]
                elif t.kind == "jump" and t.target is not None and t.target.const is not None:
                    if L._is_call(b):
                        if whole and not into_callees:
                            sites.append((p, t.target.const))
                        else:
                            callees.append(t.target.const)
                        local.append(b.end)  # the return site
                    else:
                        local.append(t.target.const)
            return True

        if len(roots) == 1 and not whole:
            return list(blocks.values()) if walk(deque(roots), limit) else []
        # Hot regions (one root or several): the hottest gets up to per_root blocks of its
        # own, each other one an equal share of what is left (at least 8), then the callees
        # (of their loops) of all of them.
        pending: deque[int] = deque()
        for i, root in enumerate(roots):
            if len(blocks) >= limit:
                break
            share = per_root or limit
            if i:
                share = min(share, max(8, (limit - len(blocks)) // (len(roots) - i)))
            local = deque([root])
            if not walk(local, min(limit, len(blocks) + share), into_callees=False) and i == 0:
                return []
            pending += local
        if whole:
            looping = L.looping_blocks(blocks.values())
            callees.extend(t for site, t in sites if site in looping)
        walk(pending, limit)
        return list(blocks.values())

    def _translate(
        self, pcs: list[int], opt: int, limit: int, whole: bool = False, background: bool = False
    ) -> bool:
        """Compile the regions of `pcs` in one module; True if pcs[0] got a translation.

        With `background`, LLVM runs in the compile worker process while the guest goes on
        (on the interpreter, or on the code it already has); `_poll_jobs` installs the result
        once it is there, if the code it was made from is still what memory holds."""
        t0 = time.perf_counter()
        funcs: list[str] = []
        decls: dict[str, str] = {}
        made: list[tuple[str, str, list[int], set[int]]] = []  # (region, symbol, entries, pages)
        # The first tier is emitted directly where the host allows (`x64`), not through LLVM.
        emit = opt == JIT_OPT
        emitted: dict[str, x64.X64Region] = {}
        made_x: list[tuple[str, str, list[int], set[int]]] = []
        quick_x: dict[str, x64.X64Region] = {}  # hot regions emitted to run until LLVM's arrive
        made_q: list[tuple[str, str, list[int], set[int]]] = []
        fpn: set[str] = set()  # helpers called through the fast-path table
        nonce = os.urandom(4).hex()
        # Hot regions the worker lowers itself (`lower_remote`): where it is there and the
        # first tier's emitter gives them quick code meanwhile.
        remote_blocks: dict[str, tuple[str, list[Block], list[int]]] = {}
        remote: list[dict[str, Any]] | None = (
            []
            if opt >= T2_OPT
            and background
            and self.emit_first
            and not self._instrumented
            and not self.mem.hooks
            and self.compiler.worker.usable
            else None
        )
        known = self.compiler.regions
        # Form the regions first: a pc that is a block of a region formed before it in this
        # batch becomes one more entry of that region instead of the start of a near copy
        # (hot regions of one function would otherwise each take in the whole function).
        formed: list[tuple[list[Block], list[int]]] = []
        covered: dict[int, int] = {}  # block pc -> index in formed
        if whole and len(pcs) > 1:
            # Hot regions found together become one region entered at each of them: code
            # that runs together (a loop and the handlers its indirect jump reaches, say) then
            # stays in one native function, its indirect jumps switching over the entries.
            blocks = self._form_region(
                pcs,
                min(limit * len(pcs), REGION_BLOCKS_T2_MAX),
                whole=True,
                per_root=limit,
                ran_only=True,
            )
            if blocks:
                have = {b.pc for b in blocks}
                formed.append((blocks, [p for p in pcs if p in have]))
                covered = dict.fromkeys(have, 0)
        for pc in pcs:
            i = covered.get(pc)
            if i is not None:
                if pc not in formed[i][1]:
                    formed[i][1].append(pc)
                continue
            blocks = self._form_region(pc, limit, whole=whole, ran_only=whole)
            if not blocks:
                continue
            for b in blocks:
                covered.setdefault(b.pc, len(formed))
            formed.append((blocks, [pc]))
        for blocks, entries in formed:
            pc = entries[0]
            name = self._region_name(blocks, opt, entries)
            pages = _pages_of(blocks)
            if name in known:  # the same code was compiled before in this process
                sym, addr, obj_name, ents = known[name]
                self._install(name, sym, ents, pages, addr, opt)
                self._add_latent(name)
                obj = self.compiler.obj_bytes.get(obj_name) if obj_name is not None else None
                if obj is not None and self.cache is not None and not self._instrumented:
                    if self.cache.store_object(obj) == obj_name:  # (re)written if it went bad
                        self.cache.store_entry(
                            self.mem,
                            ents,
                            sym,
                            obj_name,
                            opt,
                            sorted(pages),
                            latent=self.compiler.latent.get(name),
                        )
                continue
            if any(m[0] == name for m in made):
                continue
            if self.cache is not None and self._load_cached(pc, want=name):
                continue  # an earlier run compiled exactly this region
            sym = f"{name}_{nonce}"
            if emit:
                er = self.emit_region(name, blocks, entries)
                if er is not None:  # (else through LLVM, below)
                    self._note_sizes(blocks)
                    fpn.update(er.fpn_used)
                    emitted[sym] = er
                    made_x.append((name, sym, er.entry_pcs, pages))
                    self.blocks_compiled += len(blocks)
                    continue
            # A hot region at once, emitted without LLVM (`x64`), to run until the worker's
            # optimized code arrives (instead of its quick LLVM compile).
            er = (
                self.emit_region(name, blocks, entries, counter=False, counts=HOT_STAY > 0)
                if opt >= T2_OPT and background
                else None
            )
            if er is not None and remote is not None:
                # Its LLVM text made by the worker (`lower_remote`), from the blocks' code
                # pages: not in the guest's process, whose run may end before it comes back.
                remote.append(
                    {"sym": sym, "name": name, "pcs": [b.pc for b in blocks], "entries": list(entries)}
                )
                remote_blocks[sym] = (name, blocks, entries)
                lowered = L.region_shape(blocks, entries, False)[2]
            else:
                lw = self.lower_region(sym, name, blocks, entries, compact=opt == 0)
                if lw is None:
                    continue
                funcs.append(lw.text)
                decls.update(lw.decls)
                fpn.update(lw.fpn_used)
                lowered = lw.entry_pcs
            self._note_sizes(blocks)
            made.append((name, sym, lowered, pages))
            self.blocks_compiled += len(blocks)
            if er is not None:
                fpn.update(er.fpn_used)
                quick_x[sym + "x"] = er
                made_q.append((name, sym + "x", er.entry_pcs, pages))
        if fpn:  # (the helpers' fast paths the batch calls: compiled together)
            self._fast_path(*(self.helper_index[h] for h in sorted(fpn)))
        if made_x:
            # The first tier without LLVM (x86-64 hosts): placed and installed at once.
            if self.bg_hot and not self._child:
                self._start_worker()
            for name, sym, _, _ in made_x:
                self.compiler.latent[name] = emitted[sym].latent_pcs
            self._finish(x64.link(emitted), made_x, opt)
            for name, _, _, _ in made_x:
                self._add_latent(name)
        if made and background and self.compiler.worker.usable:
            text = "" if remote else self.compiler.module_text(funcs, decls)
            pages = sorted(set().union(*(m[3] for m in made)))
            hashes = {pn: TranslationCache.page_hash(self.mem, pn) for pn in pages}
            store = None
            if (
                self.cache is not None
                and self.cache.enabled
                and not self._instrumented
                and all(h is not None for h in hashes.values())
            ):
                # The worker writes the cache itself: a run that ends first still leaves it.
                store = {
                    "root": self.cache.root,
                    "host_id": self.cache.host_id,
                    "regions": [(m[2], m[1], opt, {p: hashes[p] for p in sorted(m[3])}) for m in made],
                }
            # A hot module comes back twice: first compiled the first tier's way (in a tenth
            # of the time), then optimized; the quick code runs until the optimized arrives.
            quick = [m[1] for m in made] if opt >= T2_OPT and len(made_q) < len(made) else None
            lower = None
            if remote:
                lower = {
                    "arch": self.arch.name,
                    "direct": self.direct,
                    "max_insns": self.max_insns,
                    "pages": self._code_pages(pages),
                    "regions": remote,
                    "funcs": funcs,
                    "decls": decls,
                }
            args = (text, opt, store, quick, lower)
            if quick is None and made_q and HOT_STAY > 0 and self.compiler.worker.alive():
                # Its quick code now; the module once that code has run a while (a phase
                # that ends first does not hold the worker up for the next one).
                self._finish(x64.link(quick_x), made_q, opt, quick=True)
                counters = sorted({_counter_of(m[0]) for m in made_q})
                if not self._held:
                    self._held_clock = (time.perf_counter(), self.st[SLOT_ICOUNT])
                self._held.append(
                    _Held(
                        args,
                        made,
                        opt,
                        hashes,
                        self._flushes,
                        counters,
                        sum(self.counters[c] for c in counters),
                    )
                )
                self._pending_pcs.update(e for m in made for e in m[2])
                self.compile_time += time.perf_counter() - t0
                return False
            try:
                job = self.compiler.worker.submit(*args)
            except OSError:
                job = None  # no worker process here: compile in place
            if job is not None:
                if quick is None and made_q:
                    self._finish(x64.link(quick_x), made_q, opt, quick=True)
                self._jobs.append((job, made, opt, hashes, self._flushes))
                self._pending_pcs.update(e for m in made for e in m[2])
                self.compile_time += time.perf_counter() - t0
                return False
        for sym, (name, blocks, entries) in remote_blocks.items():
            # (no worker to send them to after all: lowered here)
            lw = self.lower_region(sym, name, blocks, entries)
            if lw is None:
                made = [m for m in made if m[1] != sym]
            else:
                funcs.append(lw.text)
                decls.update(lw.decls)
        if made:
            if self.bg_hot and not self._child:
                self._start_worker()
            obj = self.compiler.compile(self.compiler.module_text(funcs, decls), opt)
            self._finish(obj, made, opt)
        self.compile_time += time.perf_counter() - t0
        ok = pcs[0] in self.table
        if not ok:
            self._no_native.add(pcs[0])  # interpreted from now on (until its page changes)
        return ok

    def _note_sizes(self, blocks: list[Block]) -> None:
        for b in blocks:
            for insn in b.insns:
                self.insn_size[insn.pc] = insn.size

    def _start_worker(self) -> None:
        """Start the compile worker with the first compile in place, when this run will send
        it hot code: it comes up (about 0.2 s) while this process compiles the first tier, and
        the first hot module then comes back that much sooner (a cold bench_float's quick hot
        code came 0.36 s after its module was sent, 0.42 s with the worker started at the
        send; one run each). Not in a fork's child,
        which should not start a worker for every short-lived process; nothing is compiled in
        place in a run the cache serves, so no worker either."""
        worker = self.compiler.worker
        if worker.usable and not worker.alive():
            with contextlib.suppress(OSError):
                worker.start()

    def _finish(
        self,
        obj: bytes,
        made: list[tuple[str, str, list[int], set[int]]],
        opt: int,
        stored: str | None = None,
        quick: bool = False,
    ) -> None:
        """Load a compiled module and install (and cache) its regions; `stored`: the name the
        compile worker already cached the object under; `quick`: a hot module's quick version
        (installed only, until the optimized one replaces it)."""
        known = self.compiler.regions
        addrs = self.compiler.load(obj, [m[1] for m in made])
        if quick:
            for name, sym, entries, pages in made:
                self._install(name, sym, entries, pages, addrs[sym], opt)
            return
        use_cache = self.cache is not None and not self._instrumented
        obj_name = stored
        if obj_name is None and use_cache:
            obj_name = self.cache.store_object(obj, fresh=True)  # (its symbols have a nonce)
        if obj_name is not None:
            self.compiler.obj_bytes[obj_name] = obj
        for name, sym, entries, pages in made:
            known[name] = (sym, addrs[sym], obj_name, entries)
            self._install(name, sym, entries, pages, addrs[sym], opt)
            if obj_name is not None and stored is None:
                # (its pages hold code now: their hashes the engine knows stay right)
                self.cache.store_entry(
                    self.mem,
                    entries,
                    sym,
                    obj_name,
                    opt,
                    sorted(pages),
                    known=self._page_hashes,
                    latent=self.compiler.latent.get(name),
                )
        self.regions_compiled += len(made)

    def _release_held(self, all_: bool = False) -> None:
        """Send the held hot modules whose quick code has run HOT_STAY × TIER2_INSNS
        instructions since, or for HOT_STAY_SECONDS (`all_`: every one, as the run ends: the
        worker compiles them after it, for the cache). The time is the run's since the last
        look, shared out by the instructions each module's quick code ran in it. A module that
        cannot be sent is dropped (its quick code stays)."""
        now, total = time.perf_counter(), self.st[SLOT_ICOUNT]
        t0, n0 = self._held_clock
        self._held_clock = (now, total)
        dt, dn = now - t0, total - n0
        counters = self.counters
        keep = []
        for h in self._held:
            n = sum(counters[c] for c in h.counters)
            if dn > 0 and n > h.last:
                h.spent += dt * min(1.0, (n - h.last) / dn)
            h.last = n
            if not all_ and n - h.start < HOT_STAY * TIER2_INSNS and h.spent < HOT_STAY_SECONDS:
                keep.append(h)
                continue
            try:
                job = self.compiler.worker.submit(*h.args)
            except OSError:
                self._pending_pcs.difference_update(e for m in h.made for e in m[2])
                continue
            self._jobs.append((job, h.made, h.opt, h.hashes, h.flushes))
        self._held = keep

    def _poll_jobs(self) -> None:
        """Install the background compilations that have finished (between blocks)."""
        left = []
        for entry in self._jobs:
            job, made, opt, hashes, flushes = entry
            if not job.done:
                quick = job.quick_obj
                if quick is not None:
                    job.quick_obj = None  # (cleared only once read: the reader thread sets it)
                if quick is not None and flushes == self._flushes and self._unchanged(hashes):
                    t0 = time.perf_counter()
                    with contextlib.suppress(RuntimeError):  # (see below)
                        self._finish(quick, [(n, s + "q", e, p) for n, s, e, p in made], opt, quick=True)
                    self.compile_time += time.perf_counter() - t0
                left.append(entry)
                continue
            self.bg_compile_time += job.seconds
            self._pending_pcs.difference_update(e for m in made for e in m[2])
            if job.error is not None or job.obj is None or flushes != self._flushes:
                continue
            if not self._unchanged(hashes):
                continue
            t0 = time.perf_counter()
            try:
                self._finish(job.obj, made, opt, stored=job.obj_name)
            except RuntimeError:
                pass  # (an object without the regions it was sent for: the code there stays)
            self.compile_time += time.perf_counter() - t0
        self._jobs = left

    def _code_pages(self, pns: Any) -> dict[int, bytes]:
        """The contents of pages `pns` that can be read (code sent to the compile worker,
        which translates it over a memory of those pages alone: `_code_memory`)."""
        out = {}
        for pn in pns:
            with contextlib.suppress(MemoryFault):
                out[pn] = self.mem.read_raw(pn << PAGE_SHIFT, 1 << PAGE_SHIFT)
        return out

    def _unchanged(self, hashes: dict[int, str | None]) -> bool:
        """The code a background compile was made from is still there, unchanged and
        executable (nothing watched these pages while LLVM worked)."""
        return all(
            TranslationCache.page_hash(self.mem, pn) == h and self._executable(pn) for pn, h in hashes.items()
        )

    def lower_region(
        self, sym: str, name: str, blocks: list[Block], entries: list[int], compact: bool = False
    ) -> Any:
        """The LLVM text of region `name` as function `sym` (a RegionLowering), or None if
        the native tier cannot translate it."""
        try:
            return L.RegionLowering(
                sym,
                blocks,
                self.arch.helpers,
                self.helper_index,
                native_fn=self._native_fn if self.native_emit is not None else None,
                hooked=self._hooked if self.code_hooks else None,
                mem_hooks=bool(self.mem.hooks),
                counter=_counter_of(name) if compact else None,  # (hot code tiers up no further)
                entries=entries,
                nslots=self.arch.nslots,
                compact=compact,
                fast_paths=getattr(self.arch, "native_names", frozenset()),
                shortcuts=getattr(self.arch, "ir_shortcuts", None),
                direct=self.direct,
            )
        except L.Unsupported:
            return None

    def emit_region(
        self, name: str, blocks: list[Block], entries: list[int], counter: bool = True, counts: bool = False
    ) -> x64.X64Region | None:
        """Region `name` in the first tier's form as x86-64 code (`x64`), or None where this
        host or the region needs LLVM. `counter` False: a hot region's quick code (no tier-up,
        no block marks), counting the instructions it runs in its counter if `counts`."""
        if not self.emit_first or self._instrumented:
            return None
        try:
            return x64.X64Region(
                blocks,
                self.arch.helpers,
                self.helper_index,
                counter=_counter_of(name) if counter or counts else None,
                marks=counter,
                entries=entries,
                fast_paths=getattr(self.arch, "native_names", frozenset()),
                shortcuts=getattr(self.arch, "x64_shortcuts", None),
                direct=self.direct,
                latent=counter,
            )
        except L.Unsupported:
            return None

    def _region_name(self, blocks: list[Block], opt: int, entries: list[int] | None = None) -> str:
        h = hashlib.sha256()
        h.update(
            f"{self.arch.name}|{opt}|{bool(self.code_hooks)}|{'direct|' if self.direct else ''}".encode()
        )
        if self.mem.hooks:
            h.update(b"memory hooks|")  # (instrumented: other code)
        if entries is not None and len(entries) > 1:
            h.update(repr(sorted(entries)).encode())  # more entries: other code
        for b in blocks:
            h.update(b.pc.to_bytes(8, "little"))
            h.update(self.mem.read_raw(b.pc, b.end - b.pc))
            if self.code_hooks:
                # Which instructions call hooks is part of the code: a region compiled for
                # other hooks (another emu_start `until`) must not be reused.
                h.update(repr([i.pc for i in b.insns if self._hooked(i.pc, i.size)]).encode())
        return "pv_" + h.hexdigest()[:32]

    def _install(self, name: str, sym: str, entries: list[int], pages: set[int], addr: int, opt: int) -> None:
        """Make region `name` (at addr) the translation for its entry pcs (entries[0] is the
        pc it was made for; the others are loop heads and return sites)."""
        r = _Region(name, entries[0], list(entries), pages, opt, _counter_of(name))
        r.addr = addr
        if self.compiler.perf_map_on:
            self.compiler.perf_note(
                addr, sym, f"{self.arch.name}:{entries[0]:#x}/opt{opt}/{len(entries)}e/{sym}"
            )
        self.regions[name] = r
        if self.compiler.emitter is not None:
            for word, pc in self.compiler.emitter.chains.get(addr, ()):
                self._chain_words.setdefault(pc, {})[word] = ctypes.c_uint64.from_address(word)
                self._chain_to(pc)
        for pn in pages:
            self.mem.watch_code(pn << PAGE_SHIFT)
            self.page_regions.setdefault(pn, set()).add(name)
        replaced = []
        for pc in entries:
            old = self.pc_region.get(pc)
            if old is not None and old is not r:
                replaced.append(old)
            self.pc_region[pc] = r
            self._table_set(pc, addr)
        for old in replaced:
            # Superseded (e.g. by its hot recompile) once none of its entries leads to it any
            # more; until then invalidation must still find it.
            if self.regions.get(old.name) is old and not any(self.pc_region.get(p) is old for p in old.pcs):
                del self.regions[old.name]
                self._drop_latent(old.name)

    def _executable(self, pn: int) -> bool:
        return bool((self.mem.prot_at(pn << PAGE_SHIFT) or 0) & PROT_EXEC)

    def _native_fn(self, name: str, consts: tuple[int | None, ...]) -> tuple[str, str] | None:
        return native_helper_ref(self.arch, name, consts)

    def _load_cached(self, pc: int, want: str | None = None, hot_only: bool = False) -> bool:
        """Install the cached translation entered at pc if the cache has one for this code
        (with `want`, only if it is that region: a hot recompile made by an earlier run; with
        `hot_only`, only if it is hot-tier code)."""
        if self._instrumented or (want is None and pc in self._not_cached):
            return False
        t0 = time.perf_counter()
        hashes = self._page_hashes
        got = self.cache.lookup(self.mem, pc, hashes)
        # Memoized hashes stay valid only for pages whose stores are watched (they hold code).
        code_pages = self.mem._code_pages
        for pn in [p for p in hashes if p not in code_pages]:
            del hashes[pn]
        if hot_only and got is not None and int(got[0].get("opt", 1)) < T2_OPT:
            got = None
        if got is None or (want is not None and not got[0]["symbol"].startswith(want + "_")):
            if want is None and not hot_only:
                self._not_cached.add(pc)
            self.compile_time += time.perf_counter() - t0
            return False
        ent, obj = got
        sym = ent["symbol"]
        # The code is unchanged, but it must also still be executable (mprotect may have taken
        # that away; translating afresh would then fetch-fault, as it must).
        if not all(self._executable(p) for p, _ in ent["pages"]):
            self.compile_time += time.perf_counter() - t0
            return False
        try:
            addr = self.compiler.load(obj, [sym])[sym]
        except Exception:  # noqa: BLE001 - an object LLVM refuses: translate afresh
            self._not_cached.add(pc)
            self.cache.rejected += 1
            return False
        name = sym.rsplit("_", 1)[0]
        pages = {p for p, _ in ent["pages"]}
        # (in the order it was made with: entries[0], the pc it was made for, roots its hot
        # recompile, so that is the hot region an earlier run made and cached, not another)
        entries = [e for e in ent.get("entries", ()) if isinstance(e, int)]
        if pc not in entries:
            entries = [pc, *entries]
        self.compiler.regions.setdefault(name, (sym, addr, ent["obj"], entries))
        opt = int(ent.get("opt", 1))
        self._install(name, sym, entries, pages, addr, opt)
        latent = ent.get("latent")
        if opt == JIT_OPT and isinstance(latent, list) and name not in self.compiler.latent:
            # (blocks its code can be entered at: x64 first-tier code of this code generator,
            # which the cache's host id names; `_refused` would catch one it could not)
            self.compiler.latent[name] = [p for p in latent if isinstance(p, int)]
        self._add_latent(name)
        self.regions_loaded += 1
        self.compile_time += time.perf_counter() - t0
        if opt < T2_OPT:
            # Its other entries (loop heads, return sites) may have hot code an earlier run
            # made: the dispatcher would never ask for it (this region has those pcs now), and
            # the loop would turn hot again here and be recompiled, as other regions.
            for e in entries:
                if e != pc:
                    self._load_cached(e, hot_only=True)
        return True


def _code_memory(pages: dict[Any, Any]) -> Any:
    """A memory holding only the code pages the engine sent (`JitEngine._code_pages`),
    readable and executable; None if one of them is not a whole page."""
    from polyvm.memory import AddressSpace

    mem = AddressSpace()
    for pn, data in pages.items():
        if not isinstance(pn, int) or not isinstance(data, bytes) or len(data) != 1 << PAGE_SHIFT:
            return None
        mem.map(pn << PAGE_SHIFT, 1 << PAGE_SHIFT, PROT_READ | PROT_EXEC)
        mem.write_raw(pn << PAGE_SHIFT, data)
    return mem


_lowering_engines: dict[tuple[str, bool, int], JitEngine] = {}


def lower_remote(spec: dict[str, Any]) -> tuple[list[str], dict[str, str]]:
    """The compile worker's side of a hot module sent as code (`JitEngine._translate`): each
    region's blocks lifted again from the code pages the request carries, and lowered as the
    guest's process would have (the same text: `test_cworker`). Returns the functions' texts
    and their declarations; raises on a region the native tier cannot lower."""
    from polyvm.isa import get_arch
    from polyvm.memory import AddressSpace

    mem = _code_memory(spec["pages"])
    if mem is None:
        raise ValueError("bad code page")
    max_insns = int(spec["max_insns"])
    # (one engine per kind in the worker: it holds the lowering's per-process tables)
    key = (str(spec["arch"]), bool(spec["direct"]), max_insns)
    eng = _lowering_engines.get(key)
    if eng is None:
        eng = _lowering_engines[key] = JitEngine(
            get_arch(key[0]),
            AddressSpace(),
            tier="jit",
            background=False,
            direct=key[1],
            max_insns=max_insns,
        )
    texts: list[str] = []
    decls: dict[str, str] = {}
    for r in spec["regions"]:
        blocks = [eng.arch.lift_block(mem.fetch, pc, max_insns) for pc in r["pcs"]]
        lw = eng.lower_region(r["sym"], r["name"], blocks, list(r["entries"]), compact=False)
        if lw is None:
            raise RuntimeError(f"region {r['name']} cannot be lowered")
        texts.append(lw.text)
        decls.update(lw.decls)
    return texts, decls


def translate_job(path: str) -> None:
    """The compile worker's side of `JitEngine.finish`: translate the job file's blocks (first
    tier) into the translation cache, over a memory holding only the code pages the job
    carries. The file is deleted; a bad one is ignored."""
    taken = f"{path}.{os.getpid()}"  # (claimed first: another run's worker may be sent it too)
    try:
        os.rename(path, taken)
    except OSError:
        return
    try:
        with open(taken, "rb") as f:
            job = marshal.load(f)
        pages, pcs = dict(job["pages"]), [int(pc) for pc in job["pcs"]]
        arch_name, root, host_id = str(job["arch"]), str(job["root"]), str(job["host_id"])
    except (OSError, EOFError, ValueError, TypeError, KeyError):
        return
    finally:
        with contextlib.suppress(OSError):
            os.unlink(taken)
    from polyvm.isa import get_arch

    mem = _code_memory(pages)
    if mem is None:
        return
    direct = host_id.endswith(f"|{DIRECT_VARIANT}")  # (the run's memory was direct: code for it)
    if host_id.removesuffix(f"|{DIRECT_VARIANT}") != Compiler.get().host_id:
        return
    cache = TranslationCache(root, host_id, max_bytes=1 << 62)
    eng = JitEngine(get_arch(arch_name), mem, tier="jit", cache=cache, background=False, direct=direct)
    eng._translate(pcs, opt=JIT_OPT, limit=eng.region_blocks)


def _function_sizes(obj: bytes) -> dict[str, int]:
    """Function symbol -> size in an ELF object (empty for other formats or a bad file)."""
    import io

    try:
        from elftools.elf.elffile import ELFFile

        elf = ELFFile(io.BytesIO(obj))
        tab = elf.get_section_by_name(".symtab")
        return (
            {s.name: s["st_size"] for s in tab.iter_symbols() if s["st_info"]["type"] == "STT_FUNC"}
            if tab is not None
            else {}
        )
    except Exception:  # noqa: BLE001 - a debugging aid: a Mach-O/COFF object names nothing
        return {}


def _publish(directory: str, kind: str, obj: Any) -> str:
    """Write `obj` as file `<kind>-…` in `directory` (a job or a bundle of cache files for the
    compile worker) and return its path: marshaled (reading it can never run code), under
    another name first, then renamed, so the file is whole once listed. Raises OSError."""
    fd, tmp = tempfile.mkstemp(prefix=f".tmp{kind}-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            marshal.dump(obj, f)
        path = os.path.join(directory, f"{kind}-" + os.path.basename(tmp)[len(kind) + 5 :])
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def _pages_of(blocks: list[Block]) -> set[int]:
    pages: set[int] = set()
    for b in blocks:
        pages.update(range(b.pc >> PAGE_SHIFT, ((b.end - 1) >> PAGE_SHIFT) + 1))
    return pages


_native_texts: dict[tuple[str, str, tuple[int | None, ...]], tuple[str, str] | None] = {}
_NATIVE_MARK = "; polyvm-native "


def _native_key(
    arch: Arch, name: str, consts: tuple[int | None, ...]
) -> tuple[str, str, tuple[int | None, ...]]:
    narrow = getattr(arch, "native_consts", None)
    if narrow is not None:
        consts = tuple(narrow(name, consts))  # only the constants the fast path depends on
    return (arch.name, name, consts)


def _native_name(key: tuple[str, str, tuple[int | None, ...]]) -> str:
    return "fpn_" + key[1].replace(".", "_") + "_" + hashlib.sha1(repr(key).encode()).hexdigest()[:16]


def native_helper_ref(arch: Arch, name: str, consts: tuple[int | None, ...]) -> tuple[str, str] | None:
    """`native_helper_text`'s function name with a one-line stand-in for its text, which
    `resolve_native` replaces when the module is compiled: building the text takes llvmlite's
    IR builder a few milliseconds per helper and rounding mode, which the hot tier then spends
    in the compile worker instead of the guest's process (bench_float: about 0.1 s a run).
    Helpers the ISA does not list in `native_names` get their text at once."""
    h = arch.helpers[name]
    if name not in getattr(arch, "native_names", ()) or h.result_width is None:
        return native_helper_text(arch, name, consts)
    key = _native_key(arch, name, consts)
    return _native_name(key), f"{_NATIVE_MARK}{key[0]} {key[1]} {key[2]!r}"


def resolve_native(module: str) -> str:
    """Module text with each `native_helper_ref` stand-in replaced by the helper's function,
    and the declarations those need that the module lacks added."""
    if _NATIVE_MARK not in module:
        return module
    import ast

    from polyvm.isa import get_arch

    lines = module.split("\n")
    have, _ = L.split_decls("\n".join(ln for ln in lines if ln.startswith("declare")))
    extra: dict[str, str] = {}
    for i, ln in enumerate(lines):
        if not ln.startswith(_NATIVE_MARK):
            continue
        arch_name, name, consts = ln[len(_NATIVE_MARK) :].split(" ", 2)
        got = native_helper_text(get_arch(arch_name), name, tuple(ast.literal_eval(consts)))
        if got is None:  # (cannot be: native_helper_ref checked the helper)
            raise RuntimeError(f"no native fast path for {name}")
        decls, lines[i] = L.split_decls(got[1])
        extra.update((k, v) for k, v in decls.items() if k not in have)
    # (declarations may follow the functions; `target` lines must come first)
    return "\n".join([*lines, *extra.values()]) + "\n"


def native_helper_text(arch: Arch, name: str, consts: tuple[int | None, ...]) -> tuple[str, str] | None:
    """The ISA's native fast path for helper `name` (with these constant arguments) as an
    always-inline LLVM function `i1 @f(i64* args, i64* slots, i64* out)`: it returns whether
    its result (stored to *out) and slot updates (ORed into slots[k]) are exact; the caller
    calls the Python helper when it returns false. Built once per process with llvmlite."""
    key = _native_key(arch, name, consts)
    consts = key[2]
    if key in _native_texts:
        return _native_texts[key]
    emit = getattr(arch, "native_emit", None)
    h = arch.helpers[name]
    res = None
    if emit is not None and h.result_width is not None:
        from llvmlite import ir

        i64 = ir.IntType(64)
        p64 = i64.as_pointer()
        m = ir.Module()
        fname = _native_name(key)
        fn = ir.Function(m, ir.FunctionType(ir.IntType(1), [p64, p64, p64]), fname)
        fn.linkage = "internal"
        fn.attributes.add("alwaysinline")
        argp, slotp, outp = fn.args
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        args = []
        for i, (w, c) in enumerate(zip(h.arg_widths, consts, strict=True)):
            if c is not None:
                args.append(ir.Constant(ir.IntType(w), c))
                continue
            v = b.load(b.gep(argp, [ir.Constant(i64, i)]))
            args.append(v if w == 64 else b.trunc(v, ir.IntType(w)))
        got = emit(name, b, args, list(consts), lambda k: b.load(b.gep(slotp, [ir.Constant(i64, k)])))
        if got is not None:
            ok, result, or_slots = got
            yes = fn.append_basic_block("ok")
            no = fn.append_basic_block("no")
            b.cbranch(ok, yes, no)
            b.position_at_end(yes)
            for k, v in or_slots.items():
                p = b.gep(slotp, [ir.Constant(i64, k)])
                b.store(b.or_(b.load(p), v), p)
            b.store(result if result.type == i64 else b.zext(result, i64), outp)
            b.ret(ir.Constant(ir.IntType(1), 1))
            b.position_at_end(no)
            b.ret(ir.Constant(ir.IntType(1), 0))
            text = str(m)
            # Keep the function and the declarations it uses (drop the module header).
            body = "\n".join(
                ln
                for ln in text.splitlines()
                if not ln.startswith(("target", "; ModuleID", "source_filename"))
            )
            res = (fname, body)
    _native_texts[key] = res
    return res


def _counter_of(name: str) -> int:
    """A region's tier-up counter: from its name, so cached objects agree across runs."""
    return int(name[3:11], 16) % N_COUNTERS


def make_engine(arch: Arch, mem: Any, engine: str = "auto", **kw: Any) -> Any:
    """The engine for `--engine`: "interp", "jit", "aot" or "auto" (JIT when llvmlite is there)."""
    if engine == "interp":
        return Interp(arch, mem)
    try:
        return JitEngine(arch, mem, tier=engine, cache=kw.pop("cache", None), **kw)
    except JitUnavailable:
        if engine == "auto":
            return Interp(arch, mem)
        raise


_ = os
