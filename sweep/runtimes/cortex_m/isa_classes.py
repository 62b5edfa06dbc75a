"""What kind of instructions a translated block holds: the static half of the instruction mix.

The emulator counts how often each translated block runs (and whether it was left
through its final branch or by falling through); everything else about the block
is a property of its bytes, decoded here once per block and cached. A block's
:class:`BlockProfile` says how many instructions of each class it holds, how many
registers its load/store-multiples move, and a few adjacent-pair facts that cost
cycles on some cores (a load or store right after a load, an address computed by
the instruction just before, a loaded value used at once, pairs a dual-issue core
can issue together). Multiplying the profiles by the execution counts gives the
mix of a whole run (:mod:`.mix`); :mod:`.timing` turns a mix into cycles.

Decoding uses Capstone (the disassembler sibling of Unicorn) in Thumb + M-class
mode; its instruction ids are condition-independent, which is why they, not the
mnemonics, are classified. Pair facts look only inside a block: a block ends at
the first branch, so pairs across a block boundary are rare and ignored.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

import capstone
from capstone import arm_const as A

INSTRUCTION_CLASSES: tuple[str, ...] = (
    "alu",  # data processing: MOV/ADD/CMP/logic/shift/extend/bitfield/saturate/CLZ/REV/ADR
    "mul",  # MUL/MULS (32 x 32 -> 32)
    "mac",  # MLA/MLS and the DSP multiplies: SMLA<x><y>, SMLAD, SMLAW, SMUAD, SMUL<x><y>, SMMLA...
    "mul_long",  # SMULL/UMULL/SMLAL/UMLAL/SMLALD/UMAAL (64-bit result)
    "simd",  # DSP extension, no multiply: SADD16, QADD, SXTB16, SXTAB16, PKHBT, SEL, USAD8...
    "div",  # SDIV/UDIV
    "load",  # single LDR/LDRB/LDRH/LDRSB/LDRSH/LDREX (LDR pc included)
    "store",  # single STR/STRB/STRH/STREX
    "load_double",  # LDRD
    "store_double",  # STRD
    "load_multiple",  # LDM/POP
    "store_multiple",  # STM/PUSH
    "branch",  # unconditional B
    "cond_branch",  # B<cond>, CBZ/CBNZ
    "call",  # BL/BLX
    "indirect_branch",  # BX, MOV/ADD pc, TBB/TBH
    "it",  # IT
    "fpu",  # VADD/VSUB/VMUL/VNEG/VABS/VCMP/VCVT/VMOV (FP register to FP register), VSEL...
    "fpu_mac",  # VMLA/VMLS/VFMA/VFMS/VNMLA/VNMLS/VFNMA/VFNMS
    "fpu_div",  # VDIV/VSQRT
    "fpu_load",  # VLDR
    "fpu_store",  # VSTR
    "fpu_multiple",  # VLDM/VSTM/VPUSH/VPOP
    "fpu_move",  # VMOV core <-> FP register, VMRS/VMSR
    "system",  # MRS/MSR/CPS/DMB/DSB/ISB/SVC/BKPT/WFI/WFE/SEV/CLREX/UDF
    "nop",  # NOP/YIELD
)
"""Instruction classes: every executed instruction is in exactly one, so they sum to the total."""

PAIR_FEATURES: tuple[str, ...] = (
    "wide",  # 32-bit instructions (the others are 16-bit): code bytes = 2 x (instructions + wide)
    "ldm_registers",  # registers moved by LDM/POP (PC included)
    "stm_registers",  # registers moved by STM/PUSH
    "fpu_words",  # 32-bit words moved by VLDM/VSTM/VPUSH/VPOP
    "pc_loads",  # loads writing PC (POP {..., pc}, LDR pc, LDM with pc): a branch by load
    "ls_after_load",  # load/store single right after a single LDR that does not feed its address
    "agu_after_alu",  # load/store whose address registers the instruction just before computed
    "load_use",  # load single/double whose result the next instruction reads
    "narrow_load_use",  # the same for byte/halfword loads (a slower path on the Cortex-M7)
    "store_then_memory",  # store single followed by another load/store
    "m7_pairs",  # instruction pairs the Cortex-M7's dual issue can issue together (see below)
)
"""Static per-block facts that are not instruction classes (they do not sum to anything)."""

BRANCH_FEATURES: tuple[str, ...] = (
    "taken",  # the block left through its final control transfer
    "taken_cond",  # ... which was a conditional branch
    "taken_call",  # ... a call (BL/BLX)
    "taken_return",  # ... a load into PC or BX (returns, mostly)
    "taken_other",  # ... anything else (B, TBB/TBH, MOV pc)
    "not_taken",  # a conditional final branch fell through
    "loop_exits",  # ... and it branched backwards (a loop's back edge not taken: a loop exit)
)
"""Dynamic facts about leaving blocks, counted by the emulator (taken vs fallen through)."""

FEATURES: tuple[str, ...] = INSTRUCTION_CLASSES + PAIR_FEATURES
"""The static vector of a block, in this order."""

_MD_CACHE: dict[bool, capstone.Cs] = {}


def _disassembler() -> capstone.Cs:
    md = _MD_CACHE.get(True)
    if md is None:
        md = capstone.Cs(capstone.CS_ARCH_ARM, capstone.CS_MODE_THUMB | capstone.CS_MODE_MCLASS)
        md.detail = True
        _MD_CACHE[True] = md
    return md


def _ids(*names: str) -> frozenset[int]:
    """Capstone instruction ids by name; names this Capstone lacks are skipped."""
    return frozenset(getattr(A, f"ARM_INS_{n}") for n in names if hasattr(A, f"ARM_INS_{n}"))


_MUL = _ids("MUL")
_MAC = _ids(
    "MLA", "MLS", "SMLABB", "SMLABT", "SMLATB", "SMLATT", "SMLAD", "SMLADX", "SMLAWB", "SMLAWT",
    "SMLSD", "SMLSDX", "SMMLA", "SMMLAR", "SMMLS", "SMMLSR", "SMMUL", "SMMULR", "SMUAD",
    "SMUADX", "SMULBB", "SMULBT", "SMULTB", "SMULTT", "SMULWB", "SMULWT", "SMUSD", "SMUSDX",
    "USADA8",
)  # fmt: skip
_MUL_LONG = _ids(
    "SMULL", "UMULL", "SMLAL", "UMLAL", "SMLALBB", "SMLALBT", "SMLALTB", "SMLALTT", "SMLALD",
    "SMLALDX", "SMLSLD", "SMLSLDX", "UMAAL",
)  # fmt: skip
_SIMD = _ids(
    "SADD16", "SADD8", "SASX", "SSAX", "SSUB16", "SSUB8", "QADD", "QADD16", "QADD8", "QASX",
    "QDADD", "QDSUB", "QSAX", "QSUB", "QSUB16", "QSUB8", "SHADD16", "SHADD8", "SHASX", "SHSAX",
    "SHSUB16", "SHSUB8", "UADD16", "UADD8", "UASX", "USAX", "USUB16", "USUB8", "UHADD16",
    "UHADD8", "UHASX", "UHSAX", "UHSUB16", "UHSUB8", "UQADD16", "UQADD8", "UQASX", "UQSAX",
    "UQSUB16", "UQSUB8", "USAD8", "SEL", "PKHBT", "PKHTB", "SXTB16", "SXTAB16", "UXTB16",
    "UXTAB16", "SSAT16", "USAT16",
)  # fmt: skip
_DIV = _ids("SDIV", "UDIV")
_LOAD = _ids(
    "LDR", "LDRB", "LDRH", "LDRSB", "LDRSH", "LDRT", "LDRBT", "LDRHT", "LDRSBT", "LDRSHT",
    "LDREX", "LDREXB", "LDREXH", "LDA", "LDAB", "LDAH", "LDAEX", "LDAEXB", "LDAEXH",
)  # fmt: skip
_NARROW_LOAD = _ids("LDRB", "LDRH", "LDRSB", "LDRSH", "LDRBT", "LDRHT", "LDRSBT", "LDRSHT")
_STORE = _ids(
    "STR", "STRB", "STRH", "STRT", "STRBT", "STRHT", "STREX", "STREXB", "STREXH", "STL", "STLB",
    "STLH", "STLEX", "STLEXB", "STLEXH",
)  # fmt: skip
_LOAD_DOUBLE = _ids("LDRD", "LDREXD")
_STORE_DOUBLE = _ids("STRD", "STREXD")
_LOAD_MULTIPLE = _ids("LDM", "LDMDB", "LDMIA", "POP")
_STORE_MULTIPLE = _ids("STM", "STMDB", "STMIA", "PUSH")
_BRANCH = _ids("B")
_CBZ = _ids("CBZ", "CBNZ")
_CALL = _ids("BL", "BLX")
_INDIRECT = _ids("BX", "TBB", "TBH", "BXJ")
_IT = _ids("IT")
_FPU_MAC = _ids("VMLA", "VMLS", "VNMLA", "VNMLS", "VFMA", "VFMS", "VFNMA", "VFNMS")
_FPU_DIV = _ids("VDIV", "VSQRT")
_FPU_LOAD = _ids("VLDR")
_FPU_STORE = _ids("VSTR")
_FPU_MULTIPLE = _ids("VLDMIA", "VLDMDB", "VSTMIA", "VSTMDB", "VPUSH", "VPOP")
_FPU_MULTIPLE_LOADS = _ids("VLDMIA", "VLDMDB", "VPOP")
_FPU_MOVE = _ids("VMRS", "VMSR", "FMSTAT")
_SYSTEM = _ids(
    "MRS", "MSR", "CPS", "DMB", "DSB", "ISB", "SVC", "BKPT", "WFI", "WFE", "SEV", "CLREX", "UDF",
    "SG", "TT", "TTT", "TTA", "TTAT", "CSDB",
)  # fmt: skip
_NOP = _ids("NOP", "YIELD", "HINT")  # Capstone 5 decodes the 16-bit NOP as HINT

_PC = A.ARM_REG_PC
_SP_OR_PC = {A.ARM_REG_SP, A.ARM_REG_PC}
_CORE_REGS = {getattr(A, f"ARM_REG_R{i}") for i in range(13)} | {A.ARM_REG_SP, A.ARM_REG_LR}
_FP_D_REGS = {getattr(A, f"ARM_REG_D{i}") for i in range(32)}


@dataclass(frozen=True)
class BlockProfile:
    """The static facts of one translated block.

    ``counts``: one number per :data:`FEATURES` entry. ``exit``: how the block
    is left when its last instruction transfers control (``None`` if it never
    does: the block just ends, and execution falls through); one of ``"cond"``,
    ``"call"``, ``"return"``, ``"other"``. ``backward``: the final conditional
    branch jumps backwards (a loop's back edge).
    """

    instructions: int
    counts: tuple[int, ...]
    exit: str | None
    backward: bool


@dataclass(frozen=True)
class _Insn:
    """The facts of one decoded instruction that classification and pairing need."""

    address: int
    size: int
    cls: str
    reads: frozenset[int]
    writes: frozenset[int]
    address_regs: frozenset[int]  # base/index registers of a memory access (not SP/PC)
    load_dests: frozenset[int]  # registers a load fills with data (not its base write-back)
    writes_pc: bool
    list_regs: int  # registers (32-bit words) moved by a load/store multiple
    writeback: bool
    narrow_load: bool
    target: int | None  # immediate branch target
    conditional: bool  # a condition other than AL (a B<cond>, or inside an IT block)
    is_bx: bool


_PUSH_POP = _ids("PUSH", "POP", "VPUSH", "VPOP")
_MULTIPLE = _LOAD_MULTIPLE | _STORE_MULTIPLE | _FPU_MULTIPLE
_WRITE = capstone.CS_AC_WRITE


def _facts(insn: capstone.CsInsn) -> _Insn:
    """Read Capstone's detail once (each attribute access re-reads it, slowly)."""
    ops = list(insn.operands)
    read_list, write_list = insn.regs_access()
    reads, writes, address_regs = set(read_list), set(write_list), set()
    reg_ops = []
    for op in ops:
        if op.type == A.ARM_OP_REG:
            reg_ops.append(op.reg)
            if op.access != _WRITE:  # Capstone leaves some read operands unmarked (access 0)
                reads.add(op.reg)
            if op.access & _WRITE:
                writes.add(op.reg)
        elif op.type == A.ARM_OP_MEM:
            base, index = op.mem.base, op.mem.index
            address_regs.update(r for r in (base, index) if r)
    i = insn.id
    if i in _MULTIPLE and i not in _PUSH_POP and reg_ops:
        address_regs.add(reg_ops[0])
        listed = reg_ops[1:]
    else:
        listed = reg_ops
    reads |= address_regs
    address_regs -= _SP_OR_PC
    writes_pc = _PC in writes
    load_dests = {r for op, r in ((op, op.reg) for op in ops if op.type == A.ARM_OP_REG)
                  if op.access & _WRITE} - address_regs  # fmt: skip
    target = next((op.imm for op in ops if op.type == A.ARM_OP_IMM), None)
    return _Insn(
        address=insn.address,
        size=insn.size,
        cls=_cls(insn, ops, writes_pc),
        reads=frozenset(reads),
        writes=frozenset(writes),
        address_regs=frozenset(address_regs),
        load_dests=frozenset(load_dests),
        writes_pc=writes_pc,
        list_regs=sum(2 if r in _FP_D_REGS else 1 for r in listed) if i in _MULTIPLE else 0,
        writeback=bool(insn.writeback),
        narrow_load=i in _NARROW_LOAD,
        target=target,
        conditional=insn.cc not in (A.ARM_CC_AL, A.ARM_CC_INVALID) or i in _CBZ,
        is_bx=i == A.ARM_INS_BX,
    )


def _cls(insn: capstone.CsInsn, ops: list, writes_pc: bool) -> str:
    """The instruction class of one decoded instruction."""
    i = insn.id
    if i in _LOAD:
        return "load"
    if i in _STORE:
        return "store"
    if i in _SIMD:
        return "simd"
    if i in _MAC:
        return "mac"
    if i in _MUL:
        return "mul"
    if i in _MUL_LONG:
        return "mul_long"
    if i in _LOAD_MULTIPLE:
        return "load_multiple"
    if i in _STORE_MULTIPLE:
        return "store_multiple"
    if i in _LOAD_DOUBLE:
        return "load_double"
    if i in _STORE_DOUBLE:
        return "store_double"
    if i in _BRANCH:
        conditional = insn.cc not in (A.ARM_CC_AL, A.ARM_CC_INVALID)
        return "cond_branch" if conditional else "branch"
    if i in _CBZ:
        return "cond_branch"
    if i in _CALL:
        return "call"
    if i in _INDIRECT:
        return "indirect_branch"
    if i in _IT:
        return "it"
    if i in _DIV:
        return "div"
    if i in _FPU_MAC:
        return "fpu_mac"
    if i in _FPU_DIV:
        return "fpu_div"
    if i in _FPU_LOAD:
        return "fpu_load"
    if i in _FPU_STORE:
        return "fpu_store"
    if i in _FPU_MULTIPLE:
        return "fpu_multiple"
    if i in _FPU_MOVE:
        return "fpu_move"
    if i in _SYSTEM:
        return "system"
    if i in _NOP:
        return "nop"
    if insn.mnemonic.startswith("v"):
        if i == A.ARM_INS_VMOV and any(
            op.type == A.ARM_OP_REG and op.reg in _CORE_REGS for op in ops
        ):
            return "fpu_move"
        return "fpu"
    if writes_pc:  # MOV pc, ADD pc
        return "indirect_branch"
    return "alu"


@functools.lru_cache(maxsize=1 << 18)
def _decode_one(address: int, raw: bytes) -> _Insn:
    (insn,) = _disassembler().disasm(raw, address, count=1)
    return _facts(insn)


def _decode(address: int, code: bytes) -> list[_Insn]:
    """The block's instructions; each one decoded in detail once per process (blocks
    overlap: a branch into the middle of a block starts a new, shorter block)."""
    out = []
    for addr, size, _mnemonic, _ops in _disassembler().disasm_lite(code, address):
        offset = addr - address
        out.append(_decode_one(addr, code[offset : offset + size]))
    return out


# Cortex-M7 issue rules (see _m7_pairs): which classes need which unit.
_M7_SINGLE_ISSUE = frozenset(
    {"load_double", "store_double", "load_multiple", "store_multiple", "div", "fpu_multiple",
     "system", "fpu_div", "it"}
)  # fmt: skip
_M7_MEMORY_LOAD = frozenset({"load", "fpu_load"})
_M7_MEMORY_STORE = frozenset({"store", "fpu_store"})
_M7_MAC_UNIT = frozenset({"mul", "mac", "mul_long"})
_M7_BRANCH_UNIT = frozenset({"branch", "cond_branch", "call", "indirect_branch"})
_M7_FPU = frozenset({"fpu", "fpu_mac", "fpu_load", "fpu_store", "fpu_move"})


def _m7_can_pair(first: _Insn, second: _Insn) -> bool:
    """Can a Cortex-M7 issue ``second`` in the same cycle as ``first`` (in program order)?

    From the issue resources of LLVM's Cortex-M7 model (ARMScheduleM7.td, Arm's own
    contribution; the Cortex-M7 TRM publishes no cycle tables): two ALUs, two load
    ports, one store port, one MAC, one branch unit, one FPU; LDRD/STRD, LDM/STM,
    divides, VLDM/VSTM and system instructions issue alone; DSP SIMD instructions
    must start a pair; the second instruction may not read what the first writes
    (except a base-register update, which is bypassed, and flags read by a branch).
    """
    a, b = first.cls, second.cls
    if a in _M7_SINGLE_ISSUE or b in _M7_SINGLE_ISSUE or b == "simd":
        return False
    if a in _M7_MEMORY_STORE and b in _M7_MEMORY_STORE:
        return False
    for unit in (_M7_MAC_UNIT, _M7_BRANCH_UNIT, _M7_FPU):
        if a in unit and b in unit:
            return False
    if a in _M7_BRANCH_UNIT:  # the pair ends at a control transfer
        return False
    written = first.writes
    if first.writeback:  # a base-register update is bypassable (LLVM's M7BaseUpdate)
        written = written - first.address_regs
    if b in _M7_BRANCH_UNIT:  # a branch resolves late enough to use fresh flags
        written = written - _FLAGS
    return not (written & second.reads)


_FLAGS = frozenset({A.ARM_REG_CPSR, A.ARM_REG_APSR_NZCV, A.ARM_REG_ITSTATE})


def profile_block(address: int, code: bytes) -> BlockProfile:
    """Decode one straight-line run of Thumb code and count its classes and pair facts."""
    return _profile(address, bytes(code))


@functools.lru_cache(maxsize=1 << 16)
def _profile(address: int, code: bytes) -> BlockProfile:
    insns = _decode(address, code)
    decoded = sum(i.size for i in insns)
    if decoded != len(code):
        raise ValueError(
            f"Capstone decoded {decoded} of the {len(code)} bytes of the block at 0x{address:08x}"
        )
    counts = dict.fromkeys(FEATURES, 0)
    for insn in insns:
        cls = insn.cls
        counts[cls] += 1
        counts["wide"] += insn.size == 4
        if cls == "load_multiple":
            counts["ldm_registers"] += insn.list_regs
        elif cls == "store_multiple":
            counts["stm_registers"] += insn.list_regs
        elif cls == "fpu_multiple":
            counts["fpu_words"] += insn.list_regs
        if cls in ("load", "load_multiple") and insn.writes_pc:
            counts["pc_loads"] += 1
    for prev, cur in itertools.pairwise(insns):
        pcls, ccls = prev.cls, cur.cls
        if ccls in _MEMORY_SINGLE and pcls == "load" and not (prev.load_dests & cur.address_regs):
            counts["ls_after_load"] += 1
        if ccls in _MEMORY_INTEGER and pcls in _DATA_PROCESSING and prev.writes & cur.address_regs:
            counts["agu_after_alu"] += 1
        if pcls in ("load", "load_double") and prev.load_dests & cur.reads:
            counts["load_use"] += 1
            if prev.narrow_load:
                counts["narrow_load_use"] += 1
        if pcls == "store" and ccls in _MEMORY_INTEGER:
            counts["store_then_memory"] += 1
    k = 0
    while k + 1 < len(insns):  # greedy in-order pairing, as an in-order dual-issue core does
        if _m7_can_pair(insns[k], insns[k + 1]):
            counts["m7_pairs"] += 1
            k += 2
        else:
            k += 1
    last = insns[-1]
    exit_kind, backward = None, False
    transfers = last.cls in _CONTROL or last.writes_pc
    if transfers and last.conditional:
        exit_kind = "cond"
        backward = last.target is not None and last.target <= last.address
    elif last.cls == "call":
        exit_kind = "call"
    elif (last.writes_pc and last.cls in ("load", "load_multiple")) or last.is_bx:
        exit_kind = "return"
    elif transfers:
        exit_kind = "other"
    return BlockProfile(
        instructions=len(insns),
        counts=tuple(counts[f] for f in FEATURES),
        exit=exit_kind,
        backward=backward,
    )


_MEMORY_SINGLE = ("load", "store")
_MEMORY_INTEGER = ("load", "store", "load_double", "store_double", "load_multiple",
                   "store_multiple")  # fmt: skip
_DATA_PROCESSING = ("alu", "mul", "mac", "simd", "mul_long")
_CONTROL = ("branch", "cond_branch", "call", "indirect_branch")
