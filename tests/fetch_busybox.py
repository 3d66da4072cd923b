#!/usr/bin/env python3
"""Fetch Debian's busybox-static for a guest architecture and cache the binary.

    python tests/fetch_busybox.py [--arch riscv64] [--refresh]   # prints the binary's path

apt fetches a package of a foreign architecture without multiarch when it gets its own state
folders and a source list for a suite that has the port (riscv64 is in Debian 13 "trixie"). The
source list is built at run time from this machine's own apt sources (its Debian mirror URL and
keyring), so no archive host is written down here; POLYVM_DEBIAN_MIRROR overrides the URL.

The binary is cached as $POLYVM_CACHE/busybox/<arch>/<version>/busybox (POLYVM_CACHE defaults
to ~/.cache/polyvm), written atomically (extracted in a temporary folder, renamed into place),
with `<arch>/current` naming the version to use. A cached binary is used without contacting the
archive; --refresh asks apt for the newest version. Errors are one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import getpass
import lzma
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

SUITE = "trixie"
PACKAGE = "busybox-static"
SOURCES_LIST = Path("/etc/apt/sources.list")
SOURCES_DIR = Path("/etc/apt/sources.list.d")
# Messages apt prints when it cannot talk to the archive at all.
_NET_ERRORS = (
    "Could not resolve",
    "Temporary failure resolving",
    "Failed to fetch",
    "Unable to connect",
    "Could not connect",
    "Connection failed",
    "Connection timed out",
    "Network is unreachable",
    "No route to host",
    "Unable to locate package",  # the suite was fetched but has no such package for the arch
)


class FetchError(Exception):
    """busybox could not be fetched (a bug or a broken setup: tests should fail)."""


class ArchiveUnreachable(FetchError):
    """No way to reach a Debian archive from here (tests should skip)."""


@dataclass(frozen=True)
class Source:
    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]
    signed_by: str = ""  # a keyring path, or an inline ASCII-armoured key block


def cache_root() -> Path:
    env = os.environ.get("POLYVM_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "polyvm"


# ---- the machine's apt sources ------------------------------------------------------------


def _parse_one_line(text: str) -> list[Source]:
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        opts: dict[str, str] = {}
        m = re.match(r"deb\s+\[([^\]]*)\]\s+(.*)", line)
        rest = line[4:].strip()
        if m:
            for kv in m.group(1).split():
                k, _, v = kv.partition("=")
                opts[k.lower()] = v
            rest = m.group(2)
        parts = rest.split()
        if len(parts) >= 2:
            out.append(Source(parts[0], (parts[1],), tuple(parts[2:]), opts.get("signed-by", "")))
    return out


def _parse_deb822(text: str) -> list[Source]:
    out = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for raw in stanza.splitlines():
            if raw.startswith("#"):
                continue
            if raw[:1] in (" ", "\t") and key is not None:  # continuation line
                cont = raw.strip()
                fields[key] += "\n" + ("" if cont == "." else cont)
                continue
            k, sep, v = raw.partition(":")
            if sep:
                key = k.strip().lower()
                fields[key] = v.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() == "no":
            continue
        for uri in fields.get("uris", "").split():
            out.append(
                Source(
                    uri,
                    tuple(fields.get("suites", "").split()),
                    tuple(fields.get("components", "").split()),
                    fields.get("signed-by", "").strip(),
                )
            )
    return out


def host_sources() -> list[Source]:
    out: list[Source] = []
    with contextlib.suppress(OSError):
        out += _parse_one_line(SOURCES_LIST.read_text())
    if SOURCES_DIR.is_dir():
        for p in sorted(SOURCES_DIR.iterdir()):
            try:
                if p.suffix == ".list":
                    out += _parse_one_line(p.read_text())
                elif p.suffix == ".sources":
                    out += _parse_deb822(p.read_text())
            except OSError:
                continue
    return out


def debian_mirror() -> Source:
    """The machine's main Debian archive (not the security archive, not a third-party repo)."""
    env = os.environ.get("POLYVM_DEBIAN_MIRROR")
    if env:
        return Source(env, (SUITE,), ("main",))
    for s in host_sources():
        path = s.uri.rstrip("/")
        if path.endswith("/debian") and not any("security" in x for x in (s.uri, *s.suites)):
            return s
    raise ArchiveUnreachable(
        "no Debian mirror in this machine's apt sources (/etc/apt/sources.list*); "
        "set POLYVM_DEBIAN_MIRROR=URL to name one"
    )


# ---- apt ------------------------------------------------------------------------------------


def _apt_options(state: Path, arch: str) -> list[str]:
    opts = {
        "APT::Architecture": arch,
        "APT::Architectures": arch,
        "Dir::State": str(state),
        "Dir::State::Lists": str(state / "lists"),
        "Dir::State::Status": str(state / "status"),
        "Dir::Cache": str(state / "cache"),
        "Dir::Etc::SourceList": str(state / "sources.list"),
        "Dir::Etc::SourceParts": str(state / "sources.list.d"),
        "Dir::Etc::Preferences": str(state / "preferences"),
        "Dir::Etc::PreferencesParts": str(state / "preferences.d"),
        "Debug::NoLocking": "1",
        "APT::Sandbox::User": getpass.getuser(),
        "Acquire::Retries": "2",
    }
    out = []
    for k, v in opts.items():
        out += ["-o", f"{k}={v}"]
    return out


