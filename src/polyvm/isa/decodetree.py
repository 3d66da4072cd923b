"""A declarative instruction decoder generator, after QEMU's decodetree.

An ISA describes its encodings as text, one item per line (`#` starts a comment):

    %imm_b   31:s1 7:1 25:6 8:4  !shift=1          a field: bit slices, concatenated
    @b       ....... ..... ..... ... ..... .......  imm=%imm_b %rs2 %rs1     a format
    beq      ....... ..... ..... 000 ..... 1100011  @b                        a pattern
    {                                                an overlapping group ...
      illegal  000 000 000 00 --- 00
      addi     000 ... ... .. ... 00  @c_addi4spn
    }                                                ... first match wins

Fields: slices `pos:len` (bit `pos` is the slice's least significant bit), most significant
slice first; `pos:slen` makes the whole field signed (write it on the first slice).
`!shift=N` scales the result, `!function=name` maps it through a function the table is given.

Bits: a pattern or format lists exactly `width` bit characters, most significant first, split
into tokens as the reader likes: `0`/`1` must match, `.` and `-` are free. A token `name:len`
(or `name:slen`) is a free slice that becomes a field of that name.

Arguments: `%field` (argument named like the field), `name=%field`, `name=<int>` (a constant).
A pattern takes its format's fixed bits and arguments, then adds its own.

Patterns must not overlap unless they are in one `{ }` group, where declaration order decides
(a handler may also decline an instruction, and `matches` yields the next candidate). The table
checks this when it is built.

Decoding walks a tree that, at each node, dispatches on the bits that every remaining pattern
fixes (opcode, then funct3, then funct7, ...), so only a handful of mask/compare tests remain
at the leaves, never a scan over the whole table.
"""

from __future__ import annotations

import marshal
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from types import SimpleNamespace
from typing import Any

__all__ = ["DecodeError", "Field", "Pattern", "DecodeTable", "Args"]


class DecodeError(ValueError):
    """The table text is malformed (a bug in an ISA description, found at import)."""


class Args(SimpleNamespace):
    """Decoded arguments of one instruction (`args.rd`, `args.imm`, ...)."""


class Field:
    """A value assembled from bit slices of the instruction."""

    __slots__ = ("name", "slices", "signed", "shift", "function")

    def __init__(
        self,
        name: str,
        slices: list[tuple[int, int]],
        signed: bool = False,
        shift: int = 0,
        function: str | None = None,
    ) -> None:
        self.name = name
        self.slices = slices
        self.signed = signed
        self.shift = shift
        self.function = function

    @property
    def length(self) -> int:
        return sum(n for _, n in self.slices)

    def expr(self, var: str = "i") -> str:
        """Python source computing the field from the instruction in `var`."""
        parts = []
        rest = self.length
        for pos, n in self.slices:
            rest -= n
            piece = f"(({var} >> {pos}) & {(1 << n) - 1:#x})" if pos else f"({var} & {(1 << n) - 1:#x})"
            parts.append(f"({piece} << {rest})" if rest else piece)
        e = " | ".join(parts)
        if self.signed:
            s = 1 << (self.length - 1)
            e = f"((({e}) ^ {s:#x}) - {s:#x})"
        if self.shift:
            e = f"(({e}) << {self.shift})"
        if self.function:
            e = f"_fn_{self.function}({e})"
        return e

    def extract(self, insn: int, functions: Mapping[str, Callable[[int], int]] | None = None) -> int:
        v = 0
        for pos, n in self.slices:
            v = (v << n) | ((insn >> pos) & ((1 << n) - 1))
        if self.signed:
            s = 1 << (self.length - 1)
            v = (v ^ s) - s
        v <<= self.shift
        if self.function:
            v = (functions or {})[self.function](v)
        return v

    def __repr__(self) -> str:
        return f"Field({self.name!r}, {self.slices}, signed={self.signed}, shift={self.shift})"


