"""The GPU check of issue 12: training speed, memory against the memory model, data-loader stalls, a forced
out-of-memory error and its retry, two trials of an embedded sweep on GPU 0. One command, at most 8 minutes on one
GPU; every model is built with pretrained=false (nothing is downloaded).

    python bench/gpu_check.py --out bench/results/gpu_check        # on a machine with a CUDA GPU
    python bench/gpu_check.py --dry-run --out /tmp/gpu_check       # every section on the CPU at tiny sizes

Writes OUT/gpu_check.json (every figure) and OUT/gpu_check.txt (the tables it prints). Sections:
  throughput  training images/s of each model at the check's size in fp32, bf16-mixed, bf16-mixed + channels_last
  memory      peak memory of a training step at batch 1, 2, 4, ... until out of memory (torch.cuda's
              max_memory_allocated; on the CPU the resident set) against the memory model's prediction; the
              largest batch that fits against the predicted one; the margin the measurements call for
  loader      the real datamodule (synthetic receipts, the config's num_workers) feeding training steps: time
              spent waiting for batches vs computing
  oom_retry   a run through `ocr.training.run.train` with a batch far above the cap and the cap disabled: each
              out-of-memory error halves the batch and doubles the accumulation (on the CPU the error is simulated)
  sweep       `wandb_sweep.py --offline --create-sweep --count 2 --gpus 0` on a small sweep YAML (the dry run: one
              1-epoch trial on the CPU, no --gpus)
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("WANDB_MODE", "disabled")  # no W&B in the in-process runs; trials of the sweep likewise

from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from ocr.training import module as module_lib  # noqa: E402
from ocr.training import run as run_lib  # noqa: E402
from ocr.training.batch_size import MARGIN, batch_cap, plan_batch  # noqa: E402
from ocr.training.build import build, build_datamodule, build_model  # noqa: E402
from ocr.training.memory import Footprint, footprint, random_batch  # noqa: E402
from ocr.sweep.store import open_sweep, sweep_ids  # noqa: E402

MODES = {"fp32": ("32-true", False), "bf16-mixed": ("bf16-mixed", False), "bf16+channels_last": ("bf16-mixed", True)}


@dataclass(frozen=True)
class Setup:
    """Sizes of one check: the real one on a GPU, or the dry run on the CPU."""

    device: str
    models: tuple[str, ...]
    size: int  # image size of the throughput, memory and loader sections
    steps: int  # timed training steps per throughput row (after `warmup`)
    warmup: int
    speed_batch: int  # throughput batch: at most this, at most the memory model's cap
    max_batch: int  # the largest batch the memory section tries
    loader_images: int
    oom: tuple[str, int, int]  # model, image size, requested batch of the forced out-of-memory run
    sweep: dict[str, Any] = field(default_factory=dict)


GPU = Setup("cuda", ("hrnet_w18", "hrnet_w44"), 1024, steps=10, warmup=3, speed_batch=8, max_batch=64,
            loader_images=96, oom=("hrnet_w44", 1280, 64),
            sweep={"model": "hrnet_w18", "size": 640, "batch": 8, "n_train": 32, "n_val": 8, "count": 2, "gpus": "0"})
DRY = Setup("cpu", ("hrnet_w18_small",), 64, steps=1, warmup=0, speed_batch=2, max_batch=2, loader_images=4,
            oom=("hrnet_w18_small", 64, 8),
            sweep={"model": "hrnet_w18_small", "size": 64, "batch": 4, "n_train": 8, "n_val": 4, "count": 1,
                   "gpus": None})


def config(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        return compose("train", overrides=["models.encoder.pretrained=false", *overrides])


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def release(device: str) -> None:
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def free_bytes(device: str) -> float:
    """Free memory of the GPU; on the CPU, the machine's available memory."""
    if device == "cuda":
        return float(torch.cuda.mem_get_info()[0])
    line = next(line for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemAvailable"))
    return int(line.split()[1]) * 1024.0


def model_footprint(name: str, precision: str) -> Footprint:
    return footprint(OmegaConf.to_container(config([f"models.encoder.model_name={name}"]).models, resolve=True),
                     precision, print)


class Stepper:
    """A DBNet, its loss and AdamW on `device`: one training step at a time, under autocast for bf16-mixed."""

    def __init__(self, name: str, mode: str, device: str) -> None:
        precision, nhwc = MODES[mode]
        cfg = config([f"models.encoder.model_name={name}", f"models.channels_last={str(nhwc).lower()}"])
        self.device, self.mixed = device, precision == "bf16-mixed"
        self.model = build_model(cfg.models).to(device).train()
        self.loss = build(cfg.models.loss)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
        self.params = sum(p.numel() for p in self.model.parameters())

    def step(self, images: torch.Tensor, targets: dict[str, torch.Tensor]) -> None:
        with torch.autocast(self.device, dtype=torch.bfloat16, enabled=self.mixed):
            out = self.loss(self.model(images), targets)["loss"]
        out.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def peak(self, batch: int, size: int) -> float:
        """Peak bytes of a training step at `batch` (the second one: Adam's state is there from the first). On the
        CPU: the resident set's growth during the step, plus the weights and Adam's state held before it."""
        images, targets = random_batch(batch, size, self.device)
        self.step(images, targets)
        sync(self.device)
        if self.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
            self.step(images, targets)
            return float(torch.cuda.max_memory_allocated())
        Path("/proc/self/clear_refs").write_text("5")
        before = resident("VmRSS")
        self.step(images, targets)
        return float(resident("VmHWM") - before + 12 * self.params)


def resident(field_name: str) -> int:
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(field_name))
    return int(line.split()[1]) * 1024


