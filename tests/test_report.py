"""The sweep report: importance on a sweep whose metric one parameter decides, the cost summary, the HTML page."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from ocr.cli import report
from ocr.sweep import insight
from ocr.sweep.controller import METRICS_FILE, read_metrics
from ocr.sweep.store import Trial, create_sweep

METRIC = "val/cleval_hmean"
CONFIG = {
    "program": "ocr.train",
    "command": ["${env}", "${interpreter}", "-m", "${program}", "trainer.max_epochs=4", "${args_no_hyphens}"],
    "method": "random",
    "metric": {"name": METRIC, "goal": "maximize"},
    "early_terminate": {"type": "hyperband", "min_iter": 1, "eta": 2},
    "parameters": {
        "optimizer.lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-2},
        "batch_size": {"values": [4, 8, 16]},
        "models.encoder.model_name": {"values": ["hrnet_w18", "hrnet_w32"]},
        "image_size": {"value": 640},
    },
}


def add_trial(sweep, number: int, params: dict, curve: list[float], state: str = "finished", stopped: bool = False):
    """A trial recorded as the agent records it: its metrics file written, then read back into the store."""
    run_id = f"t{number:03d}"
    folder = sweep.trial_dir(run_id)
    folder.mkdir(parents=True)
    lines = [{"epoch": e, METRIC: v, "val/loss": 1.0 - v} for e, v in enumerate(curve)]
    if state == "finished" and not stopped:
        lines.append({"final": True, METRIC: max(curve)})
    (folder / METRICS_FILE).write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    history, final = read_metrics(folder / METRICS_FILE)
    with sweep.transaction() as trials:
        trials.append(Trial(run_id, number, {k: {"value": v} for k, v in params.items()}, state=state,
                            stopped=stopped, history=history, summary=final, started=1000.0 + 100 * number,
                            ended=1000.0 + 100 * number + 60 * len(curve)))
    return run_id


@pytest.fixture
def lr_sweep(tmp_path: Path):
    """30 trials whose hmean is a function of the learning rate plus small noise; batch size and model irrelevant;
    every fifth stopped by hyperband after 2 epochs, one failed."""
    rng = np.random.default_rng(0)
    sweep = create_sweep(tmp_path / "store", CONFIG, "proj", None)
    for n in range(1, 31):
        lr = float(10 ** rng.uniform(-4, -2))
        best = 0.3 + 0.2 * (math.log10(lr) + 4) + rng.normal(0, 0.01)
        params = {"optimizer.lr": lr, "batch_size": int(rng.choice([4, 8, 16])),
                  "models.encoder.model_name": str(rng.choice(["hrnet_w18", "hrnet_w32"])), "image_size": 640}
        curve = [best * f for f in (0.4, 0.7, 0.9, 1.0)]
        add_trial(sweep, n, params, curve[:2] if n % 5 == 0 else curve, stopped=n % 5 == 0)
    add_trial(sweep, 31, {"optimizer.lr": 1e-3, "batch_size": 4, "models.encoder.model_name": "hrnet_w18",
                          "image_size": 640}, [0.1], state="failed")
    return sweep


def test_importance_ranks_the_deciding_parameter_first(lr_sweep):
    rows = insight.local_rows(CONFIG, lr_sweep.trials())
    imp = insight.importance(CONFIG, rows)
    assert imp.keys[0] == "optimizer.lr" and imp.forest[0] > 0.7
    assert imp.correlation[0] > 0.6 and all(abs(c) < 0.5 for c in imp.correlation[1:])
    assert imp.trials == 30 and imp.warning is None
    assert "only 3 finished" in insight.importance(CONFIG, rows[:3]).warning


def test_cost_on_a_hand_made_history():
    row = lambda state, n, max_epochs=None, start=0.0: insight.TrialRow(  # noqa: E731
        f"r{start}", state, {}, [0.5] * n, 0.5 if n else None, 10.0 * n, max_epochs, start)
    rows = [row("finished", 4, 4, 0), row("finished", 4, 4, 50), row("stopped", 2, 6, 100),
            row("stopped", 3, None, 120), row("failed", 1, 4, 200), row("running", 0)]
    cost = insight.cost(rows)
    assert cost.states == {"finished": 2, "stopped": 2, "failed": 1, "running": 1}
    assert (cost.epochs, cost.full_epochs) == (14, 4 + 4 + 6 + 4 + 1)  # no max_epochs: the longest finished trial
    assert cost.seconds == 140.0 and cost.span == 210.0


def test_bands_are_the_engines(lr_sweep):
    from sweeps.hyperband_stopping import hyperband_stop_runs
    from sweeps.run import RunState, SweepRun

    for et in ({"type": "hyperband", "min_iter": 1, "eta": 2}, {"type": "hyperband", "max_iter": 27, "eta": 3, "s": 3}):
        config = {**CONFIG, "early_terminate": et}
        run = SweepRun(name="a", state=RunState.running, history=[{METRIC: 0.1}] * 3)
        hyperband_stop_runs([run], config)
        assert insight.hyperband_bands(config) == run.early_terminate_info["bands"][:len(insight.hyperband_bands(config))]
    assert insight.hyperband_bands(CONFIG)[:3] == [1, 2, 4]


def test_html_holds_every_trial_and_figure_and_opens_offline(lr_sweep, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    best_run = lr_sweep.trial_dir(max(insight.finished(insight.local_rows(CONFIG, lr_sweep.trials())),
                                      key=lambda r: r.value).run_id) / "run"
    (best_run / "overlays" / "tuned").mkdir(parents=True)
    from matplotlib.image import imsave

    imsave(best_run / "overlays" / "tuned" / "val_0.png", np.zeros((8, 8, 3)))
    (best_run / "tuned_postprocess.txt").write_text("# tuned\nmodels.head.postprocess.thresh=0.21\n")
    out = tmp_path / "out"
    assert report.main(["report", "--store", str(lr_sweep.dir.parent), "--out", str(out), "--top", "3"]) == 0
    page = (out / "report.html").read_text(encoding="utf-8")
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["importance.png", "learning_curves.png", "parallel_coordinates.png"]
    assert page.count("<img") == len(pngs) + 1  # and the best trial's overlay
    assert all(t.run_id in page for t in lr_sweep.trials())
    links = re.findall(r"""(?:src|href)\s*=\s*["']?([^"' >]*)""", page)
    assert len(links) == page.count("<img") and all(x.startswith("data:image/png;base64,") for x in links)
    assert "http" not in page and "<script" not in page and "<link" not in page
    assert "thresh=0.21" in page and "python -m ocr.train" in page and "optimizer.lr=" in page
    assert "epochs trained</td><td>109 of 121" in page  # 24 x 4 + 6 x 2 + 1 failed; the 6 stopped ones to 4
    assert lr_sweep.id in capsys.readouterr().out


def test_figures_are_logged_to_an_offline_wandb_run(lr_sweep, tmp_path, capsys):
    assert report.main(["--store", str(lr_sweep.dir.parent), "--out", str(tmp_path / "out")]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("W&B:"))
    assert line.startswith("W&B: logged 3 figures to offline run")
    (folder,) = line.split("`wandb sync ")[1].rstrip(")`").split()
    assert Path(folder) in (tmp_path / "out" / "wandb").glob("offline-run-*")


def test_a_wandb_run_that_cannot_start_is_one_warning(lr_sweep, tmp_path, capsys, monkeypatch):
    import wandb

    def refuse(**_):
        raise wandb.errors.CommError("Network error (ConnectionError)\nretrying")

    monkeypatch.setattr(wandb, "init", refuse)
    assert report.main(["--store", str(lr_sweep.dir.parent), "--out", str(tmp_path / "out")]) == 0
    captured = capsys.readouterr()
    assert (tmp_path / "out" / "report.html").is_file() and "W&B: logged" not in captured.out
    assert captured.err.strip() == ("warning: W&B: not logged (could not start a sweep-report run: CommError: Network "
                                    "error (ConnectionError)); set WANDB_MODE=offline to log offline and `wandb sync` "
                                    "later")


def test_wandb_runs_become_rows():
    from types import SimpleNamespace as NS

    runs = [NS(id="w1", state="finished", config={"optimizer.lr": 1e-3, "unrelated": 1}, summary={METRIC: 0.5,
               "_runtime": 30.0}, scan_history=lambda keys: iter([{METRIC: 0.2}, {METRIC: 0.6}, {"other": 1}])),
            NS(id="w2", state="crashed", config={}, summary={}, scan_history=lambda keys: iter([]))]
    rows = insight.wandb_rows(NS(config=CONFIG, runs=runs))
    assert rows[0].params == {"trainer.max_epochs": 4, "optimizer.lr": 1e-3} and rows[0].history == [0.2, 0.6]
    assert (rows[0].value, rows[0].seconds, rows[0].max_epochs) == (0.6, 30.0, 4)
    assert rows[1].value is None and insight.finished(rows) == rows[:1]


def bad(argv: list[str], capsys) -> str:
    assert report.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err


def test_bad_inputs_are_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    store = tmp_path / "store"
    assert "no local sweep in" in bad(["--store", str(store)], capsys)
    sweep = create_sweep(store, CONFIG, "proj", None)
    assert "unknown sweep id 'local-nothere'" in bad(["--store", str(store), "--sweep-id", "local-nothere"], capsys)
    assert "needs an API key" in bad(["--store", str(store), "--sweep-id", "me/proj/abc"], capsys)
    add_trial(sweep, 1, {"optimizer.lr": 1e-3}, [0.2], state="failed")
    assert "no finished trial" in bad(["--store", str(store), "--out", str(tmp_path / "o")], capsys)
