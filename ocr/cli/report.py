"""`report`: a sweep on one self-contained HTML page (parameter importance, parallel coordinates, learning curves,
the best trials, what it cost) plus its PNGs; the figures are also logged to W&B (an offline run without a key).

    python wandb_sweep.py report [--sweep-id ID] [--out DIR] [--store DIR] [--top N]
"""

from __future__ import annotations

import argparse
import base64
import html
import sys
import time
from pathlib import Path
from typing import Any

from ocr.inference.tuned import TUNED_FILE
from ocr.sweep import insight, online
from ocr.sweep.report import fmt_duration, fmt_metric, ranked, reproduce
from ocr.sweep.spec import maximize, metric_name
from ocr.sweep.store import DEFAULT_ROOT, is_local_sweep, open_sweep, sweep_id_or_newest, sweep_ids
from ocr.utils.display import run_where, wandb_images, wandb_run
from ocr.utils.env import subcommand_main, wandb_key_is_set
from ocr.utils.errors import ArgumentParser, UserError, first_line, positive_int

COMMAND = "report"
OVERLAYS = 4


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("--sweep-id", metavar="ID", help="local- id or W&B sweep path (default: the newest local sweep)")
    p.add_argument("--out", type=Path, metavar="DIR", help="folder of report.html and its PNGs "
                   "(default outputs/sweep-report/<id>)")
    p.add_argument("--store", type=Path, default=DEFAULT_ROOT, metavar="DIR", help="local sweeps (default .sweeps)")
    p.add_argument("--top", type=positive_int, default=5, metavar="N", help="best trials listed (default 5)")
    return p


def load(args: argparse.Namespace) -> tuple[str, dict[str, Any], list[insight.TrialRow], Path | None, str]:
    """(sweep id, config, rows, the local sweep's folder or None, W&B project) of the sweep asked for."""
    sweep_id = sweep_id_or_newest(args.store, args.sweep_id)
    if is_local_sweep(args.store, sweep_id):
        sweep = open_sweep(args.store, sweep_id)
        return sweep_id, sweep.config, insight.local_rows(sweep.config, sweep.trials()), sweep.dir, sweep.project
    if not wandb_key_is_set():
        raise UserError(f"no local sweep {sweep_id!r} in {args.store}/ (local sweeps: "
                        f"{', '.join(sweep_ids(args.store)) or 'none'}), and reading a W&B sweep needs an API key: "
                        "run `wandb login` or set WANDB_API_KEY in .env")
    remote = online.fetch_sweep(sweep_id, online.project_name(), online.entity_name())
    try:
        rows = insight.wandb_rows(remote)
    except Exception as err:  # noqa: BLE001 - network or server errors of any kind
        raise UserError(f"could not read the runs of W&B sweep {sweep_id}: {first_line(err)}") from None
    return sweep_id, remote.config, rows, None, remote.project


def img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def table(head: list[str], rows: list[list[Any]]) -> str:
    text = lambda c: f"{c:.4g}" if isinstance(c, float) else str(c)  # noqa: E731
    cells = lambda tag, row: "".join(f"<{tag}>{html.escape(text(c))}</{tag}>" for c in row)  # noqa: E731
    return f"<table><tr>{cells('th', head)}</tr>" + "".join(f"<tr>{cells('td', r)}</tr>" for r in rows) + "</table>"


def best_run_extras(trial_dir: Path) -> tuple[list[Path], str | None]:
    """The best trial's validation overlays (drawn ones, else the last logged to its W&B run) and tuned values."""
    run_dir = trial_dir / "run"
    logged = sorted(run_dir.glob("wandb/*/files/media/images/val/predictions/*.png"),
                    key=lambda p: int(p.stem.rsplit("_", 2)[-2]) if p.stem.count("_") >= 2 else 0)
    latest = {p.stem.rsplit("_", 2)[0]: p for p in logged}  # each image at its last logged step
    overlays = (sorted(run_dir.glob("overlays/*/*.png")) or sorted(latest.values()))[:OVERLAYS]
    tuned = run_dir / TUNED_FILE
    return overlays, tuned.read_text(encoding="utf-8") if tuned.is_file() else None


