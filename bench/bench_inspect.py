"""Time `inspect-data` as a user runs it: a fresh process, from start until the figures are printed, and in all.

Each run is `python -c "from ocr.cli.inspect import main; ..."` in a new process (imports, settings, the scan of
every split, the ceiling at each size, the table), timed by when each stdout line arrives; W&B logging and the
PNGs come after the table and are timed apart. Target (issue 13): the figures for 640/800/1024/1280 on the 16
validation receipts of ../shared in under 30 s on this machine (2 cores).

    python bench/bench_inspect.py [--data ../shared/data/receipts-sroie] [--repeat 3] [--wandb-mode offline]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET_S = 30.0


def timed_run(args: argparse.Namespace, out: Path) -> dict:
    """Seconds from process start to the first table row, to the recommendation, and to the end."""
    argv = ["inspect-data", "--data", str(args.data), "--split", args.split, "--image-sizes", args.image_sizes,
            "--out", str(out), "--json", str(out / "figures.json")]
    if args.workers:
        argv += ["--workers", str(args.workers)]
    code = f"import sys; from ocr.cli.inspect import main; sys.exit(main({argv!r}, 'python wandb_sweep.py'))"
    env = {**os.environ, "WANDB_MODE": args.wandb_mode, "WANDB_DIR": str(out), "WANDB_SILENT": "true"}
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    marks, lines = {}, []
    for line in process.stdout:
        lines.append(line.rstrip("\n"))
        now = time.perf_counter() - start
        if line.lstrip().startswith("size") and "hmean" in line:
            marks.setdefault("table", now)
        if line.startswith("recommendation"):
            marks.setdefault("figures", now)
    if process.wait() != 0:
        raise SystemExit(f"inspect-data failed (exit {process.returncode}):\n" + "\n".join(lines[-20:]))
    return {**marks, "total": time.perf_counter() - start, "lines": lines}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "receipts-sroie")
    parser.add_argument("--split", default="val")
    parser.add_argument("--image-sizes", default="640,800,1024,1280")
    parser.add_argument("--workers", type=int, help="--workers of inspect-data (default: its own)")
    parser.add_argument("--wandb-mode", default="offline", choices=("offline", "disabled"))
    parser.add_argument("--repeat", type=int, default=3, help="fresh processes to time (default 3)")
    parser.add_argument("--json", type=Path, help="also write the timings here")
    args = parser.parse_args()
    if not (args.data / "jsons" / f"{args.split}.json").is_file():
        raise SystemExit(f"no {args.split} labels under {args.data}: pass --data DATASET_ROOT")

    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-inspect-") as tmp:
        for k in range(args.repeat):
            runs.append(timed_run(args, Path(tmp) / f"run{k}"))
    table = [line for line in runs[-1]["lines"] if line.strip()]
    print("\n".join(table))
    print(f"\n{'run':>4}{'table (s)':>11}{'figures (s)':>13}{'total (s)':>11}   (W&B {args.wandb_mode}, "
          f"{os.cpu_count()} cores)")
    for k, r in enumerate(runs):
        print(f"{k:>4}{r['table']:>11.1f}{r['figures']:>13.1f}{r['total']:>11.1f}")
    best = min(r["figures"] for r in runs)
    print(f"figures printed in {best:.1f} s at best (target < {TARGET_S:.0f} s): {'ok' if best < TARGET_S else 'MISSED'}")
    if args.json:
        args.json.write_text(json.dumps([{k: v for k, v in r.items() if k != "lines"} for r in runs], indent=1))


if __name__ == "__main__":
    main()
