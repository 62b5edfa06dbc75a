"""Symbols and extents of an ELF32 image, read in Python from bytes already checked.

The runner's ELF comes from the firmware cache; reading what the host needs (the
addresses of the harness's marks, where flash and RAM end) straight from the
verified bytes means no tool is run on cache content and nothing is read twice.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

_SHT_SYMTAB = 2
_PT_LOAD = 1


class ElfError(ValueError):
    """Not the little-endian ELF32 executable expected."""


@dataclass(frozen=True)
class ElfImage:
    """``symbols``: name -> address of every named symbol; ``stored``: (load address,
    bytes in the file) of every loadable segment, i.e. what occupies flash."""

    symbols: dict[str, int]
    stored: tuple[tuple[int, int], ...]

    def stored_end(self, base: int, size: int) -> int:
        """First address past everything stored in [base, base + size)."""
        ends = [a + n for a, n in self.stored if base <= a < base + size]
        return max(ends, default=base)


def _string(table: bytes, offset: int) -> str:
    end = table.find(b"\0", offset)
    return table[offset : end if end >= 0 else len(table)].decode("ascii", "replace")


def parse(data: bytes) -> ElfImage:
    """The symbol table and loadable segments of an ELF32 little-endian file."""
    if len(data) < 52 or data[:4] != b"\x7fELF" or data[4] != 1 or data[5] != 1:
        raise ElfError("not a 32-bit little-endian ELF file")
    try:
        phoff, shoff = struct.unpack_from("<II", data, 28)
        phentsize, phnum, shentsize, shnum = struct.unpack_from("<HHHH", data, 42)
        stored = []
        for k in range(phnum):
            p_type, _o, _v, paddr, filesz = struct.unpack_from(
                "<IIIII", data, phoff + k * phentsize
            )
            if p_type == _PT_LOAD and filesz:
                stored.append((paddr, filesz))
        sections = [
            struct.unpack_from("<IIIIIIIIII", data, shoff + k * shentsize) for k in range(shnum)
        ]
        symbols: dict[str, int] = {}
        for _name, sh_type, _f, _a, offset, size, link, _i, _al, entsize in sections:
            if sh_type != _SHT_SYMTAB or entsize != 16:
                continue
            strtab = sections[link]
            names = data[strtab[4] : strtab[4] + strtab[5]]
            for at in range(offset, offset + size, 16):
                st_name, st_value = struct.unpack_from("<II", data, at)
                if st_name:
                    symbols.setdefault(_string(names, st_name), st_value)
    except (struct.error, IndexError) as error:
        raise ElfError(f"truncated or malformed ELF file ({error})") from None
    return ElfImage(symbols=symbols, stored=tuple(stored))
