"""`consent-center-dbt`: dbt that dies with the run that started it.

A run killed with kill -9 cannot stop its children, and an orphaned dbt would go on rebuilding
tables beside the next run (which the run lock lets start at once). On Linux this wrapper asks
the kernel to kill it when its parent dies (PR_SET_PDEATHSIG), then becomes dbt itself (exec),
so dbt keeps its pid, arguments, environment and exit code.

`--version` alone is answered here, from the installed packages: dagster-dbt asks it before
every dbt step, and dbt's own answer starts the whole of dbt and asks PyPI for its latest
release (3 s a step here, and a wait on a network that an offline installation does not have).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
from pathlib import Path

PR_SET_PDEATHSIG = 1


def installed_versions() -> str:
    """What `dbt --version` says of the installed packages, in its layout, without the check
    for newer releases."""
    from importlib.metadata import version

    return (
        f"Core:\n  - installed: {version('dbt-core')}\n\n"
        f"Plugins:\n  - postgres: {version('dbt-postgres')}\n"
    )


def main() -> None:
    if sys.argv[1:] == ["--version"]:
        sys.stdout.write(installed_versions())
        return
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the request took effect
            sys.exit(137)
    dbt = Path(sys.executable).parent / "dbt"
    os.execv(dbt, [str(dbt), *sys.argv[1:]])


if __name__ == "__main__":
    main()