def write_report(sweep_id: str, config: dict[str, Any], rows: list[insight.TrialRow], sweep_dir: Path | None,
                 out: Path, top: int) -> tuple[Path, dict[str, Path]]:
    """report.html and its PNGs in `out`; returns the page and the figures by name."""
    metric, done, c = metric_name(config), insight.finished(rows), insight.cost(rows)
    if not done:
        states = ", ".join(f"{n} {s}" for s, n in c.states.items()) or "no trials"
        raise UserError(f"sweep {sweep_id} has no finished trial with a {metric} value yet ({states}): run agents "
                        f"first (python wandb_sweep.py --sweep-id {sweep_id})")
    keys, imp = insight.varying(config), insight.importance(config, rows)
    pngs = {"parallel_coordinates": insight.parallel_png(config, rows, out / "parallel_coordinates.png"),
            "learning_curves": insight.curves_png(config, rows, out / "learning_curves.png")}
    if imp.keys:
        pngs = {"importance": insight.importance_png(imp, metric, out / "importance.png"), **pngs}
    best = ranked(config, done)[:top]
    parts = [f"<h1>Sweep {html.escape(sweep_id)}</h1><p>{len(rows)} trials, {config.get('method')} search, "
             f"{html.escape(metric)} ({'maximize' if maximize(config) else 'minimize'})</p>",
             "<h2>Parameter importance</h2>" + (f"<p>{imp.trials} finished trials.</p>" if imp.keys else "") +
             (f'<p class="warn">{html.escape(imp.warning)}</p>' if imp.warning else "") +
             (img(pngs["importance"], "importance") if imp.keys else "<p>(needs 2 finished trials)</p>"),
             "<h2>Parallel coordinates</h2>" + img(pngs["parallel_coordinates"], "parallel coordinates"),
             "<h2>Learning curves</h2>" + img(pngs["learning_curves"], "learning curves"),
             "<h2>Best trials</h2>" + table(["#", "run", "state", metric, "epochs", "time", "reproduce with"], [
                 [i, r.run_id, r.state, fmt_metric(r.value), len(r.history), fmt_duration(r.seconds),
                  reproduce(config, r)] for i, r in enumerate(best, 1)])]
    if sweep_dir is not None:
        overlays, tuned = best_run_extras(sweep_dir / "trials" / best[0].run_id)
        if overlays:
            parts.append(f"<h3>Validation overlays of {best[0].run_id} (green: true, red: predicted)</h3>" +
                         "".join(img(p, p.name) for p in overlays))
        if tuned:
            parts.append(f"<h3>Tuned post-processing of {best[0].run_id}</h3><pre>{html.escape(tuned)}</pre>")
    saved = f" ({1 - c.epochs / c.full_epochs:.0%} saved by early stopping)" if c.full_epochs else ""
    parts += ["<h2>Cost</h2>" + table(["", ""], [
        ["trials by state", ", ".join(f"{s}: {n}" for s, n in sorted(c.states.items()))],
        ["epochs trained", f"{c.epochs} of {c.full_epochs} without early stopping{saved}"],
        ["trial time (sum)", fmt_duration(c.seconds)], ["wall time", fmt_duration(c.span)]]),
        "<h2>All trials</h2>" + table(["run", "state", metric, "epochs", *keys], [
            [r.run_id, r.state, fmt_metric(r.value), len(r.history), *(r.params.get(k, "-") for k in keys)]
            for r in rows])]
    style = ("body{font-family:sans-serif;max-width:1100px;margin:auto}img{max-width:100%}.warn{color:#b00}"
             "table{border-collapse:collapse;font-size:13px}"
             "td,th{border:1px solid #ccc;padding:3px 6px;vertical-align:top}")
    page = out / "report.html"
    page.write_text(f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Sweep {html.escape(sweep_id)}</title>"
                    f"<style>{style}</style></head><body>{''.join(parts)}</body></html>\n", encoding="utf-8")
    return page, pngs


def run(args: argparse.Namespace) -> int:
    """Read the sweep, write the page and its PNGs, log the figures to W&B."""
    start = time.perf_counter()
    sweep_id, config, rows, sweep_dir, project = load(args)
    out = args.out or Path("outputs") / "sweep-report" / sweep_id.replace("/", "-")
    page, pngs = write_report(sweep_id, config, rows, sweep_dir, out, args.top)
    print(f"report of {sweep_id} ({len(rows)} trials): {page} and {len(pngs)} PNGs "
          f"({time.perf_counter() - start:.1f} s)")
    with wandb_run("sweep-report", project=project, dir=str(out), config={"sweep_id": sweep_id}) as wb:
        if wb is not None:
            wb.log(wandb_images("sweep_report", pngs.items()))
            print(f"W&B: logged {len(pngs)} figures to {run_where(wb)}")
    return 0


def main(argv: list[str] | None = None, prog: str = "python wandb_sweep.py") -> int:
    """`report [options]` (the command word optional); a mistake prints one line and gives status 2."""
    return subcommand_main(COMMAND, build_parser, run, argv, prog)


if __name__ == "__main__":
    sys.exit(main())