def is_oom(err: BaseException) -> bool:
    return isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in str(err)


def throughput(setup: Setup, out: Path) -> list[dict[str, Any]]:
    rows = []
    for name in setup.models:
        cap = batch_cap(model_footprint(name, "32-true"), setup.size, free_bytes(setup.device))
        batch = min(setup.speed_batch, cap)
        for mode in MODES:
            stepper = Stepper(name, mode, setup.device)
            images, targets = random_batch(batch, setup.size, setup.device)
            for _ in range(setup.warmup):
                stepper.step(images, targets)
            sync(setup.device)
            start = time.perf_counter()
            for _ in range(setup.steps):
                stepper.step(images, targets)
            sync(setup.device)
            seconds = time.perf_counter() - start
            rows.append({"model": name, "mode": mode, "image_size": setup.size, "batch": batch,
                         "images_per_s": batch * setup.steps / seconds, "step_s": seconds / setup.steps})
            del stepper, images, targets
            release(setup.device)
    return rows


def memory(setup: Setup, out: Path) -> dict[str, Any]:
    rows = []
    for name in setup.models:
        for mode in ("fp32", "bf16-mixed"):
            model = model_footprint(name, MODES[mode][0])
            release(setup.device)
            free = free_bytes(setup.device)
            stepper, peaks, batch = Stepper(name, mode, setup.device), {}, 1
            while batch <= setup.max_batch:
                try:
                    peaks[batch] = stepper.peak(batch, setup.size)
                except RuntimeError as err:
                    if not is_oom(err):
                        raise
                    stepper.optimizer.zero_grad(set_to_none=True)
                    break
                finally:
                    release(setup.device)
                batch *= 2
            del stepper
            release(setup.device)
            pixels = setup.size**2
            rows.append({
                "model": name, "mode": mode, "image_size": setup.size, "free_bytes": free,
                "measured_per_image": peaks[2] - peaks[1] if 2 in peaks else None,
                "predicted_per_image": model.per_pixel * pixels,
                "peaks": {str(b): p for b, p in peaks.items()},
                "predicted": {str(b): model.training(setup.size, b) for b in peaks},
                "peak_over_predicted": max((p / model.training(setup.size, b) for b, p in peaks.items()), default=None),
                "largest_fit": max(peaks, default=0), "tried_up_to": setup.max_batch,
                "predicted_largest_fit": batch_cap(model, setup.size, free, margin=0.0),
                "cap": batch_cap(model, setup.size, free),
            })
    worst = max(row["peak_over_predicted"] or 1.0 for row in rows)
    return {"rows": rows, "margin": MARGIN, "suggested_margin": round(max(0.0, 1 - 1 / worst) + 0.05, 2)}


