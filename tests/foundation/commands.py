"""The ``live-server`` command line as the command-line tests run it."""

from __future__ import annotations

import subprocess

from tests.processes import cli_in_process


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The console script for the first command of a test (the installed entry point works), then the
    same ``main()`` in process for the rest."""
    return cli_in_process(env, *args)
