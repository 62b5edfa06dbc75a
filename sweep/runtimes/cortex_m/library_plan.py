"""Which TFLM objects make a CPU's library, and which of them each operator needs.

A firmware links the interpreter, the helpers every kernel shares, CMSIS-NN's C
functions and, of the ~80 operator kernels, only those of the operators it
registers (the reference CNN: 5). The library is therefore kept as units
(:mod:`.library`): one *base* (everything but the operator kernels) and one unit per
operator kernel object, each compiled the first time a model needs it. This
module says what the units are, from TFLM's own Makefile and sources only (never
from a cache entry):

- the members, in the order TFLM's own build archives them (a link pulls the same
  members in the same order from any archive that keeps that order and holds what
  the link needs, so a library of a subset links byte for byte the same firmware);
- which member defines each ``Register_X()`` (the kernel sources' definitions), and
  from TFLM's resolver header (:mod:`.ops`) which registrations each builtin
  operator calls: an operator needs the members defining them.

A member's name is its object path below TFLM's ``obj/`` folder as the library
build lays it out, e.g. ``kernels/tensorflow/lite/micro/kernels/cmsis_nn/conv.o``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sweep.runtimes.cortex_m.ops import Builtin

_DEFINITION = re.compile(r"\bTFLMRegistration\s*\*?\s*Register_([A-Z0-9_]+)\s*\(\s*\)\s*\{")
_KERNELS = "kernels/tensorflow/lite/micro/kernels/"


def _make_pattern(pattern: str) -> re.Pattern[str]:
    """A make ``filter`` pattern as a regex: its first ``%`` matches any text."""
    head, percent, tail = pattern.partition("%")
    return re.compile(re.escape(head) + (".*" + re.escape(tail) if percent else ""))


def normalize(
    objects: Iterable[str], obj_root: str, tflm: Path, downloads: Path, downloads_as: str
) -> list[str]:
    """Members named as in the library build, from a parse of TFLM's Makefile in the
    third-party sources (``TENSORFLOW_ROOT=<tflm>/``, ``DOWNLOADS_DIR=<downloads>``): the
    build runs in a copy of TFLM, whose sources are relative to it and whose downloads are
    at ``downloads_as``."""
    members = []
    for path in objects:
        if not path.startswith(obj_root):
            raise ValueError(f"TFLM object {path} is not under {obj_root}")
        group, _, source = path[len(obj_root) :].partition("/")
        if source.startswith(f"{tflm}/"):
            source = source[len(f"{tflm}/") :]
        elif source.startswith(f"{downloads}/"):
            source = f"{downloads_as}/{source[len(f'{downloads}/') :]}"
        else:
            raise ValueError(f"TFLM object {path} comes from outside its sources")
        members.append(f"{group}/{source}")
    return members


@dataclass(frozen=True)
class Plan:
    """The library of one CPU and kernel set: ``members`` in archive order, and
    ``defined_in``: registration name (``CONV_2D`` for ``Register_CONV_2D``) -> the member
    (an operator kernel) that defines it."""

    members: tuple[str, ...]
    defined_in: dict[str, str]

    @functools.cached_property
    def operator_members(self) -> frozenset[str]:
        return frozenset(self.defined_in.values())

    @functools.cached_property
    def base(self) -> tuple[str, ...]:
        """Every member that is not an operator kernel, in archive order."""
        kernels = self.operator_members
        return tuple(m for m in self.members if m not in kernels)

    def members_for(
        self, operators: Iterable[str] | None, builtins: dict[str, Builtin]
    ) -> tuple[str, ...]:
        """The members a firmware registering ``operators`` (builtin names) links, in
        archive order; ``None``: every operator (the whole library)."""
        if operators is None:
            return self.members
        needed: set[str] = set()
        for name in operators:
            builtin = builtins.get(name)
            if builtin is None:
                raise ValueError(f"TFLM has no builtin operator {name!r} to build a kernel for")
            needed.update(self.defined_in[r] for r in builtin.registrations if r in self.defined_in)
        return tuple(m for m in self.members if m in needed or m not in self.operator_members)


def plan(members: list[str], excluded: Iterable[str], tflm: Path) -> Plan:
    """The :class:`Plan` of ``members`` (all of TFLM's objects, normalized) without those
    matching the make patterns ``excluded`` (relative to an object folder), with the
    registrations each operator kernel source under ``tflm`` defines."""
    patterns = [_make_pattern(p) for p in excluded]
    kept = tuple(m for m in members if not any(p.fullmatch(m.partition("/")[2]) for p in patterns))
    defined_in: dict[str, str] = {}
    for member in kept:
        if not member.startswith(_KERNELS):
            continue
        source = tflm / f"{member.partition('/')[2][: -len('.o')]}.cc"
        if not source.is_file():
            continue
        for name in _DEFINITION.findall(source.read_text(errors="replace")):
            if defined_in.setdefault(name, member) != member:
                raise ValueError(f"Register_{name} is defined in two TFLM kernels")
    return Plan(members=kept, defined_in=defined_in)
