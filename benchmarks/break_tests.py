"""Each test issue #23 names, run against a deliberately broken copy of the code it guards.

Why: a test that passes on working code shows little; one that also FAILS when the code
it guards is broken shows it can catch that defect. Issue #23 listed tests that could not
fail, skipped for no reason, were weak or timing-dependent, and README claims with no
test; they were rewritten. This script holds, for each of them, one or more breaks
(a file, its exact old text, the new text, why) and shows the test fails on each.

For every break: the repository's sources (sweep/, hydra_plugins/, conf/, tests/,
benchmarks/, pyproject.toml, README.md) are copied to a temporary folder, the break is
applied there (its old text must occur exactly once), and the named tests run in the
copy with this venv's python, the copy first on PYTHONPATH (checked: ``sweep.__file__``
and the sweeper plugin are the copy's). A break the tests pass on is NOT CAUGHT.

Run (from the project root; the Arm toolchain and ../shared/third_party as for the suite):

    export SWEEP_FIRMWARE_CACHE=~/.cache/sweep/firmware SWEEP_ALLOW_OUTSIDE_OUTPUTS=1
    .venv/bin/python benchmarks/break_tests.py              # every break (~40 min, 2 cores)
    .venv/bin/python benchmarks/break_tests.py --list       # the breaks, nothing run
    .venv/bin/python benchmarks/break_tests.py --only wait_states --check-intact

Exit status 1 if any break was not caught (or a run errored or timed out).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COPIED = ("sweep", "hydra_plugins", "conf", "tests", "benchmarks", "pyproject.toml", "README.md")
SAFETY_NET_SECONDS = 3600  # a hung run is reported as TIMEOUT, never waited on for ever


@dataclass(frozen=True)
class Break:
    name: str
    issue: str  # the issue's item this test answers
    tests: tuple[str, ...]
    file: str
    old: str
    new: str
    why: str


T = "tests/"
PROFILE, CLI, HARD = f"{T}test_profile.py::", f"{T}test_sweep_cli.py::", f"{T}test_hardening.py::"
SEARCH, CORTEX = f"{T}test_search.py::", f"{T}test_cortex_m.py::"
OTHER_BOARDS = f"{CORTEX}test_the_int8_cnn_runs_on_the_other_cortex_m_boards_as_a_sweep_measures_it"
FLASH_RAM = f"{CORTEX}test_flash_and_ram_figures_are_the_linked_images"
CLOCK = f"{PROFILE}test_a_board_at_another_clock_gets_that_clocks_wait_states"
BROWSE = f"{PROFILE}test_mlflow_records_one_top_level_run_and_says_how_to_browse_it"
RESUMED = (
    f"{SEARCH}test_a_resumed_search_is_reseeded_kept_in_its_storage_and_stops_at_its_time_budget"
)
UNREACHABLE = f"{HARD}test_an_unreachable_store_stops_in_seconds_with_one_line"
REUSE = f"{T}test_results_cache.py::test_a_rerun_reuses_the_converted_model_and_times_latency_again"
BOARD_ROWS = (
    f"{T}test_ranking.py::"
    "test_on_a_board_smallest_is_by_flash_and_fastest_falls_back_to_tflite_micro"
)
MULTIRUN = f"{CLI}test_multirun_records_one_child_per_job_and_ranks_from_the_store"
EARLY_PARENT = (
    "        redact_logs()  # Hydra's launcher logs each job's overrides",
    "        self._tracker(config).start_run('sweep (opened early)', {ROLE: 'parent'})\n"
    "        redact_logs()  # Hydra's launcher logs each job's overrides",
)

BREAKS: tuple[Break, ...] = (
    # ---- cannot fail (2)
    Break("mcu_sweep_count_off_by_one", "cannot fail: second MCU sweep read its own cache",
          (f"{T}test_mcu_sweep.py::test_microcontroller_sweep_ranks_only_what_runs_and_fits",),
          "sweep/checks/board_emulation.py",
          '"mcu_instructions": float(result.instructions),',
          '"mcu_instructions": float(result.instructions + 1),',
          "the recorded count is not what the bundle runs: only re-emulating it shows that"),
    Break("wait_states_ignore_clock", "cannot fail: estimate_ms identity", (CLOCK,),
          "sweep/runtimes/cortex_m/memory.py",
          "if clock_mhz is None or not self.wait_state_table:",
          "if True:  # broken: the stated wait states, whatever the clock",
          "a board at 80 MHz would get the 120 MHz wait states"),
    Break("stalls_at_the_stated_wait_states", "cannot fail: estimate_ms identity", (CLOCK,),
          "sweep/runtimes/cortex_m/memory.py",
          "return exposure * self.wait_states_at(clock_mhz) * self.flash_accesses(mix)",
          "return exposure * self.wait_states_at() * self.flash_accesses(mix)",
          "the report names the clock's wait states, the cycles use the stated ones"),
    # ---- skip for no reason (3)
    Break("damaged_model_traceback", "skipped: damaged .tflite", (
          f"{PROFILE}test_damaged_tflite_gives_one_line",), "sweep/cli/sweep_profile.py",
          "    except Exception as error:  # a damaged flatbuffer fails anywhere inside the reader",
          "    except ImportError as error:  # broken: only one kind of damage is caught",
          "a cut flatbuffer escapes as whatever the reader raised, not the one line"),
    Break("profile_drops_added_settings", "skipped: bad target settings", (
          f"{PROFILE}test_bad_target_settings_give_the_sweeps_one_line",),
          "sweep/cli/sweep_profile.py",
          "board, cfg = compose_target(list(args.overrides))",
          'board, cfg = compose_target([o for o in args.overrides if not o.startswith("+")])',
          "sweep-profile ignores +target.speed=3, which a sweep refuses"),
    Break("profile_takes_host_as_board", "skipped: missing or unknown board", (
          f"{PROFILE}test_missing_or_unknown_board_gives_one_line",),
          "sweep/cli/sweep_profile.py",
          "    if not isinstance(target, Microcontroller):",
          "    if target is None:  # broken: target=host goes on",
          "target=host is profiled instead of refused"),
    # ---- weak (7)
    Break("flash_accesses_forget_wide_code", "weak: band of unseen models was arithmetic", (
          f"{PROFILE}test_the_fitted_boards_estimates_are_the_readmes_and_within_15_percent",),
          "sweep/runtimes/cortex_m/memory.py",
          'code_bytes = 2 * (mix.instructions + mix["wide"])',
          "code_bytes = 2 * mix.instructions",
          "32-bit instructions fetched as 16-bit: every fitted estimate moves"),
    Break("flash_without_data", "weak: loose flash/RAM ranges", (FLASH_RAM,),
          "sweep/runtimes/cortex_m/footprint.py",
          "flash_bytes=text + data,", "flash_bytes=text,",
          "initialised data left out of flash: a few hundred bytes, inside the old ranges"),
    Break("ram_without_data", "weak: loose flash/RAM ranges", (FLASH_RAM,),
          "sweep/runtimes/cortex_m/footprint.py",
          "ram_bytes=data + bss,", "ram_bytes=bss,",
          "initialised data left out of RAM: inside the old ranges"),
    Break("parent_run_before_checks", "weak: bad settings may leave a parent run", (
          f"{CLI}test_bad_settings_stop_with_one_message_and_no_run",),
          "sweep/cli/sweep_callback.py", *EARLY_PARENT,
          "a sweep with a bad setting leaves a parent run behind"),
    Break("parent_run_before_folder_check", "weak: refused folder may leave a parent run", (
          f"{CLI}test_output_folders_outside_outputs_are_refused",),
          "sweep/cli/sweep_callback.py", *EARLY_PARENT,
          "a sweep refused its folder leaves a parent run behind"),
    Break("hidden_dense_without_relu", "weak: count_params() < 5000", (
          f"{SEARCH}test_model_defaults_are_the_reference_cnn_and_blocks_shrink_the_dense_layer",),
          "sweep/groups/model.py",
          'layers.append(keras.layers.Dense(self.dense_units, activation="relu"))',
          "layers.append(keras.layers.Dense(self.dense_units))",
          "dense_units adds a linear layer: the same parameter count, another model"),
    Break("store_probe_waits_2_s", "weak: the 5 s path never exercised", (
          f"{UNREACHABLE}[silent server]",), "sweep/stores/paths.py",
          "def check_store_reachable(uri: str, timeout: float = 5.0) -> None:",
          "def check_store_reachable(uri: str, timeout: float = 2.0) -> None:",
          "a silent server is given 2 s, not the 5 s the README says"),
    Break("store_probe_asks_twice", "weak: the 5 s path never exercised", (
          f"{UNREACHABLE}[silent server]",), "sweep/stores/paths.py",
          "        with urllib.request.urlopen(without_userinfo(uri), timeout=timeout):\n"
          "            pass\n",
          "        try:\n"
          "            with urllib.request.urlopen(without_userinfo(uri), timeout=timeout):\n"
          "                pass\n"
          "        except OSError:  # broken: asked again, 5 s more\n"
          "            with urllib.request.urlopen(without_userinfo(uri), timeout=timeout):\n"
          "                pass\n",
          "a silent server is asked twice (10 s), not once"),
    Break("locked_store_not_retried", "weak: nothing showed a writer waited or retried", (
          f"{HARD}test_eight_writers_lose_no_run_while_the_store_is_locked",),
          "sweep/stores/tracking.py",
          "if not _locked(error) or time.monotonic() >= deadline:",
          "if True:  # broken: never retried",
          "a writer gives up after MLflow's own 20 s wait"),
    # ---- timing-dependent, now event-driven or exact
    Break("idx_reads_what_the_header_claims", "timing: IDX header < 2 s", (
          f"{T}test_data.py::test_header_claims_more_than_payload",), "sweep/formats/idx.py",
          "chunk = stream.read(min(_CHUNK, limit - len(buf)))",
          "chunk = stream.read(limit - len(buf))",
          "one read of the size the header claims allocates it (784 MB) before checking"),
    Break("latency_window_from_warmup", "timing: > 100 invokes per window", (
          f"{T}test_pipeline.py::test_latency_windows_are_sized_by_the_warm_up",),
          "sweep/runtimes/litert.py",
          "per_window = max(1, round(count / seconds * settings.window_ms / 1e3))",
          "per_window = max(1, round(count / seconds * settings.warmup_ms / 1e3))",
          "windows sized to the warm-up's length, not window_ms"),
    Break("no_store_probe", "timing: unreachable store < 30 s; ports held", (UNREACHABLE,),
          "sweep/stores/paths.py",
          '    if not uri.lower().startswith(("http://", "https://")):\n        return\n',
          "    return  # broken: no probe; MLflow retries for minutes\n",
          "a closed port is left to MLflow's two minutes of retries and its traceback"),
    Break("latency_timed_again", "timing: reused latency < 0.05 s", (REUSE,),
          "sweep/pipeline/sequence.py",
          "if parts.measure.reuse_latency and (kept := results.latency(key, LATENCY_METRICS)) is",
          "if False and (kept := results.latency(key, LATENCY_METRICS)) is",
          "measure.reuse_latency=true times again instead of reusing"),
    Break("sweep_folder_not_locked", "timing: first sweep must still run", (
          f"{HARD}test_a_sweep_folder_in_use_is_refused_and_the_running_sweep_is_untouched",),
          "sweep/cli/sweep_callback.py",
          "fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)", "pass  # broken: no lock",
          "two sweeps write into one folder"),
    Break("ctrl_c_recorded_as_failed", "timing: the Ctrl-C race", (
          f"{CLI}test_ctrl_c_ends_the_run_as_killed_with_the_reason",),
          "sweep/stores/tracking.py",
          'status="KILLED" if interrupted else "FAILED"', 'status="FAILED"',
          "an interrupted run is FAILED, not KILLED"),
    Break("ray_binds_every_interface", "timing: ports picked then reused (Ray)", (
          f"{T}test_scale_out.py::test_ray_jobs_record_into_a_shared_tracking_server_on_loopback_only",),
          "sweep/cli/sweep_callback.py",
          'os.environ[RAY_LOOPBACK_ENV] = "0"', 'os.environ[RAY_LOOPBACK_ENV] = "1"',
          "a local Ray listens on the machine's address"),
    Break("library_always_built_now", "timing: library test depended on order and cache", (
          f"{CORTEX}test_library_is_built_once_and_reused",),
          "sweep/runtimes/cortex_m/library.py", "built_now=seconds > 0,", "built_now=True,",
          "a cached library is reported as built again (and its minutes charged)"),
    Break("library_compiles_every_kernel", "the library kept per operator", (
          f"{CORTEX}test_a_new_operator_compiles_only_its_kernel_into_the_library",),
          "sweep/runtimes/cortex_m/library_plan.py", "if operators is None:", "if True:",
          "every model's library holds (and compiles) every operator's kernel"),
    Break("library_members_sorted", "the library kept per operator", (
          f"{CORTEX}test_a_new_operator_compiles_only_its_kernel_into_the_library",),
          "sweep/runtimes/cortex_m/library.py", "archive_bytes=_archive(members, objects),",
          "archive_bytes=_archive(tuple(sorted(members)), objects),",
          "the archive's members leave TFLM's order (a link may pull them in another)"),
    # ---- README claims
    Break("smallest_by_file_size", "README: smallest by flash on a board", (BOARD_ROWS,),
          "sweep/checks/micro_runtime.py",
          '"smallest flash", "smallest",', '"smallest flash", None,',
          "a board's smallest is the .tflite file, not the flash it needs"),
    Break("fastest_without_tflm_fallback", "README: fastest falls back to tflite-micro", (
          BOARD_ROWS,
          f"{T}test_mcu_sweep.py::test_without_the_arm_toolchain_the_sweep_finishes_with_one_clear_line"),
          "sweep/checks/micro_runtime.py",
          '"fastest on tflite-micro", "fastest",', '"fastest on tflite-micro", None,',
          "without a board estimate, fastest is the desktop's latency"),
    Break("reused_latency_not_tagged", "README: latency.reused tag", (REUSE,),
          "sweep/pipeline/sequence.py",
          'return kept, {"latency.reused": "true"}', "return kept, {}",
          "a reused latency is not marked"),
    Break("results_never_reused", "README: a quantizer added to a finished grid", (MULTIRUN,),
          "sweep/pipeline/sequence.py",
          'ResultCache(root / "results", enabled=cfg.cache.enabled)',
          'ResultCache(root / "results", enabled=False)',
          "the grown grid converts and measures every quantizer again"),
    Break("cache_always_on", "README: cache.enabled=false", (
          f"{T}test_results_cache.py::test_cache_disabled_converts_trains_and_measures_everything_again",),
          "sweep/pipeline/sequence.py",
          'ResultCache(root / "results", enabled=cfg.cache.enabled)',
          'ResultCache(root / "results", enabled=True)',
          "cache.enabled=false still reads the results cache"),
    Break("every_board_runs_the_m4f_build", "README: Cortex-M7 and M0+ built and emulated", (
          OTHER_BOARDS,), "sweep/checks/board_emulation.py",
          "result = cortex_m.emulate(bundle_dir, board.cpu, inputs)",
          'result = cortex_m.emulate(bundle_dir, "cortex-m4f", inputs)',
          "the M7 and M0+ boards are counted on the M4F's build"),
    Break("emulate_images_ignored", "README: target.emulate_images", (OTHER_BOARDS,),
          "sweep/checks/board_emulation.py",
          "n = min(target.emulate_images, len(report.inputs))", "n = len(report.inputs)",
          "every test image is emulated, whatever target.emulate_images says"),
    Break("esp32_reason_not_tagged", "README: ESP32 mcu_emulation_reason", (
          f"{T}test_mcu.py::test_esp32_is_checked_on_tflite_micro_and_says_why_it_is_not_emulated",),
          "sweep/checks/board_emulation.py",
          'return Measurement({"mcu_emulated": 0.0}, {REASON: spec.reason})',
          'return Measurement({"mcu_emulated": 0.0})',
          "an ESP32 run does not say why it was not emulated"),
    Break("profile_exit_status_inverted", "README: sweep-profile exit 0 and --mlflow", (BROWSE,),
          "sweep/cli/sweep_profile.py",
          "return 0 if found.runs and found.fits else 1",
          "return 1 if found.runs and found.fits else 0",
          "a model that runs and fits exits 1"),
    Break("browse_hint_without_host", "README: the MLflow browse hint", (BROWSE,),
          "sweep/stores/paths.py",
          'command = f"mlflow ui --backend-store-uri {uri} --host 127.0.0.1"',
          'command = f"mlflow ui --backend-store-uri {uri}"',
          "the hint opens the UI without --host 127.0.0.1"),
    Break("store_relative_to_cwd", "README: the store path is absolute", (
          f"{T}test_job.py::test_the_default_store_is_absolute_whatever_the_working_directory",),
          "sweep/stores/paths.py",
          'if configured else PROJECT_ROOT / "outputs").resolve()',
          'if configured else Path("outputs")).resolve()',
          "the default store is outputs/ under wherever the command started"),
    # sampler=grid simply accepted (SAMPLERS + "grid") is caught too, but only once the
    # whole search it then runs has ended (over 8 min here): the check is moved instead.
    Break("search_checked_after_parent_run", "README: sampler=grid refused", (
          f"{SEARCH}test_bad_search_settings_stop_with_one_line_before_any_job",),
          "sweep/cli/sweep_callback.py",
          'if not str(sweeper.get("_target_", "")).endswith("SearchSweeper"):',
          "if True:  # broken: left to the sweeper, after the parent run is open",
          "bad search settings (sampler=grid) are refused after the parent run opened"),
    Break("resume_not_reseeded", "README: a resumed search is re-seeded", (RESUMED,),
          "sweep/search/sweeper.py",
          "seed = settings.seed + trials_so_far", "seed = settings.seed",
          "a resumed search proposes its first session's knobs again"),
    Break("storage_setting_ignored", "README: storage=sqlite", (RESUMED,),
          "sweep/search/sweeper.py",
          "    if settings.storage:\n        return settings.storage\n",
          "    if False:  # broken: the journal, whatever storage says\n"
          "        return settings.storage\n",
          "the study goes to the sweep folder's journal, not the SQLite storage named"),
    Break("timeout_minutes_ignored", "README: timeout_minutes", (RESUMED,),
          "sweep/search/sweeper.py",
          "if self.settings.timeout_minutes and minutes >= self.settings.timeout_minutes:",
          "if False:  # broken: no time budget",
          "a search runs all its trials whatever its time budget"),
    Break("max_failures_off_by_one", "README: max_failures_in_a_row", (
          f"{T}test_scale_out.py::test_optuna_trials_without_a_value_fail_alone_and_the_sweep_still_ranks",),
          "sweep/search/sweeper.py",
          "if self.failures_in_a_row >= self.settings.max_failures_in_a_row:",
          "if self.failures_in_a_row > self.settings.max_failures_in_a_row:",
          "a search stops one failed trial later than max_failures_in_a_row"),
)  # fmt: skip


@dataclass
class Outcome:
    brk: Break
    broken: bool  # False: the intact copy (--check-intact)
    status: str  # caught, NOT CAUGHT, ERROR (pytest could not run), TIMEOUT
    summary: str
    seconds: float


def copy_repository(into: Path) -> Path:
    repo = into / "repo"
    repo.mkdir()
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", "outputs")
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, repo / name, ignore=skip)
        else:
            shutil.copy2(source, repo / name)
    return repo


def apply(repo: Path, brk: Break) -> None:
    path = repo / brk.file
    text = path.read_text()
    if (count := text.count(brk.old)) != 1:
        raise SystemExit(f"break {brk.name}: its old text occurs {count} times in {brk.file}")
    path.write_text(text.replace(brk.old, brk.new))


def environment(repo: Path) -> dict[str, str]:
    """The copy first on PYTHONPATH; the shared sources and caches the suite uses."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(repo), env.get("PYTHONPATH")]))
    env["SWEEP_OUTPUTS"] = str(repo / "outputs")
    env.setdefault("SWEEP_FIRMWARE_CACHE", str(Path.home() / ".cache" / "sweep" / "firmware"))
    env.setdefault("SWEEP_ALLOW_OUTSIDE_OUTPUTS", "1")
    # Found beside the project by default: the copy's ../shared is not there.
    env.setdefault("SWEEP_THIRD_PARTY", str(ROOT.parent / "shared" / "third_party"))
    env.setdefault("SWEEP_MLPERF_TINY", str(ROOT.parent / "shared" / "mlperf_tiny"))
    return env


