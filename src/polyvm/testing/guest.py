"""Build guest C programs with ziglang (PyPI), cached by content.

`build_guest("hello")` compiles `guest/hello.c` from the repository for riscv64-linux-musl and
returns the path of the static executable. The cache key is the source text, every header in
`guest/`, the flags and the zig version, so an edit rebuilds and nothing else does. Builds are
written to a temporary name and renamed into place, so concurrent test processes are safe.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
GUEST_DIR = REPO / "guest"
TRIPLES = {
    "riscv64": "riscv64-linux-musl",
    "aarch64": "aarch64-linux-musl",
    "x86_64": "x86_64-linux-musl",
}


# Guest programs that need more than their own source file.
NEEDS: dict[str, dict] = {
    "gpu_saxpy": {"extra_sources": ("polyvm_gpu.c",), "libs": ("m",)},
}


class GuestBuildError(Exception):
    pass


def cache_dir() -> Path:
    base = os.environ.get("POLYVM_GUEST_CACHE")
    if base:
        return Path(base)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "polyvm" / "guest-build"


def zig_version() -> str:
    out = subprocess.run([sys.executable, "-m", "ziglang", "version"], capture_output=True, text=True)
    if out.returncode != 0:
        raise GuestBuildError(f"ziglang unavailable: {out.stderr.strip()}")
    return out.stdout.strip()


def build_guest(
    name: str | Path,
    arch: str = "riscv64",
    *,
    extra_sources: tuple[str, ...] = (),
    cflags: tuple[str, ...] = ("-O2",),
    pie: bool = False,
    libs: tuple[str, ...] = (),
) -> Path:
    """Compile guest/<name>.c (or a path) into a static executable and return its path."""
    src = Path(name) if str(name).endswith(".c") else GUEST_DIR / f"{name}.c"
    needs = NEEDS.get(src.stem, {})
    extra_sources = extra_sources or needs.get("extra_sources", ())
    libs = libs or needs.get("libs", ())
    sources = [src] + [GUEST_DIR / s if not s.startswith("/") else Path(s) for s in extra_sources]
    flags = ["-target", TRIPLES[arch], "-static", *cflags]
    flags += ["-fPIE", "-static-pie"] if pie else ["-fno-PIE", "-no-pie"]
    h = hashlib.sha256()
    h.update(zig_version().encode())
    h.update(repr(flags + list(libs)).encode())
    for s in sources:
        h.update(s.name.encode() + b"\0" + s.read_bytes())
    for hdr in sorted(GUEST_DIR.glob("*.h")):
        h.update(hdr.name.encode() + b"\0" + hdr.read_bytes())
    out_dir = cache_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{src.stem}-{arch}{'-pie' if pie else ''}-{h.hexdigest()[:16]}"
    if out.exists():
        return out
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=".build-")
    os.close(fd)
    cmd = [sys.executable, "-m", "ziglang", "cc", *flags, "-I", str(GUEST_DIR), "-o", tmp]
    cmd += [str(s) for s in sources] + [f"-l{lib}" for lib in libs]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        os.unlink(tmp)
        raise GuestBuildError(f"building {src.name} failed:\n{res.stderr}")
    os.replace(tmp, out)
    return out


def main(argv: list[str] | None = None) -> int:
    """`python -m polyvm.testing.guest NAME [ARCH]`: build guest/NAME.c and print its path."""
    import sys as _sys

    args = argv if argv is not None else _sys.argv[1:]
    if not args:
        print("usage: python -m polyvm.testing.guest NAME [ARCH]", file=_sys.stderr)
        return 2
    try:
        print(build_guest(args[0], args[1] if len(args) > 1 else "riscv64"))
    except (GuestBuildError, FileNotFoundError, KeyError) as e:
        print(f"polyvm: error: {e}", file=_sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