class Pattern:
    """One encoding: `insn & mask == bits` selects it; `extract(insn)` decodes its arguments."""

    __slots__ = ("name", "mask", "bits", "args", "group", "line", "extract", "handler")

    def __init__(
        self, name: str, mask: int, bits: int, args: dict[str, Field | int], group: int | None, line: int
    ) -> None:
        self.name = name
        self.mask = mask
        self.bits = bits
        self.args = args
        self.group = group
        self.line = line
        self.extract: Callable[[int], Args] = _no_extract
        self.handler: Any = None

    def matches(self, insn: int) -> bool:
        return insn & self.mask == self.bits

    def __repr__(self) -> str:
        return f"Pattern({self.name!r}, mask={self.mask:#x}, bits={self.bits:#x}, line={self.line})"


def _no_extract(insn: int) -> Args:
    raise AssertionError("pattern not compiled")


class _Node:
    __slots__ = ("mask", "children")

    def __init__(self, mask: int, children: dict[int, Any]) -> None:
        self.mask = mask
        self.children = children


_BUILDING = threading.Lock()  # (lazy tables: `DecodeTable.__getattr__`)
# Where built tables are kept between runs (`persist`): (load(name, key), save(name, key, data))
_store: tuple[Callable[[str, str], bytes | None], Callable[[str, str, bytes], None]] | None = None
_FORMAT = 1  # of a kept table (part of its key)


def persist(
    load: Callable[[str, str], bytes | None] | None, save: Callable[[str, str, bytes], None] | None
) -> None:
    """Keep built tables between runs (those made with `keep`): `save(name, key, data)` is
    given a table once it is built, `load(name, key)` asked for it before the next build
    (None: not there). `name` is the table's `keep`; `key` all the table depends on (its text,
    width, field functions' names and the Python version's bytecode magic: `data` holds
    compiled extractors). Parsing the text, building the tree and compiling the extractors a
    program uses cost 7-16 ms of a RISC-V program's first run; loading a kept table about
    1.5 ms. Data that does not load is ignored and the table built again (and saved again).
    `persist(None, None)` stops it."""
    global _store
    _store = (load, save) if load is not None and save is not None else None


_FIELD_SLICE = re.compile(r"^(\d+):(s?)(\d+)$")
_INLINE = re.compile(r"^([A-Za-z_]\w*):(s?)(\d+)$")
_BITS = re.compile(r"^[01.\-]+$")
_NAME = re.compile(r"^[A-Za-z_][\w.]*$")


