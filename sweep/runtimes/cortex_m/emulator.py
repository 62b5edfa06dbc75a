"""Run a bare-metal Cortex-M ELF in the Unicorn engine and count its instructions exactly.

Why count this way: Unicorn (QEMU's CPU core as a library) calls back once per
translated block, not once per instruction, so counting costs one Python call
per block (a few µs) instead of one per instruction, and a 12.5M-MAC ResNet-8
invoke emulates in seconds rather than minutes. A block is straight-line code
that always runs to its end (it ends at the first branch), so its instruction
count is a property of its bytes: decoded once from the Thumb encoding (a
halfword whose top five bits are 0b11101, 0b11110 or 0b11111 starts a 32-bit
instruction) and cached by (address, size). Instructions inside IT blocks whose
condition fails still count, as they do on the silicon (they retire as NOPs).

The same hook also records, per block, how often it ran and how often the next
block started right where it ended (it fell through instead of branching away):
what the block holds (loads, multiply-accumulates, ...) is decoded only after the
run, once per block (:mod:`.isa_classes`), so the instruction mix of a run
(:meth:`Run.mix`) costs the hook two counter updates, not a decode.

Nothing here knows about TFLM: the firmware and the host agree only on the
addresses of functions the firmware calls at interesting moments (``marks``),
read from the ELF's symbol table, and on the shared I/O region mapped at
:data:`IO_BASE`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import unicorn
from unicorn import arm_const

from sweep.runtimes.cortex_m.isa_classes import profile_block
from sweep.runtimes.cortex_m.mix import BlockRun, InstructionMix, mix_of

PAGE = 0x1000
FLASH_BASE, FLASH_BYTES = 0x0000_0000, 16 * 1024 * 1024
RAM_BASE, RAM_BYTES = 0x2000_0000, 16 * 1024 * 1024
IO_BASE = 0x6000_0000
"""Host <-> firmware exchange region (the Cortex-M "external RAM" range), see main.cc."""
SCS_BASE, SCS_BYTES = 0xE000_E000, 0x1000
"""System control space. Unicorn models no NVIC/SCB there, and its FPU is on from reset;
mapping the page as plain memory lets startup code write CPACR as it must on silicon."""

_PT_LOAD = 1
_WIDE_PREFIXES = (0b11101, 0b11110, 0b11111)


class EmulationError(RuntimeError):
    """The firmware faulted, ran away or stopped somewhere unexpected."""


class InstructionBudgetExceeded(EmulationError):
    """The firmware ran more instructions than it was allowed (a model that loops forever)."""

    def __init__(self, budget: int, pc: int) -> None:
        super().__init__(f"did not finish within {budget:,} instructions (pc=0x{pc:08x})")
        self.budget = budget


def _stop(uc: unicorn.Uc, _address: int, _size: int, _data: object) -> None:
    uc.emu_stop()


def page_round(n: int) -> int:
    return (n + PAGE - 1) // PAGE * PAGE


def thumb_instruction_count(code: bytes) -> int:
    """Number of Thumb/Thumb-2 instructions in a run of straight-line code."""
    count, i, end = 0, 0, len(code) - 1
    while i < end:
        top5 = code[i + 1] >> 3  # little endian: the high byte of the halfword
        i += 4 if top5 in _WIDE_PREFIXES else 2
        count += 1
    return count


@dataclass
class Elf:
    """The parts of an ELF32 little-endian executable that loading needs."""

    entry: int
    segments: list[tuple[int, bytes, int]]  # (load address, file bytes, memory size)


def read_elf(path: Path | bytes) -> Elf:
    data = path if isinstance(path, bytes) else Path(path).read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 1 or data[5] != 1:
        raise EmulationError(f"{path} is not a 32-bit little-endian ELF file")
    entry, phoff = struct.unpack_from("<II", data, 24)
    phentsize, phnum = struct.unpack_from("<HH", data, 42)
    segments = []
    for k in range(phnum):
        p_type, offset, _vaddr, paddr, filesz, memsz = struct.unpack_from(
            "<IIIIII", data, phoff + k * phentsize
        )
        if p_type == _PT_LOAD and memsz:
            segments.append((paddr, data[offset : offset + filesz], memsz))
    return Elf(entry=entry, segments=segments)


@dataclass
class Run:
    """What one emulation saw: the total, the running count at every mark, and per block
    how often it ran and fell through (at the end and at every mark), for :meth:`mix`."""

    instructions: int
    marks: list[tuple[str, int]] = field(default_factory=list)
    blocks: int = 0
    block_code: dict[tuple[int, int], bytes] = field(default_factory=dict, repr=False)
    block_counts: dict[tuple[int, int], tuple[int, int]] = field(default_factory=dict, repr=False)
    mark_counts: list[dict[tuple[int, int], tuple[int, int]]] = field(
        default_factory=list, repr=False
    )

    def mix(self, start: int | None = None, end: int | None = None) -> InstructionMix:
        """The instruction mix between mark ``start`` and mark ``end`` (indices into
        :attr:`marks`; ``None``: the start and the end of the run). Its total equals
        the difference of the two marks' running counts, instruction for instruction."""
        before = self.mark_counts[start] if start is not None else {}
        after = self.mark_counts[end] if end is not None else self.block_counts
        runs = []
        for key, (execs, falls) in after.items():
            was_execs, was_falls = before.get(key, (0, 0))
            if execs > was_execs:
                address = key[0]
                profile = profile_block(address, self.block_code[key])
                runs.append(BlockRun(profile, execs - was_execs, falls - was_falls))
        return mix_of(runs)


