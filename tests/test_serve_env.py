"""What `make serve` hands a second terminal (issue 18): `.consent/serve.env`, owner-only, of `export` lines a
shell can source; and the UI URL its Prefect server gets, so the failure alert's link is a link."""

from __future__ import annotations

import os
import stat
import subprocess

from deployments.serve import absolute_database_url, server_environment, write_serve_env


def test_serve_env_is_owner_only_and_a_shell_sourcing_it_gets_every_value(tmp_path):
    path = tmp_path / ".consent" / "serve.env"
    path.parent.mkdir()
    path.write_text("old")
    path.chmod(0o644)  # an earlier file, readable by others: rewritten owner-only
    values = {
        "PREFECT_API_URL": "http://127.0.0.1:4200/api",
        "CONSENT_DATABASE_URL": "sqlite:////srv/consent db/consent.db",
        "CONSENT_CODAT_BASE_URL": "http://127.0.0.1:8710",
        "CONSENT_CODAT_API_KEY": "k$y'with \"quotes\"",
        "CONSENT_API_URL": "http://127.0.0.1:8730",
        "UNSET": None,
    }

    write_serve_env(path, values)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    lines = path.read_text().splitlines()
    assert lines[0].startswith("#") and all(line.startswith("export ") for line in lines[1:])
    script = f". {path} && " + " && ".join(f'printf "%s\\n" "${name}"' for name in list(values)[:-1])
    shell = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True,
                           env={"PATH": os.environ["PATH"]})
    assert shell.stdout.splitlines() == [v for v in values.values() if v]
    assert "UNSET" not in path.read_text()


def test_a_relative_sqlite_path_is_made_absolute_others_are_kept(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert absolute_database_url("sqlite:///.consent/consent.db") == f"sqlite:///{tmp_path}/.consent/consent.db"
    assert absolute_database_url("postgresql://u:pw@db/consent") == "postgresql://u:pw@db/consent"


def test_the_server_started_knows_its_ui_url_and_not_a_client_api_url():
    env = server_environment(4300, {"PREFECT_API_URL": "http://elsewhere/api", "PATH": "/bin"})
    assert env == {"PATH": "/bin", "PREFECT_UI_URL": "http://127.0.0.1:4300",
                   "PREFECT_SERVER_UI_API_URL": "http://127.0.0.1:4300/api"}
    assert server_environment(4300, {"PREFECT_UI_URL": "https://prefect.example"})["PREFECT_UI_URL"] == (
        "https://prefect.example"
    )