class DecodeTable:
    """A decoder for instructions of `width` bits, built from decodetree-style `text`.

    `functions` are the field functions (`!function=name`); `handlers`, if given, is searched
    for `trans_<name>` (dots in pattern names become underscores) to set `Pattern.handler`.
    """

    def __init__(
        self,
        text: str,
        width: int,
        *,
        functions: Mapping[str, Callable[[int], int]] | None = None,
        handlers: Mapping[str, Any] | None = None,
        lazy: bool = False,
        keep: str | None = None,
    ) -> None:
        """With `lazy`, the text is parsed and the tree built when the table is first used (a
        run whose code all comes from the translation cache decodes nothing). With `keep` (a
        short name), the built table is kept between runs where `persist` says how."""
        self._args = (text, width, functions, handlers, keep)
        if not lazy:
            self._build_table()

    def build(self) -> None:
        """Build a lazy table now (nothing if it is built)."""
        with _BUILDING:
            if "_args" in self.__dict__:
                self._build_table()

    def __getattr__(self, name: str) -> Any:
        # (only for attributes not there yet: those of a lazy table not built yet; one thread
        # builds it, another asking meanwhile waits for it)
        if name.startswith("__"):
            raise AttributeError(name)
        with _BUILDING:
            if "_args" in self.__dict__:
                self._build_table()
        return object.__getattribute__(self, name)

    def _build_table(self) -> None:
        text, width, functions, handlers, keep = self.__dict__.pop("_args")
        self.width = width
        self.functions = dict(functions or {})
        self._extractors: dict[str, Callable[[int], Args]] = {}  # source -> extractor
        store = _store if keep else None
        key = ""
        if store is not None:
            import importlib.util

            magic = importlib.util.MAGIC_NUMBER.hex()
            key = f"{_FORMAT}|{magic}|{width}|{','.join(sorted(self.functions))}|{text}"
            data = store[0](keep, key)
            if data is not None and self._restore(data, handlers):
                return
        self.fields: dict[str, Field] = {}
        self.formats: dict[str, tuple[int, int, dict[str, Field | int]]] = {}
        self.patterns: list[Pattern] = []
        self._parse(text)
        for p in self.patterns:
            for name in p.args:
                if not name.isidentifier():
                    raise DecodeError(f"line {p.line}: argument name {name!r} is not an identifier")
            p.extract = self._lazy_extract(p)
        self._link(handlers)
        self._root = self._build(self.patterns, 0)
        self._check_overlaps(self._root)
        if store is not None:
            store[1](keep, key, self._snapshot())

    def _link(self, handlers: Mapping[str, Any] | None) -> None:
        """Each pattern's `trans_<name>` from `handlers`."""
        if handlers is None:
            return
        for p in self.patterns:
            fn = handlers.get("trans_" + p.name.replace(".", "_"))
            if fn is None:
                raise DecodeError(f"line {p.line}: no trans_{p.name.replace('.', '_')} for {p.name!r}")
            p.handler = fn

    # ---- kept between runs (`persist`) -----------------------------------------------------
    def _snapshot(self) -> bytes:
        """The built table as marshal data: fields, formats, patterns, the tree (pattern
        indices at its leaves) and every pattern's extractor, compiled into one code object."""

        def field(f: Field | int) -> Any:
            return f if isinstance(f, int) else (f.name, tuple(f.slices), f.signed, f.shift, f.function)

        def args(a: dict[str, Field | int]) -> dict[str, Any]:
            return {k: field(v) for k, v in a.items()}

        index = {id(p): i for i, p in enumerate(self.patterns)}

        def tree(n: Any) -> Any:
            if isinstance(n, _Node):
                return (n.mask, {k: tree(c) for k, c in n.children.items()})
            return [index[id(p)] for p in n]

        sources: dict[str, int] = {}
        for p in self.patterns:
            sources.setdefault(self._extract_source(p), len(sources))
        module = "".join(src.replace("def extract(", f"def _x{i}(", 1) for src, i in sources.items())
        pats = [
            (p.name, p.mask, p.bits, args(p.args), p.group, p.line, sources[self._extract_source(p)])
            for p in self.patterns
        ]
        return marshal.dumps(
            (
                {k: field(f) for k, f in self.fields.items()},
                {k: (m, b, args(a)) for k, (m, b, a) in self.formats.items()},
                pats,
                tree(self._root),
                compile(module, "<decode extractors>", "exec"),
            )
        )

    def _restore(self, data: bytes, handlers: Mapping[str, Any] | None) -> bool:
        """The table from `_snapshot`'s data; False (nothing set) if it does not load."""
        try:
            fields, formats, pats, root, code = marshal.loads(data)

            def field(t: Any) -> Field | int:
                return t if isinstance(t, int) else Field(t[0], [tuple(x) for x in t[1]], t[2], t[3], t[4])

            env: dict[str, Any] = {"_Args": Args}
            for name, fn in self.functions.items():
                env[f"_fn_{name}"] = fn
            exec(code, env)  # noqa: S102 - polyvm's own extractors, from its own cache
            patterns = []
            for name, mask, bits, a, group, line, x in pats:
                p = Pattern(name, mask, bits, {k: field(v) for k, v in a.items()}, group, line)
                p.extract = env[f"_x{x}"]
                patterns.append(p)

            def tree(t: Any) -> Any:
                if isinstance(t, list):
                    return tuple(patterns[i] for i in t)
                return _Node(t[0], {k: tree(c) for k, c in t[1].items()})

            new_root = tree(root)
            new_fields = {k: field(v) for k, v in fields.items()}
            new_formats = {k: (m, b, {n: field(v) for n, v in a.items()}) for k, (m, b, a) in formats.items()}
        except Exception:  # noqa: BLE001 - data of another version or damaged: build instead
            return False
        self.patterns = patterns
        self._link(handlers)
        self.fields, self.formats, self._root = new_fields, new_formats, new_root
        return True

    # ---- decoding ------------------------------------------------------------------------
    def decode(self, insn: int) -> tuple[Pattern, Args] | None:
        """The first pattern matching `insn` and its arguments, or None."""
        node = self._root
        while node.__class__ is _Node:
            node = node.children.get(insn & node.mask)
            if node is None:
                return None
        for p in node:
            if insn & p.mask == p.bits:
                return p, p.extract(insn)
        return None

    def matches(self, insn: int) -> Iterator[tuple[Pattern, Args]]:
        """Every pattern matching `insn`, in priority order (more than one only in groups)."""
        node = self._root
        while node.__class__ is _Node:
            node = node.children.get(insn & node.mask)
            if node is None:
                return
        for p in node:
            if insn & p.mask == p.bits:
                yield p, p.extract(insn)

    # ---- parsing -------------------------------------------------------------------------
    def _parse(self, text: str) -> None:
        group: int | None = None
        ngroups = 0
        for lineno, raw in enumerate(text.splitlines(), 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            if line == "{":
                if group is not None:
                    raise DecodeError(f"line {lineno}: nested groups are not supported")
                ngroups += 1
                group = ngroups
                continue
            if line == "}":
                if group is None:
                    raise DecodeError(f"line {lineno}: '}}' without '{{'")
                group = None
                continue
            toks = line.split()
            head, rest = toks[0], toks[1:]
            if head.startswith("%"):
                self._parse_field(lineno, head[1:], rest)
            elif head.startswith("@"):
                mask, bits, args = self._parse_bits_args(lineno, rest, allow_format=False)
                self.formats[head[1:]] = (mask, bits, args)
            elif _NAME.match(head):
                mask, bits, args = self._parse_bits_args(lineno, rest, allow_format=True)
                self.patterns.append(Pattern(head, mask, bits, args, group, lineno))
            else:
                raise DecodeError(f"line {lineno}: cannot parse {raw!r}")
        if group is not None:
            raise DecodeError("unterminated group")

    def _parse_field(self, lineno: int, name: str, toks: list[str]) -> None:
        slices: list[tuple[int, int]] = []
        signed = False
        shift = 0
        function = None
        for t in toks:
            m = _FIELD_SLICE.match(t)
            if m:
                pos, s, n = int(m.group(1)), m.group(2), int(m.group(3))
                if s:
                    if slices:
                        raise DecodeError(f"line {lineno}: only the first slice of %{name} may be signed")
                    signed = True
                if n == 0 or pos + n > self.width:
                    raise DecodeError(f"line {lineno}: slice {t} outside a {self.width}-bit insn")
                slices.append((pos, n))
            elif t.startswith("!shift="):
                shift = int(t[7:], 0)
            elif t.startswith("!function="):
                function = t[10:]
                if function not in self.functions:
                    raise DecodeError(f"line {lineno}: unknown function {function!r}")
            else:
                raise DecodeError(f"line {lineno}: bad field token {t!r}")
        if not slices:
            raise DecodeError(f"line {lineno}: field %{name} has no bits")
        self.fields[name] = Field(name, slices, signed, shift, function)

    def _parse_bits_args(
        self, lineno: int, toks: list[str], allow_format: bool
    ) -> tuple[int, int, dict[str, Field | int]]:
        mask = bits = 0
        pos = self.width  # next bit to assign, counting down
        args: dict[str, Field | int] = {}
        own: dict[str, Field | int] = {}
        fmt: tuple[int, int, dict[str, Field | int]] | None = None
        i = 0
        while i < len(toks):
            t = toks[i]
            if _BITS.match(t):
                for ch in t:
                    pos -= 1
                    if pos < 0:
                        raise DecodeError(f"line {lineno}: more than {self.width} bits")
                    if ch in "01":
                        mask |= 1 << pos
                        bits |= int(ch) << pos
            else:
                m = _INLINE.match(t)
                if not m:
                    break
                n = int(m.group(3))
                pos -= n
                if pos < 0:
                    raise DecodeError(f"line {lineno}: more than {self.width} bits")
                own[m.group(1)] = Field(m.group(1), [(pos, n)], bool(m.group(2)))
            i += 1
        if pos != 0:
            raise DecodeError(f"line {lineno}: {self.width - pos} bits given, {self.width} expected")
        for t in toks[i:]:
            if t.startswith("@"):
                if not allow_format or fmt is not None:
                    raise DecodeError(f"line {lineno}: unexpected format reference {t}")
                fmt = self.formats.get(t[1:])
                if fmt is None:
                    raise DecodeError(f"line {lineno}: unknown format {t}")
            elif t.startswith("%"):
                own[t[1:]] = self._field(lineno, t[1:])
            elif "=" in t:
                name, val = t.split("=", 1)
                if val.startswith("%"):
                    own[name] = self._field(lineno, val[1:])
                else:
                    try:
                        own[name] = int(val, 0)
                    except ValueError:
                        raise DecodeError(f"line {lineno}: bad constant {t!r}") from None
            else:
                raise DecodeError(f"line {lineno}: bad token {t!r}")
        if fmt is not None:
            fmask, fbits, fargs = fmt
            if (fbits ^ bits) & fmask & mask:
                raise DecodeError(f"line {lineno}: fixed bits contradict the format")
            mask, bits = mask | fmask, bits | fbits
            args.update(fargs)
        args.update(own)
        return mask, bits, args

    def _field(self, lineno: int, name: str) -> Field:
        f = self.fields.get(name)
        if f is None:
            raise DecodeError(f"line {lineno}: unknown field %{name}")
        return f

    # ---- code generation -----------------------------------------------------------------
    def _lazy_extract(self, p: Pattern) -> Callable[[int], Args]:
        """p's extractor, compiled when p first decodes something (a program uses a few of
        the hundreds of patterns: compiling them all cost a fifth of a warm start)."""

        def first(insn: int) -> Args:
            p.extract = self._compile_extract(p)
            return p.extract(insn)

        return first

    @staticmethod
    def _extract_source(p: Pattern) -> str:
        items = []
        for name, a in p.args.items():
            items.append(f"{name}={a!r}" if isinstance(a, int) else f"{name}={a.expr('i')}")
        return f"def extract(i):\n    return _Args({', '.join(items)})\n"

    def _compile_extract(self, p: Pattern) -> Callable[[int], Args]:
        src = self._extract_source(p)
        # (patterns of one format share their extractor: compiled once per table)
        fn = self._extractors.get(src)
        if fn is None:
            env: dict[str, Any] = {"_Args": Args}
            for name, f in self.functions.items():
                env[f"_fn_{name}"] = f
            exec(compile(src, f"<decode {p.name}>", "exec"), env)
            fn = self._extractors[src] = env["extract"]
        return fn

    # ---- the decision tree ---------------------------------------------------------------
    def _build(self, pats: list[Pattern], used: int) -> Any:
        full = (1 << self.width) - 1
        while True:
            common = full & ~used
            for p in pats:
                common &= p.mask
            if len(pats) <= 1 or not common:
                return tuple(pats)
            buckets: dict[int, list[Pattern]] = {}
            for p in pats:
                buckets.setdefault(p.bits & common, []).append(p)
            used |= common
            if len(buckets) > 1:
                return _Node(common, {k: self._build(v, used) for k, v in buckets.items()})
            # Every pattern agrees on these bits; the leaf test checks them, look further.

    def _check_overlaps(self, node: Any) -> None:
        if isinstance(node, _Node):
            for child in node.children.values():
                self._check_overlaps(child)
            return
        for i, a in enumerate(node):
            for b in node[i + 1 :]:
                if (a.bits ^ b.bits) & a.mask & b.mask == 0 and (a.group is None or a.group != b.group):
                    raise DecodeError(
                        f"patterns {a.name!r} (line {a.line}) and {b.name!r} (line {b.line}) overlap"
                    )

    def leaves(self) -> list[tuple[Pattern, ...]]:
        """The leaf pattern lists of the decision tree (for tests and statistics)."""
        out: list[tuple[Pattern, ...]] = []

        def walk(n: Any) -> None:
            if isinstance(n, _Node):
                for c in n.children.values():
                    walk(c)
            else:
                out.append(n)

        walk(self._root)
        return out