def _run(cmd: list[str], cwd: Path | None = None) -> str:
    what = " ".join(a for i, a in enumerate(cmd) if a != "-o" and (i == 0 or cmd[i - 1] != "-o"))
    try:
        p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)
    except FileNotFoundError as e:
        raise ArchiveUnreachable(f"{cmd[0]} is not installed (needed to fetch {PACKAGE})") from e
    except subprocess.TimeoutExpired as e:
        raise ArchiveUnreachable(f"{what} timed out") from e
    out = p.stdout + p.stderr
    if p.returncode != 0 or re.search(r"^(E:|Err:)", out, re.M):
        last = " | ".join(line for line in out.splitlines() if line.startswith(("E:", "Err:", "W:")))[-600:]
        msg = f"{what} failed: {last or out.strip()[-600:]}"
        if any(e in out for e in _NET_ERRORS):
            raise ArchiveUnreachable(msg)
        raise FetchError(msg)
    return out


def _prepare_state(state: Path, arch: str) -> list[str]:
    src = debian_mirror()
    for d in ("lists/partial", "cache/archives/partial", "sources.list.d", "preferences.d"):
        (state / d).mkdir(parents=True, exist_ok=True)
    (state / "status").write_text("")
    (state / "preferences").write_text("")
    signed = src.signed_by
    if signed.startswith("-----BEGIN") or "\n" in signed:  # an inline key: give apt a file
        key = state / "keyring.asc"
        key.write_text(signed.strip() + "\n")
        signed = str(key)
    opt = f" [signed-by={signed}]" if signed else ""
    (state / "sources.list").write_text(f"deb{opt} {src.uri} {SUITE} main\n")
    return _apt_options(state, arch)


def _candidate_version(opts: list[str]) -> str:
    out = _run(["apt-cache", *opts, "show", "--no-all-versions", PACKAGE])
    m = re.search(r"^Version:\s*(\S+)", out, re.M)
    if not m:
        raise FetchError(f"apt-cache show {PACKAGE}: no Version field")
    return m.group(1)


def _extract_busybox(deb: Path, dest: Path) -> None:
    """Copy the busybox binary out of a .deb (dpkg -x when there is one, else Python)."""
    tmp = dest.parent / "x"
    if shutil.which("dpkg"):
        subprocess.run(["dpkg", "-x", str(deb), str(tmp)], check=True, capture_output=True)
    else:
        _py_extract(deb, tmp)
    for rel in ("usr/bin/busybox", "bin/busybox"):
        if (tmp / rel).is_file():
            shutil.copyfile(tmp / rel, dest)
            dest.chmod(0o755)
            shutil.rmtree(tmp)
            return
    raise FetchError(f"{deb.name} holds no busybox binary")


def _py_extract(deb: Path, dest: Path) -> None:
    data = deb.read_bytes()
    if not data.startswith(b"!<arch>\n"):
        raise FetchError(f"{deb.name} is not a Debian package")
    pos = 8
    while pos + 60 <= len(data):
        name = data[pos : pos + 16].decode().strip().rstrip("/")
        size = int(data[pos + 48 : pos + 58].decode().strip())
        body = data[pos + 60 : pos + 60 + size]
        pos += 60 + size + (size & 1)
        if name.startswith("data.tar"):
            if name.endswith(".xz"):
                body = lzma.decompress(body)
            elif name.endswith(".zst"):
                raise FetchError(f"{deb.name}: data.tar.zst needs dpkg to extract")
            import io

            with tarfile.open(fileobj=io.BytesIO(body)) as tf:
                tf.extractall(dest, filter="data")
            return
    raise FetchError(f"{deb.name} has no data.tar member")


# ---- the cache ----------------------------------------------------------------------------------


def cached(arch: str = "riscv64") -> Path | None:
    root = cache_root() / "busybox" / arch
    try:
        version = (root / "current").read_text().strip()
    except OSError:
        return None
    path = root / version / "busybox"
    return path if path.is_file() else None


def fetch(arch: str = "riscv64", refresh: bool = False) -> Path:
    """The path of a cached busybox-static binary for `arch`, fetching it if needed."""
    if not refresh and (hit := cached(arch)) is not None:
        return hit
    root = cache_root() / "busybox" / arch
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one fetch at a time (parallel test workers)
        if not refresh and (hit := cached(arch)) is not None:
            return hit
        with tempfile.TemporaryDirectory(dir=root, prefix=".fetch-") as t:
            tmp = Path(t)
            opts = _prepare_state(tmp / "apt", arch)
            _run(["apt-get", *opts, "update"])
            version = _candidate_version(opts)
            key = version.replace(":", "_")  # an epoch's colon makes an awkward folder name
            final = root / key
            if not (final / "busybox").is_file():
                dl = tmp / "dl"
                dl.mkdir()
                _run(["apt-get", *opts, "download", PACKAGE], cwd=dl)
                debs = sorted(dl.glob("*.deb"))
                if not debs:
                    raise FetchError(f"apt-get download {PACKAGE} left no .deb")
                stage = tmp / "stage"
                stage.mkdir()
                _extract_busybox(debs[0], stage / "busybox")
                (stage / "VERSION").write_text(version + "\n")
                if final.exists():  # a broken earlier attempt
                    shutil.rmtree(final)
                os.rename(stage, final)
            cur = root / ".current.tmp"
            cur.write_text(key + "\n")
            os.replace(cur, root / "current")
    return final / "busybox"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="riscv64", help="Debian architecture (default riscv64)")
    ap.add_argument("--refresh", action="store_true", help="ask the archive for the newest version")
    args = ap.parse_args(argv)
    try:
        print(fetch(args.arch, args.refresh))
    except FetchError as e:
        print(f"fetch_busybox: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
