"""Support for polyvm's own tests and benchmarks (guest builds, fixtures)."""


def byte_compile() -> None:
    """Write polyvm's bytecode caches (`__pycache__`), as installing a wheel does: a benchmark
    that times polyvm's start-up must not time Python compiling polyvm's sources (an editable
    install under PYTHONDONTWRITEBYTECODE=1 would, on every start)."""
    import compileall
    import os

    compileall.compile_dir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), quiet=1)