def loader(setup: Setup, out: Path) -> dict[str, Any]:
    name, mode = setup.models[0], "bf16+channels_last"  # the fastest steps: the hardest test for the loader
    batch = min(setup.speed_batch, batch_cap(model_footprint(name, "bf16-mixed"), setup.size, free_bytes(setup.device)))
    cfg = config([f"models.encoder.model_name={name}", f"image_size={setup.size}", f"batch_size={batch}",
                  f"data.synthetic.dir={out / 'synthetic'}", f"data.synthetic.n_train={setup.loader_images}",
                  "data.synthetic.n_val=2", "data.synthetic.n_test=1", "dataset_base_path=null"])
    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")
    stepper = Stepper(name, mode, setup.device)
    stepper.step(*random_batch(batch, setup.size, setup.device))  # kernels set up before the timing
    batches = iter(datamodule.train_dataloader())
    start = time.perf_counter()
    first = next(batches)  # the workers starting: not counted
    startup, waited, computed, steps = time.perf_counter() - start, 0.0, 0.0, 0
    keys = ("prob_map", "prob_mask", "thresh_map", "thresh_mask")
    while True:
        start = time.perf_counter()
        try:
            data = first if steps == 0 else next(batches)
        except StopIteration:
            break
        ready = time.perf_counter()
        stepper.step(data["images"].to(setup.device, non_blocking=True),
                     {k: data[k].to(setup.device, non_blocking=True) for k in keys})
        sync(setup.device)
        waited, computed, steps = waited + ready - start, computed + time.perf_counter() - ready, steps + 1
    return {"model": name, "mode": mode, "image_size": setup.size, "batch": batch, "steps": steps,
            "num_workers": datamodule.num_workers, "startup_s": startup, "waiting_s": waited, "computing_s": computed,
            "busy": computed / (waited + computed)}


def oom_retry(setup: Setup, out: Path) -> dict[str, Any]:
    name, size, batch = setup.oom
    cfg = config([f"models.encoder.model_name={name}", f"image_size={size}", f"batch_size={batch}",
                  "trainer.max_epochs=1", "trainer.limit_train_batches=1", "trainer.limit_val_batches=1",
                  "trainer.enable_progress_bar=false",
                  f"trainer.accelerator={'gpu' if setup.device == 'cuda' else 'cpu'}",
                  f"data.synthetic.dir={out / 'synthetic_oom'}", f"data.synthetic.n_train={batch}",
                  "data.synthetic.n_val=2", "data.synthetic.n_test=1", "dataset_base_path=null", "metric.workers=1",
                  "cache_val_maps=false", "log_val_images=0", "~logger"])
    messages: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger(run_lib.__name__).addHandler(handler)
    patches = [mock.patch.object(run_lib, "initial_plan", lambda cfg: plan_batch(cfg.batch_size, None))]
    if setup.device == "cpu":  # no out-of-memory on the CPU: raise CUDA's error above batch 2, as a full card would
        real_step = module_lib.DBNetModule.training_step

        def step(self: Any, data: dict, index: int) -> Any:
            if len(data["images"]) > 2:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
            return real_step(self, data, index)

        patches.append(mock.patch.object(module_lib.DBNetModule, "training_step", step))
    try:
        for patch in patches:
            patch.start()
        metrics = run_lib.train(cfg, out / "oom_run")
    finally:
        mock.patch.stopall()
        logging.getLogger(run_lib.__name__).removeHandler(handler)
    retries = [m for m in messages if "out of memory" in m]
    used, accumulate = metrics["batch/used"], metrics["batch/accumulate"]
    return {"model": name, "image_size": size, "requested": batch, "used": used, "accumulate": accumulate,
            "retries": retries, "simulated": setup.device == "cpu", "hmean": metrics.get("val/cleval_hmean"),
            "ok": bool(retries) and used < batch and used * accumulate == batch}


def sweep(setup: Setup, out: Path) -> dict[str, Any]:
    s = setup.sweep
    fixed = [f"models.encoder.model_name={s['model']}", "models.encoder.pretrained=false", f"image_size={s['size']}",
             f"batch_size={s['batch']}", "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
             f"data.synthetic.dir={out / 'synthetic_sweep'}", f"data.synthetic.n_train={s['n_train']}",
             f"data.synthetic.n_val={s['n_val']}", "data.synthetic.n_test=1", "metric.workers=1"]
    spec = {"program": "ocr.train", "command": ["${env}", "${interpreter}", "-m", "${program}", *fixed,
                                               "${args_no_hyphens}"],
            "project": "gpu-check", "method": "grid", "metric": {"name": "val/cleval_hmean", "goal": "maximize"},
            "parameters": {"optimizer.lr": {"values": [0.001, 0.002][:s["count"]]}}}
    path, store = out / "sweep.yaml", out / "sweeps"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    command = [sys.executable, "wandb_sweep.py", "--config", str(path), "--offline", "--create-sweep",
               "--count", str(s["count"]), "--store", str(store), *(["--gpus", s["gpus"]] if s["gpus"] else [])]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    (out / "sweep.log").write_text(done.stdout + done.stderr)
    trials = open_sweep(store, sweep_ids(store)[-1]).trials() if sweep_ids(store) else []
    return {"command": " ".join(command[1:]), "returncode": done.returncode, "seconds": seconds,
            "trials": [{"state": t.state, "hmean": t.summary.get("val/cleval_hmean"),
                        "seconds": (t.ended or 0) - (t.started or 0)} for t in trials],
            "ok": done.returncode == 0 and len(trials) == s["count"] and all(t.state == "finished" for t in trials)}


