"""`make gpu-check`, after the Makefile has built cxrfast with CUDA (CXRFAST_CUDA=ON): the tests
marked `gpu`, then a short benchmark table (benchmarks/gpu/: the sparse encoder, the fused
losses, DALI's GPU loading, each against its baselines), `cxrfast bench`'s CUDA path at tiny
sizes, a report in build/gpu-check.md (also
printed), and a non-zero exit on any failure: a failed or stopped test run, a case that raised, a
missing CUDA extension. Without a usable CUDA GPU it stops at once, saying so; it never skips.

Every contender runs in a child process of its own with a time limit, inside a budget for the
whole check (about six minutes on an H200, Triton's first compilations included), so a hang or
a crash costs its own rows, which the report lists as failures, and nothing else.

On a GPU machine that cannot reach a package index, give the Makefile an environment that already
holds CUDA torch and the dependencies, marked set up: `touch ENV/.deps; make gpu-check VENV=ENV`.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
REPORT = ROOT / "build" / "gpu-check.md"
WORK = ROOT / "build" / "gpu-check"  # junit XML, logs and rows of the last check
BUDGET_S = 400  # tests and benchmarks; the build before them takes about a minute on 16 cores
TEST_LIMIT_S = 200
GROUP_LIMIT_S = {"encoder": 90, "losses": 75, "loader": 75}  # each contender's process
BENCH_LIMIT_S = 120  # cxrfast bench's CUDA path at tiny sizes, after the budget above


def gpu_problems() -> list[str]:
    problems = []
    if shutil.which("nvidia-smi") is None:
        problems.append("nvidia-smi is not on the PATH (no NVIDIA driver)")
    elif subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode != 0:
        problems.append("nvidia-smi -L lists no GPU")
    import torch

    if not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        problems.append(f"torch {torch.__version__} ({build}) at {sys.executable} sees no CUDA GPU")
        if not torch.version.cuda:
            problems.append("a CPU torch is what `make setup` installs where nvidia-smi finds no GPU: on a GPU "
                            f"machine, delete {Path(sys.prefix) / '.deps'} and run make gpu-check again")
    return problems


def machine() -> dict[str, str]:
    import torch

    props = torch.cuda.get_device_properties(0)
    query = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                           capture_output=True, text=True)
    driver = query.stdout.strip().splitlines()[0] if query.returncode == 0 and query.stdout.strip() else "unknown"

    def version(package: str) -> str:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return "not installed"

    return {"GPU": f"{props.name}, {props.total_memory / 2**30:.0f} GiB, {props.multi_processor_count} SMs, "
                   f"compute capability {props.major}.{props.minor}",
            "driver": driver, "CUDA (torch's)": str(torch.version.cuda), "torch": torch.__version__,
            "Triton": version("triton"), "DALI": version("nvidia-dali-cuda130"),
            "TF32 allowed": f"matmul {torch.backends.cuda.matmul.allow_tf32}, cuDNN {torch.backends.cudnn.allow_tf32}",
            "host": f"{os.cpu_count()} CPUs, Python {platform.python_version()}",
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def cuda_extension_problem() -> str | None:
    try:
        from cxrfast import _cuda
    except ImportError as error:
        return f"cxrfast._cuda does not import ({error}): the CUDA build failed or did not run"
    if _cuda.device_count() < 1:
        return "cxrfast._cuda is built but sees no GPU"
    return None


def run_group(module, contender: str, limit: float) -> list:
    """The rows of one contender's cases, measured in a child process; a case it did not report
    (crash, timeout) is a failure row saying why."""
    from gpu.measure import Row

    expected = module.cases(contender)
    if limit < 10:
        for row in expected:
            row.error = f"not run: the check's budget of {BUDGET_S} s was spent"
        return expected
    stem = f"{module.SECTION}-{''.join(c if c.isalnum() else '-' for c in contender)}"
    rows_file, log = WORK / f"{stem}.jsonl", WORK / f"{stem}.log"
    rows_file.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "CXRFAST_BACKEND"}
    env.update(module.CONTENDERS[contender], PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(BENCHMARKS), os.environ.get("PYTHONPATH")])))
    started = time.perf_counter()
    with open(log, "w") as out:
        child = subprocess.Popen([sys.executable, "-m", "gpu.worker", module.SECTION, contender, str(rows_file)],
                                 stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env, start_new_session=True)
        try:
            code = child.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            code = None
    done = {}
    if rows_file.exists():
        for line in rows_file.read_text().splitlines():
            row = Row(**json.loads(line))
            done[row.key] = row
    if code is None:
        why = f"not measured: its process was stopped after {limit:.0f} s (log: {log})"
    else:
        tail = log.read_text().strip().splitlines()[-1:] or [""]
        why = f"not measured: its process exited with status {code} ({tail[0][:300]}; log: {log})"
    rows = []
    for row in expected:
        if row.key not in done:
            row.error = why
        rows.append(done.get(row.key, row))
    failed = sum(r.error is not None for r in rows)
    print(f"  {module.SECTION} | {contender}: {len(rows) - failed}/{len(rows)} cases measured in "
          f"{time.perf_counter() - started:.0f} s", flush=True)
    return rows


def run_cxrfast_bench(limit: float) -> tuple[str, str | None]:
    """`cxrfast bench sparse losses --device cuda --scale tiny` in a child process: the Triton and
    CUDA backends as its contenders, at sizes that check the command's CUDA path rather than
    measure it. The Markdown it wrote, and the problem if it failed."""
    out, log = WORK / "cxrfast-bench", WORK / "cxrfast-bench.log"
    command = [sys.executable, "-m", "cxrfast.cli", "bench", "sparse", "losses", "--device", "cuda", "--scale",
               "tiny", "--out", str(out)]
    print(f"cxrfast bench: {' '.join(command[3:])} (log: {log})", flush=True)
    with open(log, "w") as to_log:
        try:
            code = subprocess.run(command, stdout=to_log, stderr=subprocess.STDOUT, cwd=ROOT, timeout=limit).returncode
        except subprocess.TimeoutExpired:
            return "", f"cxrfast bench was stopped after {limit:.0f} s (log: {log})"
    table = (out / "bench.md").read_text() if (out / "bench.md").exists() else ""
    return table, None if code == 0 else f"cxrfast bench exited with status {code} (log: {log})"


def main() -> int:
    problems = gpu_problems()
    if problems:
        print("gpu-check needs a CUDA GPU, and there is none usable here:", *problems, sep="\n  - ", file=sys.stderr)
        print("It builds cxrfast with CUDA, runs the tests marked gpu and the GPU benchmarks: run it on a machine "
              "with an NVIDIA GPU and CUDA torch.", file=sys.stderr)
        return 1
    from gpu import encoder, loader, losses
    from gpu.report import failure_count, write_report
    from gpu.tests_run import run_gpu_tests

    deadline = time.perf_counter() + BUDGET_S
    WORK.mkdir(parents=True, exist_ok=True)
    info = machine()
    checks = [p for p in [cuda_extension_problem()] if p]
    info["cxrfast._cuda"] = checks[0] if checks else "built, sees the GPU"
    print(f"gpu-check on {info['GPU']}: tests marked gpu (log: build/gpu-check/tests.log)", flush=True)
    tests = run_gpu_tests(ROOT, WORK / "junit.xml", WORK / "tests.log", min(TEST_LIMIT_S, deadline - time.perf_counter()))
    print(f"  {tests.passed} passed, {len(tests.failed)} failed, {len(tests.skipped)} skipped in {tests.seconds:.0f} s"
          + (f"; {tests.problem}" if tests.problem else ""), flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="cxrfast-gpu-check-") as scratch:
        os.environ[loader.DATA_VARIABLE] = scratch
        for section in (encoder, losses, loader):
            print(f"benchmarks: {section.TITLE}", flush=True)
            if section is loader:
                started = time.perf_counter()
                try:
                    loader.write_phantoms(Path(scratch))
                except Exception as error:  # the loader's cases cannot run: each is a failure
                    for contender in section.CONTENDERS:
                        rows += [replace(r, error=f"not run: writing the phantoms failed: {error!r}")
                                 for r in section.cases(contender)]
                    continue
                print(f"  phantoms written in {time.perf_counter() - started:.0f} s", flush=True)
            for contender in section.CONTENDERS:
                limit = min(GROUP_LIMIT_S[section.SECTION], deadline - time.perf_counter())
                rows += run_group(section, contender, limit)
    bench_table, bench_problem = run_cxrfast_bench(BENCH_LIMIT_S)
    checks += [bench_problem] if bench_problem else []
    write_report(REPORT, info, tests, (encoder, losses, loader), rows, checks, bench_table)
    print(REPORT.read_text())
    failures = failure_count(tests, rows, checks)
    print(f"gpu-check: {'FAILED, ' + str(failures) + ' failures' if failures else 'passed'}; report in "
          f"{REPORT.relative_to(ROOT)}", file=sys.stderr if failures else sys.stdout)
    return 1 if failures else 0


if __name__ == "__main__":
    multiprocessing.set_start_method("spawn")  # phantom writers: never fork a process that holds CUDA
    sys.exit(main())
