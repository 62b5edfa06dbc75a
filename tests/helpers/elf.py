"""A 32-bit little-endian ELF read with the standard library: sections and symbols.

The tests check the firmware's flash and RAM figures against the linked file itself,
read here independently of the product (which asks ``arm-none-eabi-size``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

SHT_SYMTAB, SHT_NOBITS = 2, 8
SHF_WRITE, SHF_ALLOC = 0x1, 0x2


@dataclass(frozen=True)
class Section:
    name: str
    kind: int
    flags: int
    address: int
    offset: int
    size: int

    @property
    def allocated(self) -> bool:
        return bool(self.flags & SHF_ALLOC)

    @property
    def in_file(self) -> bool:
        """Bytes stored in the image (flash), not only reserved at run time (bss)."""
        return self.kind != SHT_NOBITS


@dataclass(frozen=True)
class Symbol:
    name: str
    value: int
    size: int
    section: int


class Elf:
    """Sections, symbols and the bytes at an address of one ELF32 file."""

    def __init__(self, path: Path) -> None:
        self.data = Path(path).read_bytes()
        if self.data[:6] != b"\x7fELF\x01\x01":
            raise ValueError(f"{path} is not a 32-bit little-endian ELF file")
        shoff, = struct.unpack_from("<I", self.data, 0x20)  # fmt: skip
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", self.data, 0x2E)
        raw = [struct.unpack_from("<10I", self.data, shoff + i * shentsize) for i in range(shnum)]
        names = raw[shstrndx]
        self.sections = [
            Section(self._string(names[4], r[0]), r[1], r[2], r[3], r[4], r[5]) for r in raw
        ]
        self.symbols: dict[str, Symbol] = {}
        for header in raw:
            if header[1] != SHT_SYMTAB:
                continue
            strings, offset, size, entsize = raw[header[6]][4], header[4], header[5], header[9]
            for at in range(offset, offset + size, entsize):
                name, value, sym_size, _, _, shndx = struct.unpack_from("<IIIBBH", self.data, at)
                if name:
                    symbol = Symbol(self._string(strings, name), value, sym_size, shndx)
                    self.symbols[symbol.name] = symbol

    def _string(self, table_offset: int, index: int) -> str:
        start = table_offset + index
        return self.data[start : self.data.index(b"\0", start)].decode()

    def bytes_of(self, symbol: str) -> bytes:
        """The initial bytes of a symbol stored in the file (a constant array, say)."""
        found = self.symbols[symbol]
        section = self.sections[found.section]
        start = section.offset + found.value - section.address
        return self.data[start : start + found.size]

    @property
    def flash_bytes(self) -> int:
        """Everything stored in the image: code, constants, initial values of data."""
        return sum(s.size for s in self.sections if s.allocated and s.in_file)

    @property
    def ram_bytes(self) -> int:
        """Everything writable at run time: data and bss."""
        return sum(s.size for s in self.sections if s.allocated and s.flags & SHF_WRITE)
