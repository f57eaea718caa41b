"""PyInstaller's script entry: the frozen `slipstream` runs the same main() as the console script.

PyInstaller needs a script file, not `-m app`. Subcommands (`slipstream serve`, `ask`, ...) are
dispatched by app.main, so the bundled server is `slipstream serve` from the same executable.
"""

from __future__ import annotations

import multiprocessing
import sys

from app.main import main

if __name__ == "__main__":
    multiprocessing.freeze_support()  # no-op unless a frozen child process is being spawned
    sys.exit(main())
