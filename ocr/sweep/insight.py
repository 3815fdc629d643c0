"""What a finished sweep says: parameter importance for its metric, what it cost, and its figures (matplotlib, Agg)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ocr.config.checks import EPOCHS_KEY
from ocr.sweep.spec import best_value, command_overrides, maximize, metric_name
from ocr.sweep.store import Trial
from ocr.utils.display import pyplot, save_figure
from ocr.utils.errors import is_finite_number

MIN_TRIALS = 10  # fewer finished trials than this: the importance is a hint, not a finding
DONE = ("finished", "stopped")


@dataclass(frozen=True)
class TrialRow:
    """One trial, local or on W&B: parameter values, the sweep metric per logged epoch, its best value and time."""

    run_id: str
    state: str  # finished, stopped (by hyperband), failed, killed, crashed, running, pending
    params: dict[str, Any]
    history: list[float]
    value: float | None
    seconds: float | None = None
    max_epochs: int | None = None  # the epochs it was set to train
    started: float | None = None


@dataclass(frozen=True)
class Importance:
    keys: list[str]  # most important first
    forest: list[float]
    correlation: list[float]
    trials: int
    warning: str | None


@dataclass(frozen=True)
class Cost:
    states: dict[str, int]
    epochs: int  # epochs trained
    full_epochs: int  # epochs the same trials would have trained without early stopping
    seconds: float  # trial time, summed
    span: float | None  # first start to last end


def trial_row(config: dict[str, Any], run_id: str, state: str, params: dict[str, Any], records: list[dict[str, Any]],
              final: dict[str, Any], seconds: float | None = None, started: float | None = None) -> TrialRow:
    """A row from a trial's parameters (the sweep command's fixed ones added), epoch records and final record."""
    name = metric_name(config)
    params = {**{k: v["value"] for k, v in command_overrides(config, "the sweep's command").items()}, **params}
    history = [float(r[name]) for r in records if is_finite_number(r.get(name))]
    return TrialRow(run_id, state, params, history, best_value(config, [*records, final]), seconds,
                    params.get(EPOCHS_KEY), started)


def local_rows(config: dict[str, Any], trials: list[Trial]) -> list[TrialRow]:
    """The trials of a local sweep as rows (a hyperband-stopped trial has state `stopped`)."""
    return [trial_row(config, t.run_id, t.label, {k: v["value"] for k, v in t.params.items()}, t.history, t.summary,
                      t.ended - t.started if t.ended and t.started else None, t.started) for t in trials]


def wandb_rows(sweep: Any, history: bool = True) -> list[TrialRow]:
    """The runs of a W&B sweep as rows: the metric from each run's summary and, with `history`, from its logged
    history (read from the server)."""
    config, name = sweep.config, metric_name(sweep.config)
    return [trial_row(config, run.id, run.state, {k: run.config[k] for k in config.get("parameters", {})
                                                  if k in run.config},
                      list(run.scan_history(keys=[name])) if history else [], dict(run.summary),
                      run.summary.get("_runtime")) for run in sweep.runs]


def varying(config: dict[str, Any]) -> list[str]:
    """The parameters the sweep searches (not the constant ones)."""
    return [k for k, spec in config.get("parameters", {}).items() if "value" not in spec]


def finished(rows: list[TrialRow]) -> list[TrialRow]:
    return [r for r in rows if r.state in DONE and r.value is not None]


def hyperband_bands(config: dict[str, Any]) -> list[int]:
    """History indices hyperband checks, as the `sweeps` engine draws them (band b: once b+1 epochs are logged)."""
    et = config.get("early_terminate") or {}
    eta = et.get("eta", 3)
    if "max_iter" in et:
        bands = [int(et["max_iter"] / eta ** i) for i in range(1, et.get("s", 0) + 1)]
        return sorted(b for b in bands if b >= 1)
    return [int(et["min_iter"] * eta ** k) for k in range(30)] if "min_iter" in et else []


def _axis(config: dict[str, Any], key: str, values: list[Any]) -> tuple[Any, list[tuple[float, str]], list[str] | None]:
    """(each value's position, the positions to label, the categories or None) of parameter `key`: numbers as they
    are (log10 for log distributions), anything else by its place among the sorted distinct values."""
    import numpy as np

    spec = config.get("parameters", {}).get(key, {})
    if all(is_finite_number(v) for v in values):
        x = np.array(values, dtype=float)
        x = np.log10(x) if "log" in str(spec.get("distribution", "")) and x.min() > 0 else x
        marks = sorted(set(values)) if "values" in spec else [min(values), max(values)]
        return x, [(x[values.index(v)], f"{v:.3g}") for v in marks], None
    cats = sorted({str(v) for v in values})
    return np.array([cats.index(str(v)) for v in values], dtype=float), list(enumerate(cats)), cats


def importance(config: dict[str, Any], rows: list[TrialRow]) -> Importance:
    """Over the finished trials: random-forest importance of each searched parameter for the metric (categories
    one-hot, summed back) and its Pearson correlation with it (log10 for log distributions, categories by place)."""
    import numpy as np
    from sklearn.ensemble import RandomForestRegressor

    done, keys = finished(rows), varying(config)
    warn = (f"only {len(done)} finished trial(s): read the importance as a hint (it needs about {MIN_TRIALS})"
            if len(done) < MIN_TRIALS else None)
    if len(done) < 2 or not keys:
        return Importance([], [], [], len(done), warn)
    y = np.array([r.value for r in done])
    columns, owner, corr = [], [], []
    for i, key in enumerate(keys):
        x, _, cats = _axis(config, key, [r.params.get(key) for r in done])
        columns += [x] if cats is None else [x == c for c in range(len(cats))]
        owner += [i] * (1 if cats is None else len(cats))
        corr.append(float(np.corrcoef(x, y)[0, 1]) if x.std() > 0 and y.std() > 0 else 0.0)
    forest = RandomForestRegressor(n_estimators=200, random_state=0).fit(np.stack(columns, axis=1), y)
    share = np.bincount(owner, weights=forest.feature_importances_, minlength=len(keys))
    order = sorted(range(len(keys)), key=lambda i: -share[i])
    return Importance([keys[i] for i in order], [float(share[i]) for i in order], [corr[i] for i in order],
                      len(done), warn)


def cost(rows: list[TrialRow]) -> Cost:
    """Trials by state; epochs trained vs without early stopping (a stopped trial would have run to its max_epochs,
    else to the longest trial that ran to its end); trial time and the sweep's span."""
    full_run = max((len(r.history) for r in rows if r.state == "finished"), default=0)
    trained = sum(len(r.history) for r in rows)
    full = sum(max(len(r.history), r.max_epochs or full_run) if r.state == "stopped" else len(r.history) for r in rows)
    timed = [r for r in rows if r.seconds is not None]
    starts = [r for r in timed if r.started is not None]
    span = max(r.started + r.seconds for r in starts) - min(r.started for r in starts) if starts else None
    return Cost(dict(Counter(r.state for r in rows)), trained, full, sum(r.seconds for r in timed), span)


def importance_png(imp: Importance, metric: str, path: Path) -> Path:
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, sharey=True, figsize=(10, 0.45 * len(imp.keys) + 1.6),
                                      constrained_layout=True)
    y = list(range(len(imp.keys)))[::-1]
    left.barh(y, imp.forest, color="tab:blue")
    left.set(yticks=y, yticklabels=imp.keys, xlabel="random-forest importance", title=f"{metric}: {imp.trials} trials")
    right.barh(y, imp.correlation, color=["tab:green" if c >= 0 else "tab:red" for c in imp.correlation])
    right.set(xlim=(-1, 1), xlabel="correlation with the metric", title="Pearson correlation")
    right.axvline(0, color="black", linewidth=0.8)
    return save_figure(fig, path, dpi=90)


