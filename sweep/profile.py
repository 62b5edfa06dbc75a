"""``python -m sweep.profile``: the old command of ``sweep-profile`` (now
:mod:`sweep.cli.sweep_profile`), kept working with a warning."""

import sys

from sweep.cli.sweep_profile import *  # noqa: F403  (old imports keep finding their names)
from sweep.cli.sweep_profile import main
from sweep.compat import warn_once

if __name__ == "__main__":
    warn_once(
        "python -m sweep.profile",
        "python -m sweep.profile is deprecated: run sweep-profile "
        "(or python -m sweep.cli.sweep_profile)",
    )
    sys.exit(main())