class CortexM:
    """One emulated Cortex-M core with the firmware loaded, ready to run once."""

    def __init__(self, elf_path: Path | bytes, cpu_model: int, io_bytes: int) -> None:
        elf = read_elf(elf_path)
        # Not UC_MODE_MCLASS: with it, Unicorn 2.1 ignores the model asked for and always
        # emulates a Cortex-M33. The model itself makes the core M-profile, and with the
        # right model an M0+ build really runs on ARMv6-M (Thumb-2 would fault).
        uc = unicorn.Uc(unicorn.UC_ARCH_ARM, unicorn.UC_MODE_THUMB)
        uc.ctl_set_cpu_model(cpu_model)
        if uc.ctl_get_cpu_model() != cpu_model:
            raise EmulationError(f"Unicorn did not select CPU model {cpu_model}")
        uc.mem_map(FLASH_BASE, FLASH_BYTES)
        uc.mem_map(RAM_BASE, RAM_BYTES)
        uc.mem_map(IO_BASE, page_round(max(io_bytes, PAGE)))
        uc.mem_map(SCS_BASE, SCS_BYTES)
        for address, content, memsz in elf.segments:
            if not (address >= FLASH_BASE and address + memsz <= FLASH_BASE + FLASH_BYTES) and not (
                address >= RAM_BASE and address + memsz <= RAM_BASE + RAM_BYTES
            ):
                raise EmulationError(f"ELF segment at 0x{address:08x} is outside flash and RAM")
            uc.mem_write(address, content)
        self.uc = uc
        self.entry = elf.entry
        self._hooked_blocks = False

    def run(
        self,
        stop_at: int,
        marks: dict[int, str] | None = None,
        timeout_s: float = 600.0,
        max_instructions: int | None = None,
        *,
        resume: bool = False,
    ) -> Run:
        """Execute from the entry point until the PC reaches ``stop_at``.

        ``marks`` maps function addresses to names: each time execution enters
        one, the instructions executed so far are recorded, so the difference
        between two marks is exactly what ran between them. ``max_instructions``:
        stop with :class:`InstructionBudgetExceeded` once more have run (a model that
        loops forever must not hold a sweep; checked once per block). ``resume``: go on
        from where :meth:`advance` stopped instead of starting over; only what runs
        from there is counted. ``timeout_s`` bounds the wall time as well.
        """
        uc, marks = self.uc, dict(marks or {})
        budget = max_instructions if max_instructions is not None else 1 << 62
        state = Run(instructions=0)
        seen, snapshots, code = state.marks, state.mark_counts, state.block_code
        # key -> [instructions in the block, executions, fall-throughs into the next block]
        records: dict[tuple[int, int], list[int]] = {}
        count, blocks, over_budget = 0, 0, False
        last: list[int] = [0, 0, 0]
        last_end = -1

        def on_block(uc_: unicorn.Uc, address: int, size: int, _data: object) -> None:
            nonlocal count, blocks, last, last_end, over_budget
            key = (address, size)
            rec = records.get(key)
            if rec is None:
                block = code[key] = bytes(uc_.mem_read(address, size))
                rec = records[key] = [thumb_instruction_count(block), 0, 0]
            if address == last_end:
                last[2] += 1
            if address in marks:
                seen.append((marks[address], count))
                snapshots.append({k: (r[1], r[2]) for k, r in records.items()})
            rec[1] += 1
            count += rec[0]
            blocks += 1
            last, last_end = rec, address + size
            if count > budget:
                over_budget = True
                uc_.emu_stop()

        start = self._start_pc(resume)
        hook = uc.hook_add(unicorn.UC_HOOK_BLOCK, on_block)
        # Blocks translated before the hook existed would skip it: translate all afresh.
        self._fresh_translation(stop_at, everything=True)
        self._hooked_blocks = True
        try:
            uc.emu_start(start, stop_at & ~1, timeout=int(timeout_s * 1e6))
        except unicorn.UcError as exc:
            pc = uc.reg_read(arm_const.UC_ARM_REG_PC)
            raise EmulationError(
                f"the firmware faulted at pc=0x{pc:08x} after {count} instructions: {exc}"
            ) from exc
        finally:
            uc.hook_del(hook)
            state.instructions, state.blocks = count, blocks
            state.block_counts = {k: (r[1], r[2]) for k, r in records.items()}
        pc = uc.reg_read(arm_const.UC_ARM_REG_PC)
        if over_budget:
            raise InstructionBudgetExceeded(budget, pc)
        if pc != stop_at & ~1:
            raise EmulationError(
                f"the firmware did not finish within {timeout_s:.0f} s "
                f"(pc=0x{pc:08x}, {count} instructions)"
            )
        return state

    def advance(
        self,
        until: int,
        max_instructions: int,
        *,
        resume: bool,
        also: tuple[int, ...] = (),
        timeout_s: float = 600.0,
    ) -> int:
        """Execute without counting (no block hook: QEMU's full speed) until the PC
        reaches ``until`` or one of ``also``; return where it stopped.
        :class:`InstructionBudgetExceeded` after ``max_instructions``.

        What a run needs counted exactly goes through :meth:`run`; the stretches in
        between (start-up, warm-up, the images' outputs) need only an end and a
        budget, which Unicorn's own instruction counter enforces.
        """
        uc = self.uc
        start = self._start_pc(resume)
        stops = [uc.hook_add(unicorn.UC_HOOK_CODE, _stop, begin=a & ~1, end=a & ~1) for a in also]
        # Blocks a counting run translated carry its (now removed) hook: drop them once.
        self._fresh_translation(until, *also, everything=self._hooked_blocks)
        self._hooked_blocks = False
        try:
            uc.emu_start(
                start, until & ~1, timeout=int(timeout_s * 1e6), count=max(1, max_instructions)
            )
        except unicorn.UcError as exc:
            pc = uc.reg_read(arm_const.UC_ARM_REG_PC)
            raise EmulationError(f"the firmware faulted at pc=0x{pc:08x}: {exc}") from exc
        finally:
            for hook in stops:
                uc.hook_del(hook)
        pc = uc.reg_read(arm_const.UC_ARM_REG_PC)
        if pc not in (until & ~1, *(a & ~1 for a in also)):
            raise InstructionBudgetExceeded(max_instructions, pc)
        return pc

    def _start_pc(self, resume: bool) -> int:
        """Where execution (re)starts: the entry with a fresh stack, or the current PC."""
        if resume:
            return self.uc.reg_read(arm_const.UC_ARM_REG_PC) | 1
        self.uc.reg_write(arm_const.UC_ARM_REG_SP, RAM_BASE + RAM_BYTES)
        return self.entry | 1

    def _fresh_translation(self, *stops: int, everything: bool) -> None:
        """Drop translated blocks: those at ``stops`` (Unicorn checks a stop address, and
        installs a range hook, only when translating), or ``everything``."""
        if everything:
            self.uc.ctl_flush_tb()
        for address in stops:
            self.uc.ctl_remove_cache(address & ~1, (address & ~1) + 2)

    def read(self, address: int, size: int) -> bytes:
        return bytes(self.uc.mem_read(address, size))

    def write(self, address: int, data: bytes | bytearray | Iterable[int]) -> None:
        self.uc.mem_write(address, bytes(data))
