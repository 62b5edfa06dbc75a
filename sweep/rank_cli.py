"""``python -m sweep.rank_cli``: the old command of ``sweep-rank`` (now
:mod:`sweep.cli.sweep_rank`), kept working with a warning."""

import sys

from sweep.cli.sweep_rank import *  # noqa: F403  (old imports keep finding their names)
from sweep.cli.sweep_rank import main
from sweep.compat import warn_once

if __name__ == "__main__":
    warn_once(
        "python -m sweep.rank_cli",
        "python -m sweep.rank_cli is deprecated: run sweep-rank "
        "(or python -m sweep.cli.sweep_rank)",
    )
    sys.exit(main())
