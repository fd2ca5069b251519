"""`megalodoc --help` describes the program in whole sentences."""

from __future__ import annotations

import subprocess
import sys


def test_help_describes_the_program_in_whole_sentences():
    shown = subprocess.run([sys.executable, "-m", "megalodoc.app.cli", "--help"], capture_output=True, text=True,
                           timeout=60)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    start = lines.index("") + 1  # the description follows the usage lines
    description = " ".join(lines[start : lines.index("", start)])
    assert description.endswith(".") and "megalodoc serve" in description, description  # was cut after "and"
