"""One contender of one benchmark section, in a process of its own (its CXRFAST_BACKEND set by the
parent before anything is imported, and a crash or a broken CUDA context confined to it):

    python -m gpu.worker SECTION CONTENDER ROWS.jsonl

Each case's row is appended to ROWS.jsonl as soon as it is measured, so that the rows done before
a crash or a timeout survive it."""

from __future__ import annotations

import importlib
import json
import sys
from dataclasses import asdict


def main(section: str, contender: str, rows: str) -> None:
    module = importlib.import_module(f"gpu.{section}")
    with open(rows, "a") as out:
        for row in module.run(contender):
            out.write(json.dumps(asdict(row)) + "\n")
            out.flush()
            state = row.error or row.unsupported or f"{row.ms:.2f} ms"
            print(f"{row.case} | {row.precision} | {contender}: {state}", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
