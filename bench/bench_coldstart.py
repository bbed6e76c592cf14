"""Cold-start import cost of the Lambda handler modules.

For each module: ``python -X importtime -c "import <module>"`` in a fresh interpreter, several times;
the figure is the median cumulative import time of the module itself (what ``-X importtime`` prints on
its line), plus the wall time of the whole interpreter run.  Target: <= 300 ms per handler module.

The machine is shared, so two anchors are measured in the same run and the ratios printed:
``import json`` (the floor: a small stdlib package) and ``import pydantic`` (the library the settings
layer cannot do without).  Also checks that no heavy media library was imported on the way.

    .venv/bin/python bench/bench_coldstart.py [--runs 9] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HANDLERS = [
    "handlers.s3_trigger",
    "handlers.sqs_trigger",
    "handlers.batch_events",
    "handlers.lambda_function",
]
ANCHORS = ["json", "pydantic"]
HEAVY = ("PIL", "pdfplumber", "pytesseract", "ffmpeg", "imageio_ffmpeg")
TARGET_MS = 300.0
LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)$")


def import_ms(module: str) -> tuple[float, float, list[str]]:
    """(cumulative import ms of ``module``, wall ms of the interpreter, heavy modules seen)."""
    probe = f"import sys, {module}; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    t0 = time.perf_counter()
    res = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", probe],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    )
    wall = (time.perf_counter() - t0) * 1000
    cumulative = None
    for line in res.stderr.splitlines():
        m = LINE.match(line)
        if m and m.group(4) == module and not m.group(3):
            cumulative = int(m.group(2)) / 1000
    if cumulative is None:
        raise SystemExit(f"no -X importtime line for {module}:\n{res.stderr[-2000:]}")
    heavy = [h for h in res.stdout.strip().split(",") if h]
    return cumulative, wall, heavy


SETUP_PROBE = """
import os, sys, tempfile, time
os.environ["MEDIA_WORKER_WORKSPACE"] = tempfile.mkdtemp()
t0 = time.perf_counter()
import handlers.lambda_function
t1 = time.perf_counter()
from handlers.runtime import runtime
runtime()
t2 = time.perf_counter()
heavy = [m for m in HEAVY if m in sys.modules]
print((t1 - t0) * 1000, (t2 - t1) * 1000, ",".join(heavy))
"""


def setup_ms() -> tuple[float, float, list[str]]:
    """(import ms, first-invocation set-up ms: settings + engine + pipeline registry, heavy modules)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDIA_WORKER_")}
    res = subprocess.run(
        [sys.executable, "-c", f"HEAVY = {HEAVY!r}\n" + SETUP_PROBE],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
        env=env,
    )
    imp, setup, heavy = [*res.stdout.strip().split(" "), ""][:3]
    return float(imp), float(setup), [h for h in heavy.split(",") if h]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--json", action="store_true", help="print one JSON document instead of a table")
    args = ap.parse_args()
    modules = [*ANCHORS, *HANDLERS]
    samples: dict[str, list[tuple[float, float, list[str]]]] = {m: [] for m in modules}
    setups: list[tuple[float, float, list[str]]] = []
    for _ in range(args.runs):  # interleaved, so load changes hit every module alike
        for m in modules:
            samples[m].append(import_ms(m))
        setups.append(setup_ms())
    report = {}
    for m in modules:
        imp = statistics.median(s[0] for s in samples[m])
        wall = statistics.median(s[1] for s in samples[m])
        heavy = sorted({h for s in samples[m] for h in s[2]})
        report[m] = {"import_ms": round(imp, 1), "wall_ms": round(wall, 1), "heavy_imports": heavy}
    for m in HANDLERS:
        for a in ANCHORS:
            report[m][f"x_{a}"] = round(report[m]["import_ms"] / max(report[a]["import_ms"], 0.001), 1)
        report[m]["within_target"] = report[m]["import_ms"] <= TARGET_MS and not report[m]["heavy_imports"]
    first = {
        "import_ms": round(statistics.median(s[0] for s in setups), 1),
        "setup_ms": round(statistics.median(s[1] for s in setups), 1),
        "heavy_imports_after_setup": sorted({h for s in setups for h in s[2]}),
    }
    first["x_pydantic"] = round((first["import_ms"] + first["setup_ms"]) / report["pydantic"]["import_ms"], 1)
    if args.json:
        doc = {"runs": args.runs, "target_ms": TARGET_MS, "modules": report, "first_invocation": first}
        print(json.dumps(doc, indent=2))
    else:
        print(f"median of {args.runs} runs; target <= {TARGET_MS:.0f} ms import per handler module")
        print(f"{'module':28} {'import ms':>10} {'wall ms':>9} {'x json':>8} {'x pydantic':>11}  heavy")
        for m in modules:
            r = report[m]
            print(
                f"{m:28} {r['import_ms']:10.1f} {r['wall_ms']:9.1f} {r.get('x_json', ''):>8} "
                f"{r.get('x_pydantic', ''):>11}  {','.join(r['heavy_imports']) or '-'}"
            )
        print(
            f"first invocation of handlers.lambda_function (no -X importtime): import {first['import_ms']} ms"
            f" + settings/engine/registry set-up {first['setup_ms']} ms"
            f" = {first['x_pydantic']} x pydantic; heavy after set-up: "
            f"{','.join(first['heavy_imports_after_setup']) or '-'}"
        )
    if not all(report[m]["within_target"] for m in HANDLERS):
        sys.exit(1)


if __name__ == "__main__":
    main()
