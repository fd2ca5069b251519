"""Two ingest worker processes sharing one PostgreSQL store never read the same document twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from pipeline_support import make_model_folder

pytestmark = pytest.mark.postgres
STDLIB = Path(sysconfig.get_paths()["stdlib"])

WORKER = """
import json, sys
from megalodoc.ingest.library import Library
lib = Library(sys.argv[1], sys.argv[2])
outcomes = lib.ingest_many(sys.argv[3:])
print(json.dumps([[o.path, o.status, o.document.id if o.document else None] for o in outcomes]))
"""


def test_two_workers_share_the_documents(tmp_path, tokenizer, fresh_database):
    from megalodoc.storage import open_store

    (tmp_path / "tok.model").write_bytes(tokenizer.model_bytes())
    model_dir = make_model_folder(tmp_path / "model", tmp_path / "tok.model", tokenizer.vocab_size)
    paths = []
    for i, name in enumerate(["this.py", "keyword.py", "bisect.py", "colorsys.py", "fnmatch.py"]):
        target = tmp_path / f"doc{i}.txt"
        target.write_text((STDLIB / name).read_text()[:700])
        paths.append(str(target))
    open_store(fresh_database).close()  # create the schema once, before the workers race
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, fresh_database, str(model_dir), *order],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
        for order in (paths, list(reversed(paths)))
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    read_by = {}
    for worker, outcomes in enumerate(results):
        for path, status, _ in outcomes:
            assert status in ("complete", "busy", "already-complete"), (path, status)
            if status == "complete":
                assert path not in read_by, f"{path} was read by two workers"
                read_by[path] = worker
    with open_store(fresh_database) as store:
        documents = store.list_documents()
        assert len(documents) == len(paths) and all(d.status == "complete" for d in documents)
        for d in documents:
            positions = [s.position for s in store.list_snapshots(d.id)]
            assert positions == sorted(set(positions)) and positions[-1] == d.token_count
    # every document was read exactly once, by one of the two workers (busy ones were skipped)
    assert len(read_by) == len(paths)
