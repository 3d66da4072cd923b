"""Run seeds, shrink failures to the fewest units that still differ, and describe them."""

from __future__ import annotations

from dataclasses import dataclass

from .gen import Program, make_program
from .runners import PolyvmRunner, UnicornRunner, compare, disasm


@dataclass
class Failure:
    prog: Program
    drop: frozenset[int]
    diffs: list[str]

    def report(self) -> str:
        p = self.prog
        code = p.code(self.drop)
        kept = [u.name for i, u in enumerate(p.units) if i not in self.drop]
        if p.profile.startswith(("sweep", "trap")):
            head = f"{p.profile} (polyvm engine {p.engine_mode}): polyvm and Unicorn differ"
            repro = "  reproduce: pytest tests/test_diff_unicorn.py -k 'sweep or trap'"
        else:
            head = f"seed {p.seed} (profile {p.profile}, polyvm engine {p.engine_mode}): polyvm and Unicorn differ"
            repro = f"  reproduce: POLYVM_DIFF_SEED={p.seed} pytest tests/test_diff_unicorn.py -k seed"
        lines = [
            head,
            repro,
            f"  shrunk to {len(kept)} of {len(p.units)} units: {', '.join(kept)}",
            "  differences:",
            *("    " + d for d in self.diffs),
            "  code (NOPs are shrunk-away units):",
            *("    " + line for line in disasm(code)),
        ]
        lines.append("  initial x: " + " ".join(f"x{i}={p.xregs[i]:#x}" for i in range(1, 32)))
        lines.append(
            "  initial f: "
            + " ".join(f"f{i}={v:#x}({k})" for i, (v, k) in enumerate(zip(p.fregs, p.fkinds, strict=True)))
        )
        lines.append(f"  initial fflags={p.fflags:#x} frm={p.frm}")
        return "\n".join(lines)


class Checker:
    def __init__(self) -> None:
        self.uni = UnicornRunner()
        self.pv = PolyvmRunner()

    def diffs(self, prog: Program, drop: frozenset[int] = frozenset()) -> list[str]:
        code = prog.code(drop)
        a = self.uni.run(prog, code)
        b = self.pv.run(prog, code)
        return compare(prog, a, b, prog.final_kinds(drop))

    def check(self, seed: int, shrink: bool = True) -> Failure | None:
        return self.check_program(make_program(seed), shrink)

    def check_program(self, prog: Program, shrink: bool = True) -> Failure | None:
        d = self.diffs(prog)
        if not d:
            return None
        drop: frozenset[int] = frozenset()
        if shrink:
            drop, d = self.shrink(prog, d)
        return Failure(prog, drop, d)

    def shrink(self, prog: Program, diffs: list[str]) -> tuple[frozenset[int], list[str]]:
        """Greedily NOP out units while the program stays valid and still differs."""
        drop: frozenset[int] = frozenset()
        changed = True
        while changed:
            changed = False
            for i in reversed(range(len(prog.units))):
                if i in drop:
                    continue
                cand = drop | {i}
                if not prog.valid(cand):
                    continue
                d = self.diffs(prog, cand)
                if d:
                    drop, diffs, changed = cand, d, True
        return drop, diffs
