"""Without the `postgres` extra (psycopg), a PostgreSQL URL fails with a message naming the extra.

psycopg is installed here (the test extra includes it), so the child process makes its import fail the
way a missing package does: `sys.modules["psycopg"] = None` makes every `import psycopg` raise
ModuleNotFoundError, raised by the real import inside SQLAlchemy's dialect. Nothing is connected to."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

WITHOUT_PSYCOPG = (
    "import sys; sys.modules['psycopg'] = None; from megalodoc.app.cli import main; sys.exit(main(sys.argv[1:]))"
)


def _cli_without_psycopg(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}  # this process's megalodoc
    return subprocess.run([sys.executable, "-c", WITHOUT_PSYCOPG, *args], capture_output=True, text=True,
                          env=env, timeout=120, check=False)


def test_postgres_url_without_the_driver_names_the_extra() -> None:
    done = _cli_without_psycopg("list", "--db", "postgresql://reader:secret@127.0.0.1:9/library")
    assert done.returncode == 2, done.stderr
    message = done.stderr.strip().splitlines()[-1]
    assert message.startswith("megalodoc list: cannot open database postgresql+psycopg://reader:***@127.0.0.1:9/")
    assert "(psycopg) is not installed" in message and "pip install 'megalodoc[postgres]'" in message
    assert "secret" not in done.stderr and "Traceback" not in done.stderr


def test_sqlite_needs_no_postgres_driver(tmp_path: Path) -> None:
    done = _cli_without_psycopg("list", "--db", str(tmp_path / "library.db"))
    assert (done.returncode, done.stdout.strip()) == (0, "no documents"), done.stderr