def parallel_png(config: dict[str, Any], rows: list[TrialRow], path: Path) -> Path:
    """Every finished trial as a line across its parameters (log axes for log distributions) and the metric."""
    import numpy as np

    plt = pyplot()
    done, metric, keys = finished(rows), metric_name(config), varying(config)
    fig, ax = plt.subplots(figsize=(max(6.0, 2.2 * len(keys) + 2), 4.5), constrained_layout=True)
    cols = []
    for j, key in enumerate([*keys, metric]):
        x, marks, _ = _axis(config, key, [r.value if key == metric else r.params.get(key) for r in done])
        lo, width = x.min(), x.max() - x.min()
        cols.append((x - lo) / width if width else x * 0 + 0.5)
        for pos, text in marks:
            ax.annotate(text, (j, (pos - lo) / width if width else 0.5), xytext=(3, 0), textcoords="offset points",
                        fontsize=8, va="center")
    norm = plt.Normalize(min(r.value for r in done), max(r.value for r in done))
    for i, r in sorted(enumerate(done), key=lambda p: p[1].value, reverse=not maximize(config)):
        ax.plot(range(len(cols)), [c[i] for c in cols], color=plt.cm.viridis(norm(r.value)), alpha=0.8)
    for j in range(len(cols)):
        ax.axvline(j, color="black", linewidth=0.8)
    ax.set(xticks=range(len(cols)), xticklabels=[k.rsplit(".", 1)[-1] for k in [*keys, metric]], yticks=[],
           title=f"{len(done)} finished trials, coloured by {metric}")
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap="viridis"), ax=ax, label=metric)
    return save_figure(fig, path, dpi=90)


def curves_png(config: dict[str, Any], rows: list[TrialRow], path: Path) -> Path:
    """The metric per logged epoch of every trial; a cross where hyperband stopped one; its checks as dotted lines."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 4.5), constrained_layout=True)
    done = [r.value for r in finished(rows)]
    norm = plt.Normalize(min(done), max(done))
    for r in (r for r in rows if r.history):
        x = range(1, len(r.history) + 1)
        colour = plt.cm.viridis(norm(r.value)) if r.value is not None else "grey"
        ax.plot(x, r.history, color=colour, linestyle="-" if r.state in DONE else "--", marker=".", alpha=0.85)
        if r.state == "stopped":
            ax.plot(len(r.history), r.history[-1], "x", color="red", markersize=10, markeredgewidth=2)
    longest = max((len(r.history) for r in rows), default=1)
    for b in (b for b in hyperband_bands(config) if b + 1 <= longest):
        ax.axvline(b + 1, color="grey", linestyle=":")
        ax.annotate(f" hyperband check (band {b})", (b + 1, 0.98), xycoords=("data", "axes fraction"), rotation=90,
                    fontsize=8, va="top")
    ax.plot([], [], "x", color="red", label="stopped by hyperband")
    ax.plot([], [], "--", color="grey", label="failed / interrupted")
    ax.set(xlabel="epochs logged", ylabel=metric_name(config), title="learning curves (colour: best value)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=8)
    return save_figure(fig, path, dpi=90)
