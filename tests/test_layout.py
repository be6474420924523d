"""The design card's promises about the layout."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def test_core_package_imports_nothing_from_prefect():
    script = (
        "import importlib, pkgutil, sys, consent_lifecycle\n"
        "for m in pkgutil.walk_packages(consent_lifecycle.__path__, 'consent_lifecycle.'):\n"
        "    if not m.name.startswith('consent_lifecycle.migrations'):\n"
        "        importlib.import_module(m.name)\n"
        "loaded = sorted(n for n in sys.modules if n == 'prefect' or n.startswith(('prefect.', 'flows', 'tasks')))\n"
        "print(loaded)\n"
        "sys.exit(1 if loaded else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_prefect_yaml_entrypoints_import_and_parameters_exist():
    import importlib
    import inspect

    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    assert spec["deployments"], "prefect.yaml declares no deployment"
    for deployment in spec["deployments"]:
        path, _, name = deployment["entrypoint"].partition(":")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        flow = getattr(module, name)
        accepted = set(inspect.signature(flow.fn).parameters)
        given = set(deployment.get("parameters") or {})
        for schedule in deployment.get("schedules") or []:
            given |= set(schedule.get("parameters") or {})
        assert given <= accepted, f"{deployment['name']}: unknown parameters {given - accepted}"
