"""What the check before a sweep's first job costs: the board search's data check (every
combination of its dataset, model and train values: 24 for ``experiment=board_search``)
with one Hydra compose per choice of options (``VariantComposer``, the code) beside one
compose per combination (as before 3 December), alternating, in one process, CPU seconds.

    .venv/bin/python benchmarks/data_check_cost.py                 # 3 rounds
    .venv/bin/python benchmarks/data_check_cost.py --rounds 5 model=cnn,separable_cnn
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.types import RunMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from sweep.cli import sweep_callback  # noqa: E402
from sweep.stores.paths import register_resolvers  # noqa: E402

BOARD_SEARCH = ["experiment=board_search", "target=nano33_ble_sense"]


class ComposeEach(sweep_callback.VariantComposer):
    """The check as it was: a whole compose for every combination."""

    def compose(self, overrides: list[str]):
        return compose(self._config_name, overrides=overrides)


def _cpu_seconds_of_check(config, composer: type) -> float:
    sweep_callback.VariantComposer = composer  # what check_sweep_data instantiates
    start = time.process_time()
    sweep_callback.check_sweep_data(config)
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("overrides", nargs="*", default=BOARD_SEARCH)
    args = parser.parse_args()
    os.environ.setdefault("SWEEP_DATA_DIR", str(ROOT / "tests" / "data"))
    register_resolvers()
    arms = {"one compose per option (code)": sweep_callback.VariantComposer,
            "one compose per combination": ComposeEach}  # fmt: skip
    seconds: dict[str, list[float]] = {name: [] for name in arms}
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        config = GlobalHydra.instance().hydra.compose_config(
            "config", args.overrides, run_mode=RunMode.MULTIRUN, with_log_configuration=False
        )
        each = sweep_callback.variants(
            config, sweep_callback._in_groups("dataset", "model", "train")
        )
        print(f"{' '.join(args.overrides)}: {len(each)} combinations")
        _cpu_seconds_of_check(config, ComposeEach)  # warm-up: imports, the data's first read
        for _ in range(args.rounds):
            for name, composer in arms.items():
                seconds[name].append(_cpu_seconds_of_check(config, composer))
    for name, values in seconds.items():
        print(f"{name:32s} " + "  ".join(f"{v:.2f}" for v in values)
              + f"   median {statistics.median(values):.2f} CPU s")  # fmt: skip
    new, old = (statistics.median(v) for v in seconds.values())
    print(f"ratio (code / before): {new / old:.2f}")


if __name__ == "__main__":
    main()
