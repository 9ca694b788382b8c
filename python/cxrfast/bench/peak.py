"""python -m cxrfast.bench.peak SUITE SCALE DEVICE CASE_ID: one case's peak memory, in this fresh
interpreter, printed as JSON on the last line (see cxrfast.bench.timing)."""

from __future__ import annotations

import json
import sys
import tempfile

from cxrfast.bench.case import Workspace, case_settings
from cxrfast.bench.suites import suite_cases
from cxrfast.bench.timing import peak_of_round


def main(suite: str, scale: str, device: str, case_id: str) -> None:
    case = next(c for c in suite_cases(suite, scale, device) if c.id == case_id)
    with tempfile.TemporaryDirectory(prefix="cxrfast-bench-peak-") as root, case_settings(case):
        step = case.make(Workspace(root, device))
        step.run()  # warm: the peak of a steady round, not of first-call caches
        print(json.dumps({"peak_MiB": peak_of_round(step.run, device)}))
        if step.close is not None:
            step.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
