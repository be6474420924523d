"""The `consent` command in the test process, as its console script runs it: not a pytest plugin, imported
directly.

`consent(args, env, cwd)` calls the entry point the `consent` script calls (pyproject's
`[project.scripts]`, so whatever `main` does first happens here too) with `sys.argv`, the environment,
the working directory and a non-terminal stdin as a subprocess would have them, and returns what
`subprocess.run(..., capture_output=True, text=True)` would: returncode, stdout, stderr. It saves a Python
start and the imports (~1-2 s of CPU a call) where the process itself is not what a test is about; the
tests where it is (SIGKILL, a real non-tty stdin, the installed script) keep their subprocesses.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import traceback
from collections.abc import Mapping, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from click.testing import CliRunner


class _ConsoleScript:
    """The `consent` entry point in the shape CliRunner.invoke calls: `.main(args=..., prog_name=...)`."""

    name = "consent"

    def main(self, args: Sequence[str], prog_name: str, **_: Any) -> Any:
        (script,) = entry_points(group="console_scripts", name="consent")
        argv = sys.argv
        sys.argv = [prog_name, *args]
        try:
            return script.load()()
        finally:
            sys.argv = argv


def consent(
    args: Sequence[str], env: Mapping[str, str], cwd: str | Path | None = None
) -> subprocess.CompletedProcess[str]:
    """`consent *args` in this process with exactly the environment `env` (variables not in it unset while
    it runs) in `cwd`; an uncaught exception exits 1 with its traceback on stderr, as in a subprocess."""
    overrides: dict[str, str | None] = {name: None for name in os.environ if name not in env}
    overrides.update(env)
    with contextlib.chdir(cwd) if cwd is not None else contextlib.nullcontext():
        result = CliRunner().invoke(_ConsoleScript(), list(args), env=overrides)
    stderr = result.stderr
    if result.exc_info is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(*result.exc_info))
    return subprocess.CompletedProcess(["consent", *args], result.exit_code, result.stdout, stderr)
