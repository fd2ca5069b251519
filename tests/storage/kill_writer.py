"""A writer process for the crash test: streams snapshots (with their chunk text and locations) into a
store and prints each committed position, until it is killed. Not a test module.

usage: python kill_writer.py URL DOCUMENT_ID FIRST_INDEX STATE_BYTES
Snapshot i lies at position i * STEP with bytes state_bytes(i, STATE_BYTES).
"""

from __future__ import annotations

import sys

from storage_testkit import MODEL, state_bytes

from megalodoc.storage import ChunkText, Location, open_store

STEP = 64


def main() -> None:
    url, document_id, first, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    with open_store(url) as store:
        index = first
        while True:
            position = index * STEP
            store.add_snapshot(
                document_id,
                position,
                state_bytes(index, size),
                MODEL,
                1,
                {"index": index},
                chunks=[ChunkText(position - STEP, position, f"chunk {index} text")],
                locations=[Location.page_range(position - STEP, position, index)],
            )
            print(position, flush=True)
            index += 1


if __name__ == "__main__":
    main()
