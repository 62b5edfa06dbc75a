"""Hostile model files and planted cache entries against the Cortex-M path.

Every hostile input is made here by the test itself: a model that loops forever, a
model whose operator table holds C++ in a custom name or a code no schema knows, a
firmware-cache entry whose build.json would run a shell through the compiler, a lock
file planted as a symlink, entries damaged in every way a shared folder allows, and a
cache folder outside the outputs folder. The module imports at its top only what the
code before this hardening already had, so each case runs (and fails) against it too.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import flatbuffers
import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema
from helpers.system import needs_cortex_m

from sweep.runtimes.bundle import resolver_method, write_bundle
from sweep.runtimes.cortex_m import build_library, emulate
from sweep.runtimes.cortex_m.library import cache_dir, cache_root
from sweep.runtimes.cortex_m.run import model_operators
from sweep.runtimes.flatbuffer import operator_codes, operator_names
from sweep.settings import ConfigError

CPU = "cortex-m4f"
HOSTILE = b'X\n#include "/etc/hostname"\nint pwned = 1; /* \xff\xfe\\'


def with_operator_codes(model: bytes, *codes: tuple[int, bytes | None], use: int | None = None):
    """``model`` with extra operator-table entries (builtin code, custom name); ``use``: make
    operator 0 of subgraph 0 refer to the extra entry at that position."""
    m = schema.ModelT.InitFromPackedBuf(model, 0)
    first = len(m.operatorCodes)
    for builtin, custom in codes:
        code = schema.OperatorCodeT()
        code.builtinCode = builtin
        code.deprecatedBuiltinCode = min(builtin, 127)
        code.customCode = custom
        m.operatorCodes.append(code)
    if use is not None:
        m.subgraphs[0].operators[0].opcodeIndex = first + use
    builder = flatbuffers.Builder(0)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


# ------------------------------------------------------------------ names in generated C++


def test_a_custom_name_never_becomes_code_in_the_bundle(converted, tmp_path: Path) -> None:
    model = with_operator_codes(converted["int8"], (schema.BuiltinOperator.CUSTOM, HOSTILE))
    paths = write_bundle(model, tmp_path, arena_bytes=16_000)  # no UnicodeEncodeError
    for path in paths:
        text = path.read_text(encoding="ascii")
        assert "pwned" not in text or all(
            line.startswith(("//", "CUSTOM:")) for line in text.splitlines() if "pwned" in line
        )
        assert '#include "/etc/hostname"' not in text
        for line in text.splitlines():
            assert not line.rstrip().endswith("\\"), line  # no line splice into the next
    resolver = (tmp_path / "micro_op_resolver.h").read_text()
    assert "// Custom operator, register it yourself: X\\x0a\\x23include" in resolver
    assert "CUSTOM:X\\x0a" in (tmp_path / "operators.txt").read_text()


def test_an_unknown_builtin_code_is_a_comment_not_a_call(converted, tmp_path: Path) -> None:
    model = with_operator_codes(converted["int8"], (250, None))
    write_bundle(model, tmp_path, arena_bytes=16_000)
    resolver = (tmp_path / "micro_op_resolver.h").read_text()
    assert "AddBuiltin250" not in resolver
    assert "Builtin operator code 250 is not in this schema" in resolver
    assert "BUILTIN_250" in operator_names(model)
    with pytest.raises(ValueError, match="not a builtin operator name"):
        resolver_method("X(); system")


@pytest.mark.needs("host_compilers")
def test_the_hostile_resolver_preprocesses_to_no_code_of_the_file(converted, tmp_path) -> None:
    """What the compiler sees of the resolver holds nothing from the model file."""
    model = with_operator_codes(converted["int8"], (schema.BuiltinOperator.CUSTOM, HOSTILE))
    write_bundle(model, tmp_path, arena_bytes=16_000)
    stub = tmp_path / "tensorflow" / "lite" / "micro" / "micro_mutable_op_resolver.h"
    stub.parent.mkdir(parents=True)
    stub.write_text("")
    out = subprocess.run(
        ["g++", "-E", "-P", f"-I{tmp_path}", str(tmp_path / "micro_op_resolver.h")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "pwned" not in out and "hostname" not in out


@needs_cortex_m
@pytest.mark.slow
def test_a_model_with_a_hostile_unused_custom_code_is_emulated_like_the_clean_one(
    converted, tmp_path: Path
) -> None:
    from sweep.runtimes.cortex_m import emulate_model

    clean = converted["int8"]
    hostile = with_operator_codes(clean, (schema.BuiltinOperator.CUSTOM, HOSTILE), (250, None))
    inputs = np.zeros((1, 28, 28, 1), np.int8)
    a = emulate_model(clean, CPU, inputs, arena_bytes=16_000)
    b = emulate_model(hostile, CPU, inputs, arena_bytes=16_000)
    assert a.emulated and b.emulated, (a.reason, b.reason)
    assert b.instructions == a.instructions
    assert b.firmware_ram_bytes == a.firmware_ram_bytes
    assert b.firmware_flash_bytes == a.firmware_flash_bytes + len(hostile) - len(clean)


@needs_cortex_m
@pytest.mark.slow
@pytest.mark.parametrize(
    ("code", "says"),
    [
        ((schema.BuiltinOperator.CUSTOM, b"MyOp"), "custom operator MyOp"),
        ((250, None), "builtin operator code 250"),
    ],
)
def test_an_operator_without_a_kernel_is_a_verdict_not_an_error(converted, code, says) -> None:
    from sweep.runtimes.cortex_m import emulate_model

    model = with_operator_codes(converted["int8"], code, use=0)
    result = emulate_model(model, CPU, np.zeros((1, 28, 28, 1), np.int8), arena_bytes=16_000)
    assert not result.emulated and says in result.reason
    assert "\n" not in result.reason


# ------------------------------------------------------------------ a model that never ends


def forever_model() -> bytes:
    """A WHILE loop whose condition stays true: y grows without end and y > -1 holds."""
    import tensorflow as tf

    import sweep  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)

    @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32)])
    def forever(x):
        return tf.while_loop(lambda y: tf.reduce_max(y) > -1.0, lambda y: (y + 1.0,), [x])[0]

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [forever.get_concrete_function()], forever
    )
    return converter.convert()


def _children() -> set[int]:
    me = str(os.getpid())
    found = set()
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(
                line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line
            )
        except OSError:
            continue
        if fields.get("PPid", "").strip() == me:
            found.add(int(status.parent.name))
    return found


@needs_cortex_m
@pytest.mark.slow
def test_a_model_that_loops_forever_ends_within_its_budget_with_a_verdict(tmp_path) -> None:
    model = forever_model()
    assert "WHILE" in operator_names(model)
    write_bundle(model, tmp_path, arena_bytes=64 * 1024)
    before = _children()
    result = emulate(tmp_path, CPU, np.zeros((2, 1, 4), np.float32))
    assert not result.emulated
    assert result.reason.startswith("did not finish within ")
    assert "instructions" in result.reason and "\n" not in result.reason
    assert _children() <= before  # nothing left running


# ------------------------------------------------------------------ the firmware cache


def test_an_entry_is_used_only_as_its_manifest_lists_it(tmp_path: Path) -> None:
    from sweep.runtimes.cortex_m.cache_entry import BadEntry, verify, write_manifest

    entry = tmp_path / "entry"
    entry.mkdir()
    (entry / "a.bin").write_bytes(b"abc")
    (entry / "sub").mkdir()
    (entry / "sub" / "b.txt").write_text("b")
    with pytest.raises(BadEntry, match="no manifest"):
        verify(entry)
    write_manifest(entry)
    assert verify(entry, ("a.bin",)) == {"a.bin": b"abc", "sub/b.txt": b"b"}
    with pytest.raises(BadEntry, match=r"lacks c\.bin"):
        verify(entry, ("c.bin",))

    (entry / "a.bin").write_bytes(b"abd")
    with pytest.raises(BadEntry, match="checksum"):
        verify(entry)
    (entry / "a.bin").write_bytes(b"abc")
    (entry / "extra").write_text("x")
    with pytest.raises(BadEntry, match="extra"):
        verify(entry)
    (entry / "extra").unlink()
    victim = tmp_path / "victim"
    victim.write_bytes(b"abc")
    (entry / "a.bin").unlink()
    (entry / "a.bin").symlink_to(victim)  # same bytes, but a symlink: refused, not followed
    with pytest.raises(BadEntry, match="symlink"):
        verify(entry)
    link = tmp_path / "link"
    link.symlink_to(entry)
    with pytest.raises(BadEntry, match="not a folder"):
        verify(link)


def test_a_bad_entry_is_rebuilt_and_a_good_one_reused(tmp_path: Path) -> None:
    from sweep.runtimes.cortex_m.cache_entry import fetch

    builds = []

    def build(folder: Path) -> None:
        builds.append(folder)
        (folder / "data").write_text("fresh")

    final = tmp_path / "cache" / "entry"
    load = lambda files: files["data"]  # noqa: E731
    assert fetch(final, build, ("data",), load) == (b"fresh", True)
    assert fetch(final, build, ("data",), load) == (b"fresh", False)
    (final / "data").write_text("tampered")
    assert fetch(final, build, ("data",), load) == (b"fresh", True)
    assert len(builds) == 2
    (final / "manifest.json").write_text(json.dumps({"version": 1, "files": {}}))
    (final / "data").unlink()
    assert fetch(final, build, ("data",), load) == (b"fresh", True)  # "lacks data"


def test_a_lock_planted_as_a_symlink_is_not_followed(tmp_path: Path) -> None:
    from sweep.runtimes.cortex_m.cache_entry import locked

    target = tmp_path / "elsewhere" / "created-through-the-link"
    target.parent.mkdir()
    kept = tmp_path / "kept"
    kept.write_text("precious")
    for planted_to in (target, kept):
        lock = tmp_path / "cache" / "entry.lock"
        lock.parent.mkdir(exist_ok=True)
        lock.unlink(missing_ok=True)
        lock.symlink_to(planted_to)
        with locked(lock):
            assert not lock.is_symlink()
    assert not target.exists()
    assert kept.read_text() == "precious"


def test_the_cache_folder_is_held_to_the_outputs_folder(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SWEEP_OUTPUTS", str(tmp_path / "outputs"))
    monkeypatch.delenv("SWEEP_ALLOW_OUTSIDE_OUTPUTS", raising=False)
    monkeypatch.delenv("SWEEP_FIRMWARE_CACHE", raising=False)
    assert cache_root() == tmp_path / "outputs" / "cache" / "firmware"
    monkeypatch.setenv("SWEEP_FIRMWARE_CACHE", str(tmp_path / "outputs" / "fw"))
    assert cache_root() == tmp_path / "outputs" / "fw"
    monkeypatch.setenv("SWEEP_FIRMWARE_CACHE", str(tmp_path / "shared"))
    with pytest.raises(ConfigError, match=r"SWEEP_FIRMWARE_CACHE=.*outside the outputs folder.*"
                       r"add SWEEP_ALLOW_OUTSIDE_OUTPUTS=1\.$"):  # fmt: skip
        cache_root()
    monkeypatch.setenv("SWEEP_ALLOW_OUTSIDE_OUTPUTS", "1")
    assert cache_root() == tmp_path / "shared"


@pytest.mark.parametrize("multirun", [[], ["--multirun", "experiment=board_search"]])
def test_a_firmware_cache_outside_the_outputs_stops_a_board_run_before_any_job(
    tmp_path, multirun: list[str]
) -> None:
    """Refused up front (a single run, and a board search whose objective needs the board's
    figures), not found after the first model trained; the line names the variable to set."""
    from helpers.config import ROOT, sweep_env
    from helpers.preloaded import run_module
    from helpers.processes import SAFETY_NET_SECONDS
    from helpers.sweeps import recorded_runs

    env = {**sweep_env(tmp_path), "SWEEP_FIRMWARE_CACHE": str(tmp_path / "shared")}
    env.pop("SWEEP_ALLOW_OUTSIDE_OUTPUTS", None)
    args = [*multirun, "target=nano33_ble_sense"]
    result = run_module("sweep", args, env=env, cwd=ROOT, timeout=SAFETY_NET_SECONDS)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-3000:]
    assert "Traceback" not in output and "train epoch" not in output
    assert "outside the outputs folder" in output and "SWEEP_ALLOW_OUTSIDE_OUTPUTS=1" in output
    assert recorded_runs(tmp_path) == []


@needs_cortex_m
@pytest.mark.slow
def test_a_planted_build_json_runs_nothing(converted, tmp_path: Path, monkeypatch) -> None:
    """An entry that passes every check (its manifest lists it: whoever can plant files can
    also list them) but whose build.json names a compiler wrapper that runs a shell. Its
    flags are never read, so nothing runs; the entry is in the form the code before this
    hardening read as well (``tflm/`` tree, ``includes``, ``archive``)."""
    operators = model_operators(operator_codes(converted["int8"]))
    real = build_library(CPU, operators=operators)  # the shared cache's (built once)
    outputs = tmp_path / "outputs"
    monkeypatch.setenv("SWEEP_OUTPUTS", str(outputs))
    monkeypatch.setenv("SWEEP_FIRMWARE_CACHE", str(outputs / "firmware"))
    for entry in real.root.parent.glob(f"{real.root.name}-*"):
        if entry.is_dir() and not entry.name.endswith(".lock"):
            shutil.copytree(entry, cache_dir(CPU).with_name(entry.name))
    planted = cache_dir(CPU).with_name(f"{cache_dir(CPU).name}-base")
    (planted / "tflm").mkdir(parents=True)
    (planted / "tflm" / "lib.a").write_bytes(real.archive_bytes)
    (planted / "libtensorflow-microlite.a").write_bytes(real.archive_bytes)
    pwned = tmp_path / "pwned.txt"
    wrapper = ["-wrapper", f"/bin/sh,-c,id > {pwned}"]
    info = {"build_seconds": 1.0, "cxxflags": wrapper, "cflags": wrapper}
    info.update(includes=[], archive="lib.a")
    (planted / "build.json").write_text(json.dumps(info))
    files = sorted(p for p in planted.rglob("*") if p.is_file() and p.name != "manifest.json")
    listed = {
        str(p.relative_to(planted)): {"size": p.stat().st_size, "sha256": _sha256(p)} for p in files
    }
    (planted / "manifest.json").write_text(json.dumps({"version": 1, "files": listed}))
    bundle = tmp_path / "bundle"
    write_bundle(converted["int8"], bundle, arena_bytes=16_000)
    try:
        result = emulate(bundle, CPU, np.zeros((1, 28, 28, 1), np.int8))
    except Exception:  # whatever happens to the emulation, the shell must not have run
        result = None
    assert not pwned.exists()
    assert result is not None and result.emulated, result and result.reason


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_operator_codes_say_which_are_used(converted) -> None:
    from sweep.runtimes.flatbuffer import operator_codes

    codes = operator_codes(converted["int8"])
    assert {c.name for c in codes if c.used} >= {"CONV_2D", "FULLY_CONNECTED"}
    hostile = with_operator_codes(converted["int8"], (schema.BuiltinOperator.CUSTOM, HOSTILE))
    extra = [c for c in operator_codes(hostile) if c.custom]
    assert len(extra) == 1 and not extra[0].used
    assert extra[0].name.isascii() and "\n" not in extra[0].name


def test_the_library_key_ignores_what_tflm_s_makefile_writes_into_the_sources(tmp_path) -> None:
    """Parsing TFLM's Makefile (compile_flags does, in the third-party sources) writes C
    arrays of the examples' models and images there; the library's key must not change with
    them, or every process after the first would build the library again (minutes)."""
    from sweep.runtimes.cortex_m.library import NOT_LIBRARY_SOURCES, _tree_digest

    tflm = tmp_path / "tflite-micro" / "tensorflow" / "lite" / "micro"
    (tflm / "kernels").mkdir(parents=True)
    (tflm / "kernels" / "conv.cc").write_text("int conv;\n")
    (tflm / "examples" / "hello_world" / "models").mkdir(parents=True)
    (tflm / "models").mkdir()
    before = _tree_digest(tmp_path, NOT_LIBRARY_SOURCES)
    (tflm / "examples" / "hello_world" / "models" / "hello_world_int8_model_data.cc").write_text(
        "const unsigned char g_model[] = {1};\n"
    )
    (tflm / "models" / "person_detect_model_data.h").write_text("extern int x;\n")
    assert _tree_digest(tmp_path, NOT_LIBRARY_SOURCES) == before
    (tflm / "kernels" / "conv.cc").write_text("int conv = 1;\n")
    assert _tree_digest(tmp_path, NOT_LIBRARY_SOURCES) != before  # a library source counts