def check_imports_the_copy(repo: Path, env: dict[str, str]) -> None:
    code = "import sweep, hydra_plugins.sweep_search as s; print(sweep.__file__); print(s.__file__)"
    done = subprocess.run([sys.executable, "-c", code], cwd=repo, env=env, capture_output=True,
                          text=True, check=True)  # fmt: skip
    for line in done.stdout.split():
        if not Path(line).resolve().is_relative_to(repo.resolve()):
            raise SystemExit(f"the copy is not what gets imported: {line} (copy: {repo})")


def run_one(brk: Break, broken: bool) -> Outcome:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(
        prefix=f"break-{brk.name}-", ignore_cleanup_errors=True
    ) as tmp:
        repo = copy_repository(Path(tmp))
        if broken:
            apply(repo, brk)
        env = environment(repo)
        check_imports_the_copy(repo, env)
        # -n 0: the named tests in this process (--jobs runs breaks side by side instead)
        command = [sys.executable, "-m", "pytest", "-x", "-q", "-n", "0", "-p", "no:cacheprovider",
                   f"--basetemp={repo / '.pytest-tmp'}", *brk.tests]  # fmt: skip
        try:
            done = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True,
                                  timeout=SAFETY_NET_SECONDS)  # fmt: skip
        except subprocess.TimeoutExpired:
            return Outcome(brk, broken, "TIMEOUT", "", time.monotonic() - started)
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    summary = lines[-1].strip("= ") if lines else done.stderr.strip()[-200:]
    failed = [line for line in lines if line.startswith(("FAILED ", "ERROR "))]
    if failed:  # what failed, and pytest's one-line reason
        summary = f"{summary}: {failed[0].split('::', 1)[-1][:160]}"
    if done.returncode == 1:
        status = "caught" if broken else "FAILS INTACT"
    elif done.returncode == 0:
        status = "NOT CAUGHT" if broken else "passes intact"
    else:
        status = "ERROR"
        summary = f"pytest exit {done.returncode}: {summary}"
    return Outcome(brk, broken, status, summary, time.monotonic() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="only the breaks whose name, file or tests hold this")
    parser.add_argument("--list", action="store_true", help="list the breaks and stop")
    parser.add_argument("--check-intact", action="store_true",
                        help="also run each break's tests on an unbroken copy")  # fmt: skip
    parser.add_argument("--jobs", type=int, default=1, help="copies tested at once")
    args = parser.parse_args(argv)
    chosen = [b for b in BREAKS if not args.only or args.only in f"{b.name} {b.file} {b.tests}"]
    if args.list:
        for b in chosen:
            print(f"{b.name}: {b.file}: {b.why}\n    [{b.issue}] {' '.join(b.tests)}")
        return 0
    runs = [(b, True) for b in chosen]
    if args.check_intact:  # once per distinct set of tests
        runs += [(b, False) for b in {b.tests: b for b in chosen}.values()]
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        outcomes = []
        for outcome in pool.map(lambda run: run_one(*run), runs):
            outcomes.append(outcome)
            print(f"{outcome.status:>13}  {outcome.brk.name if outcome.broken else 'intact'}"
                  f"  ({outcome.seconds:.0f} s) {outcome.summary}", flush=True)  # fmt: skip
    print("\n| test | break | caught |\n|---|---|---|")
    for o in outcomes:
        tests = "<br>".join(t.split("/", 1)[1] for t in o.brk.tests)
        what = f"`{o.brk.name}`: {o.brk.why}" if o.broken else "(intact copy)"
        print(f"| {tests} | {what} | {o.status} ({o.seconds:.0f} s) |")
    total = time.monotonic() - started
    bad = [o for o in outcomes if o.status not in ("caught", "passes intact")]
    print(f"\n{len(outcomes) - len(bad)} of {len(outcomes)} as expected in {total / 60:.1f} min")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
