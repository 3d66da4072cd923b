"""What ``polyvm gpu info`` and ``polyvm gpu selftest`` run. Errors end as one line on stderr."""

from __future__ import annotations

import argparse
import json
import random
import struct
import sys
import time
from collections.abc import Sequence
from typing import Any

from .errors import GPUError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage dump
        raise _UsageError(f"{self.prog}: {message}")


class _UsageError(Exception):
    pass


def _common(prog: str, description: str) -> _Parser:
    p = _Parser(prog=prog, description=description)
    p.add_argument("--backend", default="auto", choices=["auto", "cuda", "rocm", "fake"], help="GPU backend")
    p.add_argument("--device", type=int, default=0, metavar="N", help="device index (default 0)")
    return p


def _fmt_bytes(n: int | None) -> str:
    if n is None:
        return "unavailable"
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.2f} {unit} ({n} bytes)"
    return f"{n} bytes"


def _fmt(key: str, v: Any) -> str:
    if v is None:
        return "unavailable"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if key in ("total_memory", "free_memory", "used_memory", "l2_cache_bytes") or key.startswith(
        "max_shared"
    ):
        return _fmt_bytes(v)
    if key.endswith("_khz"):
        return f"{v / 1000:.0f} MHz"
    if isinstance(v, list | tuple):
        return " x ".join(str(x) for x in v) if key.startswith("max_") else ".".join(str(x) for x in v)
    return str(v)


def gpu_info_main(argv: Sequence[str]) -> int:
    """``polyvm gpu info [--json] [--backend X] [--device N]``."""
    from .api import open_device

    p = _common("polyvm gpu info", "Show what the GPU driver reports about a device.")
    p.add_argument("--json", action="store_true", help="print JSON")
    try:
        a = p.parse_args(list(argv))
        with open_device(a.backend, a.device, cache=False) as dev:
            info = dev.info().to_dict()
    except _UsageError as e:
        print(e, file=sys.stderr)
        return 2
    except GPUError as e:
        print(f"polyvm gpu info: {_one_line(e)}", file=sys.stderr)
        return 1
    if a.json:
        print(json.dumps(info, indent=2))
    else:
        width = max(len(k) for k in info)
        for k, v in info.items():
            print(f"{k.replace('_', ' '):<{width}}  {_fmt(k, v)}")
    return 0


def _one_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _f32(x: float) -> float:
    return struct.unpack("<f", struct.pack("<f", x))[0]


def gpu_selftest_main(argv: Sequence[str]) -> int:
    """``polyvm gpu selftest``: compile, run and check SAXPY and a matrix product on random inputs."""
    from . import kernels
    from .api import open_device
    from .args import f32, i32

    p = _common("polyvm gpu selftest", "Compile and run small kernels and check them against the CPU.")
    p.add_argument("--n", type=int, default=1 << 20, help="SAXPY length (default 1048576)")
    p.add_argument("--size", type=int, default=64, help="matrix size (default 64)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: fresh)")
    try:
        a = p.parse_args(list(argv))
    except _UsageError as e:
        print(e, file=sys.stderr)
        return 2
    if a.n < 1 or a.size < 1:
        print("polyvm gpu selftest: --n and --size must be positive", file=sys.stderr)
        return 2
    seed = a.seed if a.seed is not None else random.SystemRandom().randrange(2**32)
    rng = random.Random(seed)
    ok = True
    try:
        with open_device(a.backend, a.device) as dev:
            info = dev.info()
            print(f"device: {info.name} ({info.backend}:{info.index}, {info.arch}); seed {seed}")
            t0 = time.perf_counter()
            mod = dev.compile(kernels.SELFTEST, name="selftest.cu")
            how = "cache" if mod.from_cache else f"{mod.image_kind} via {dev.compiler_version}"
            print(f"compile: {1000 * (time.perf_counter() - t0):.1f} ms ({how})")

            n = a.n
            alpha = _f32(rng.uniform(-4.0, 4.0))
            x = [_f32(rng.uniform(-1.0, 1.0)) for _ in range(n)]
            y = [_f32(rng.uniform(-1.0, 1.0)) for _ in range(n)]
            bx = dev.to_device(struct.pack(f"<{n}f", *x))
            by = dev.to_device(struct.pack(f"<{n}f", *y))
            mod.get_kernel("saxpy").launch((n + 255) // 256, 256, (i32(n), f32(alpha), bx, by))
            got = struct.unpack(f"<{n}f", by.copy_to_host())
            bad = sum(
                1
                for xi, yi, gi in zip(x, y, got, strict=True)
                if abs(gi - (alpha * xi + yi)) > 1e-5 * (abs(alpha * xi) + abs(yi)) + 1e-6
            )
            ok &= _report(f"saxpy n={n}", bad, n)

            m = k = nn = a.size
            A = [_f32(rng.uniform(-1.0, 1.0)) for _ in range(m * k)]
            B = [_f32(rng.uniform(-1.0, 1.0)) for _ in range(k * nn)]
            dA = dev.to_device(struct.pack(f"<{m * k}f", *A))
            dB = dev.to_device(struct.pack(f"<{k * nn}f", *B))
            dC = dev.alloc(4 * m * nn)
            dC.memset(0xFF)  # NaN pattern: a kernel that writes nothing cannot pass
            grid = ((nn + 15) // 16, (m + 15) // 16)
            mod.get_kernel("matmul").launch(grid, (16, 16), (dA, dB, dC, i32(m), i32(nn), i32(k)))
            C = struct.unpack(f"<{m * nn}f", dC.copy_to_host())
            bad = 0
            for i in range(m):
                for j in range(nn):
                    terms = [A[i * k + t] * B[t * nn + j] for t in range(k)]
                    ref = sum(terms)
                    tol = 1e-5 * k * max(1.0, sum(abs(v) for v in terms))
                    if not abs(C[i * nn + j] - ref) <= tol:
                        bad += 1
            ok &= _report(f"matmul {m}x{k} @ {k}x{nn}", bad, m * nn)
            dev.synchronize()
    except GPUError as e:
        print(f"polyvm gpu selftest: {_one_line(e)}", file=sys.stderr)
        return 1
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


def _report(what: str, bad: int, total: int) -> bool:
    print(f"{what}: {'ok' if bad == 0 else f'{bad} of {total} results wrong'}")
    return bad == 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m polyvm.gpu.cli info|selftest ...`` until the project CLI wires these in."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in ("info", "selftest"):
        print("usage: python -m polyvm.gpu.cli {info,selftest} [options]", file=sys.stderr)
        return 2
    return (gpu_info_main if args[0] == "info" else gpu_selftest_main)(args[1:])


if __name__ == "__main__":
    sys.exit(main())