SECTIONS: dict[str, Callable[[Setup, Path], Any]] = {
    "throughput": throughput, "memory": memory, "loader": loader, "oom_retry": oom_retry, "sweep": sweep}


def gib(value: float | None) -> str:
    return "-" if value is None else f"{value / 2**30:.2f}"


def verdict(section: dict[str, Any]) -> str:
    return "ok" if section["ok"] else "FAILED"


def tables(report: dict[str, Any]) -> str:
    """The report as text: one table per section."""
    lines = [f"GPU check on {report['device']} (torch {report['torch']}){' DRY RUN' if report['dry_run'] else ''}"]
    for name in SECTIONS:
        section, seconds = report[name], report["seconds"][name]
        lines.append(f"\n{name} ({seconds:.0f} s)")
        if section is None:
            lines.append("  not run")
        elif isinstance(section, dict) and "error" in section:
            lines.append("  ERROR " + section["error"].strip().splitlines()[-1])
        elif name == "throughput":
            lines += [f"  {r['model']:<16} {r['mode']:<20} batch {r['batch']:>3}  {r['images_per_s']:8.2f} images/s"
                      for r in section]
        elif name == "memory":
            lines.append(f"  {'model':<16} {'mode':<11} {'GiB/image':>9} {'predicted':>9} {'peak/pred':>9} "
                         f"{'largest fit':>11} {'predicted':>9} {'cap':>4}")
            lines += [f"  {r['model']:<16} {r['mode']:<11} {gib(r['measured_per_image']):>9} "
                      f"{gib(r['predicted_per_image']):>9} {r['peak_over_predicted'] or 0:>9.2f} "
                      f"{r['largest_fit']:>11} {r['predicted_largest_fit']:>9} {r['cap']:>4}" for r in section["rows"]]
            lines.append(f"  margin {section['margin']:.2f}; covering the worst peak/predicted + 0.05: "
                         f"{section['suggested_margin']:.2f}")
        elif name == "loader":
            lines.append(f"  {section['model']} {section['mode']} batch {section['batch']}, {section['num_workers']} "
                         f"workers: computing {section['computing_s']:.1f} s, waiting {section['waiting_s']:.1f} s "
                         f"(GPU busy {section['busy']:.0%}), workers' start {section['startup_s']:.1f} s")
        elif name == "oom_retry":
            lines += [f"  {m}" for m in section["retries"]]
            lines.append(f"  requested {section['requested']} -> {section['used']} x {section['accumulate']}"
                         f"{' (simulated on the CPU)' if section['simulated'] else ''}: {verdict(section)}")
        else:
            lines += [f"  trial {t['state']} hmean {t['hmean']} in {t['seconds']:.0f} s" for t in section["trials"]]
            lines.append(f"  exit {section['returncode']} after {section['seconds']:.0f} s: {verdict(section)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu_check.json and gpu_check.txt")
    parser.add_argument("--dry-run", action="store_true", help="every section on the CPU at tiny sizes")
    parser.add_argument("--only", nargs="+", choices=list(SECTIONS), help="run these sections only")
    args = parser.parse_args(argv)
    setup = DRY if args.dry_run else GPU
    if setup.device == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA GPU visible: run it where one is, or use --dry-run")
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0) if setup.device == "cuda" else "cpu", "dry_run": args.dry_run,
        "torch": torch.__version__, "setup": asdict(setup), "seconds": {}}
    for name, section in SECTIONS.items():
        if args.only and name not in args.only:
            continue
        start = time.perf_counter()
        try:
            report[name] = section(setup, args.out)
        except Exception:  # noqa: BLE001 - one failed section keeps the others' figures
            report[name] = {"error": traceback.format_exc()}
        report["seconds"][name] = time.perf_counter() - start
        release(setup.device)
        print(f"{name}: {report['seconds'][name]:.0f} s", flush=True)
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str))
    text = tables({**report, **{k: None for k in SECTIONS if k not in report},
                   "seconds": {k: report["seconds"].get(k, 0.0) for k in SECTIONS}})
    (args.out / "gpu_check.txt").write_text(text + "\n")
    print(text)
    return 1 if any(isinstance(report.get(k), dict) and "error" in report[k] for k in report["seconds"]) else 0


if __name__ == "__main__":
    sys.exit(main())
