"""Command line of wandb_sweep.py: preview, create, run agents, show the best trials."""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from ocr.cli import inspect, report, tune
from ocr.config.checks import (
    BATCH_SIZE_KEY, DEFAULT_CONFIGS_DIR, EPOCHS_KEY, IMAGE_SIZE_KEY, MODEL_KEY, OPTIMIZER_KEY, SCHEDULER_KEY,
    check_model_names, did_you_mean,
)
from ocr.sweep import online
from ocr.sweep.insight import local_rows, wandb_rows
from ocr.sweep.local_agent import AgentOptions, exit_status, run_agent
from ocr.sweep.report import Destination, best_summary, leaderboard, preview_text, ranked
from ocr.sweep.spec import (
    METHODS, Narrowing, apply_narrowing, check_against_training, load_sweep_config, sweep_parameters,
)
from ocr.sweep.store import (
    DEFAULT_ROOT, LocalSweep, Trial, create_sweep, is_local_sweep, open_sweep, sweep_id_or_newest, sweep_ids,
)
from ocr.training.batch_size import cap_table, visible_gpu
from ocr.utils.env import load_env, wandb_key_is_set, wandb_mode
from ocr.utils.errors import ArgumentParser, UserError, exit_on_user_error, list_of, positive_int

PROG = "wandb_sweep.py"
DEFAULT_CONFIG = Path("sweep_config.yaml")

EPILOG = """\
where sweeps run:
  W&B server     when an API key is set (WANDB_API_KEY or `wandb login`) and WANDB_MODE is not
                 offline/disabled; `wandb agent ENTITY/PROJECT/ID` works on these sweeps too.
  embedded       otherwise, or with --offline: the `sweeps` engine (W&B's own bayes/grid/random and
                 hyperband) runs here, state in --store; trials are W&B offline runs for `wandb sync`
                 (WANDB_MODE=disabled: no W&B at all). Several agents may share one sweep.

examples:
  python wandb_sweep.py                                         # preview
  python wandb_sweep.py --create-sweep --models hrnet_w18,hrnet_w32 --image-sizes 800,1024
  python wandb_sweep.py --sweep-id abc123de --count 50 --gpus 0,1
  python wandb_sweep.py --sweep-id abc123de --gpus 0,1,2,3 --gpus-per-trial 2   # two agents, DDP on 2 GPUs
  python wandb_sweep.py --config sweep_configs/demo_cpu.yaml --offline --create-sweep --count 4
  python wandb_sweep.py --best --sweep-id local-abc123de
"""


# Options that replace a parameter's values: flag, type of each item, metavar, Hydra key, how --help names it.
NARROWING_OPTIONS = (
    ("--models", str, "M,...", MODEL_KEY, MODEL_KEY),
    ("--image-sizes", positive_int, "N,...", IMAGE_SIZE_KEY, IMAGE_SIZE_KEY),
    ("--batch-sizes", positive_int, "N,...", BATCH_SIZE_KEY, BATCH_SIZE_KEY),
    ("--max-epochs", positive_int, "N,...", EPOCHS_KEY, EPOCHS_KEY),
    ("--optimizers", str, "NAME,...", OPTIMIZER_KEY, "the optimizer config group"),
    ("--schedulers", str, "NAME,...", SCHEDULER_KEY, "the scheduler config group"),
)


def build_parser() -> argparse.ArgumentParser:
    after = (f"\nbefore a sweep, on a dataset: {inspect.COMMAND}\nafter a sweep: {report.COMMAND}\n"
             f"after training, on a run directory: "
             f"{', '.join(tune.COMMANDS)}  (python {PROG} SUBCOMMAND --help)\n")
    p = ArgumentParser(prog=PROG, epilog=EPILOG + after, formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Hyperparameter sweeps of DBNet + timm HRNet training (python -m ocr.train) on W&B "
                       "or offline.")
    act = p.add_argument_group("actions", "none: preview the sweep, where it would go, the visible GPU's batch caps")
    act.add_argument("--create-sweep", action="store_true",
                     help="create the sweep, print how to start agents (with --count/--gpus: run them now)")
    act.add_argument("--sweep-id", metavar="ID", help="run an agent on sweep ID (W&B id or path, or a local- id); "
                     "each trial is its own process")
    act.add_argument("--best", action="store_true", help="show the best trials of --sweep-id (default: newest local) "
                     "and the Hydra overrides that reproduce the best one")
    act.add_argument("--count", type=positive_int, metavar="N", help="trials per agent (default: until the sweep ends)")
    act.add_argument("--gpus", type=list_of(int, "GPU indices"), metavar="0,1", help="one agent per GPU index")
    act.add_argument("--gpus-per-trial", type=positive_int, default=1, metavar="N",
                     help="GPUs per trial (DDP; the trial gets trainer.devices=N): with --gpus, one agent per N GPUs")
    act.add_argument("--rerun-failed", action="store_true",
                     help="with --sweep-id (local sweep): new trials rerunning each failed or crashed trial once")
    act.add_argument("--top", type=positive_int, default=10, metavar="N", help="rows of --best (default 10)")

    src = p.add_argument_group("sweep definition")
    src.add_argument("--config", type=Path, default=DEFAULT_CONFIG, metavar="PATH",
                     help="sweep YAML (default sweep_config.yaml)")
    src.add_argument("--method", choices=METHODS, help="replace the YAML's search method")
    src.add_argument("--run-cap", type=positive_int, metavar="N", help="stop creating trials after N (sweep-wide)")
    for flag, cast, metavar, _, shown in NARROWING_OPTIONS:
        src.add_argument(flag, type=list_of(cast, flag[2:]), metavar=metavar, help=f"replace the values of {shown}")
    src.add_argument("--configs-dir", type=Path, default=DEFAULT_CONFIGS_DIR, metavar="DIR",
                     help="Hydra configs the parameters are checked against (default: the repo's configs/)")

    dst = p.add_argument_group("destination")
    dst.add_argument("--project", help="W&B project (default: $WANDB_PROJECT, the YAML's project, OCR-HRNet-Sweep)")
    dst.add_argument("--entity", help="W&B entity (default: $WANDB_ENTITY, the YAML's entity, your default)")
    dst.add_argument("--offline", action="store_true", help="use the embedded controller even when a key is set")
    dst.add_argument("--store", type=Path, default=DEFAULT_ROOT, metavar="DIR",
                     help="folder of local sweeps (default .sweeps)")
    p.add_argument("--agent-label", help=argparse.SUPPRESS)  # set on the agents --gpus starts
    return p


def narrowing_of(args: argparse.Namespace) -> Narrowing:
    values = {key: getattr(args, flag[2:].replace("-", "_")) for flag, _, _, key, _ in NARROWING_OPTIONS}
    return Narrowing(args.method, args.run_cap, {key: v for key, v in values.items() if v is not None})


def check_combination(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Refuse option combinations that mean nothing (argparse-style message, exit status 2)."""
    if args.create_sweep and args.sweep_id:
        parser.error("--create-sweep makes a new sweep; --sweep-id runs an existing one: give one of them")
    if args.best and args.create_sweep:
        parser.error("--best reads an existing sweep: drop --create-sweep")
    agents = args.count or args.gpus or args.gpus_per_trial > 1
    if agents and not (args.create_sweep or args.sweep_id):
        parser.error("--count/--gpus/--gpus-per-trial run agents: add --create-sweep (new sweep) or --sweep-id ID")
    if args.best and (agents or args.rerun_failed):
        parser.error("--best only reads results: drop --count/--gpus/--gpus-per-trial/--rerun-failed")
    if args.rerun_failed and not args.sweep_id:
        parser.error("--rerun-failed runs the failed trials of an existing sweep again: give --sweep-id ID")
    if args.gpus and len(args.gpus) % args.gpus_per_trial:
        parser.error(f"--gpus {','.join(map(str, args.gpus))}: {len(args.gpus)} GPUs do not split into trials of "
                     f"--gpus-per-trial {args.gpus_per_trial}; give a multiple of {args.gpus_per_trial} GPUs")
    defining = narrowing_of(args) != Narrowing() or args.config != DEFAULT_CONFIG
    if defining and (args.sweep_id or args.best):
        parser.error("--config and the narrowing options define a new sweep: use them with --create-sweep or alone")


def sweep_definition(args: argparse.Namespace) -> dict[str, Any]:
    """The YAML with command-line narrowing applied, checked against the schema and the Hydra config."""
    config = load_sweep_config(args.config)
    if args.models:
        check_model_names(list(args.models), "--models")
    config = apply_narrowing(config, narrowing_of(args), str(args.config))
    check_against_training(config, str(args.config), args.configs_dir)
    return config


def destination(args: argparse.Namespace, config: dict[str, Any]) -> Destination:
    """Where the sweep goes, from --offline, WANDB_MODE and whether an API key is set."""
    mode = wandb_mode()
    embedded = args.offline or mode in ("offline", "disabled")
    return Destination(
        backend="embedded" if embedded else "wandb", key_set=wandb_key_is_set(), store=args.store,
        trial_mode=("disabled" if mode == "disabled" else "offline") if embedded else "online",
        project=online.project_name(args.project, config.get("project")),
        entity=online.entity_name(args.entity, config.get("entity")))


def visible_gpus() -> int:
    """CUDA devices this process sees (0 without torch's CUDA)."""
    import torch  # deferred: the launcher starts without torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def agent_commands(sweep_ref: str, local: bool, run_cap: int | None = None) -> str:
    """How to start agents on the sweep: here, one per GPU (where that can apply), W&B's own agent, results."""
    count = min(10, run_cap) if run_cap else 10
    lines = [f"  python {PROG} --sweep-id {sweep_ref} --count {count}        # one agent here (several may share it)"]
    if not local or visible_gpus() > 1:  # a W&B sweep's agents may run on other machines
        lines.append(f"  python {PROG} --sweep-id {sweep_ref} --gpus 0,1        # one agent per GPU")
    if not local:
        lines.append(f"  wandb agent {sweep_ref}                               # W&B's own agent, same trials")
    lines.append(f"  python {PROG} --best --sweep-id {sweep_ref}             # best trials so far")
    return "start agents with:\n" + "\n".join(lines)


def gpu_agent_envs(gpus: tuple[int, ...], visible: int, cuda_visible: str | None, per_trial: int = 1
                   ) -> list[dict[str, str]]:
    """CUDA_VISIBLE_DEVICES for each agent, `per_trial` GPUs each; indices count the GPUs this process sees."""
    if len(set(gpus)) != len(gpus):
        raise UserError(f"--gpus {','.join(map(str, gpus))}: each GPU index once")
    bad = [g for g in gpus if g < 0 or g >= visible]
    if bad:
        raise UserError(f"--gpus: GPU index {bad[0]} is not visible ({visible} CUDA device(s) visible)")
    ids = [s.strip() for s in cuda_visible.split(",")] if cuda_visible else [str(i) for i in range(visible)]
    return [{"CUDA_VISIBLE_DEVICES": ",".join(ids[g] for g in gpus[i:i + per_trial])}
            for i in range(0, len(gpus), per_trial)]


def check_wandb_devices(config: dict[str, Any], per_trial: int) -> None:
    """W&B's agent runs a W&B sweep's command as is: trials of several GPUs need `trainer.devices` in the sweep."""
    fixed = sweep_parameters(config, "the sweep")
    if per_trial > 1 and "trainer.devices" not in fixed:
        raise UserError(f"--gpus-per-trial {per_trial}: W&B's agent runs this W&B sweep's command as is; add "
                        f"`trainer.devices: {{value: {per_trial}}}` to its parameters, or run the sweep with --offline")


def spawn_gpu_agents(args: argparse.Namespace, sweep_ref: str) -> int:
    """One agent process per GPU (or --gpus-per-trial group) on `sweep_ref`; the worst exit status once all end."""
    envs = gpu_agent_envs(args.gpus, visible_gpus(), os.environ.get("CUDA_VISIBLE_DEVICES"), args.gpus_per_trial)
    base = [sys.executable, "-m", "ocr.cli.sweep", "--sweep-id", sweep_ref, "--store", str(args.store),
            "--gpus-per-trial", str(args.gpus_per_trial)]
    options = {"--count": args.count, "--project": args.project, "--entity": args.entity}
    base += [word for flag, value in options.items() if value for word in (flag, str(value))]
    base += [flag for flag, on in (("--offline", args.offline), ("--rerun-failed", args.rerun_failed)) if on]
    procs = [subprocess.Popen(base + ["--agent-label", f"gpu {env['CUDA_VISIBLE_DEVICES']}"], env={**os.environ, **env})
             for env in envs]
    print(f"started {len(procs)} agents on {sweep_ref}: " + ", ".join(f"gpu {e['CUDA_VISIBLE_DEVICES']}" for e in envs))
    return max(p.wait() for p in procs)


def sync_hint(sweep: LocalSweep) -> str | None:
    """The `wandb sync` command that uploads this sweep's offline runs, or None when there are none."""
    patterns = set()
    for run in sweep.dir.glob("trials/*/**/offline-run-*"):
        parts = run.relative_to(sweep.dir).parts  # trials/<run_id>/.../offline-run-<time>-<run_id>
        patterns.add("/".join([parts[0], "*", *parts[2:-1], "offline-run-*"]))
    if not patterns:
        return None
    who = f"-p {sweep.project}" + (f" -e {sweep.entity}" if sweep.entity else "")
    paths = " ".join(f"{sweep.dir}/{p}" for p in sorted(patterns))
    return f"upload the offline runs to W&B later: wandb sync {who} {paths}"


def print_results(sweep: LocalSweep, top: int) -> None:
    trials = sweep.trials()
    rows = local_rows(sweep.config, trials)
    plural = "s" if len(trials) != 1 else ""
    print(f"\nleaderboard of {sweep.id} ({len(trials)} trial{plural}, {sweep.config['method']}):")
    print(leaderboard(sweep.config, rows, top))
    print(best_summary(sweep.config, rows))
    best = ranked(sweep.config, rows, complete=True)
    run_dir = sweep.trial_dir(best[0].run_id) / "run" if best else None
    if run_dir is not None and (run_dir / "config.yaml").is_file():
        print(f"its run directory: {run_dir} (also for predict and overlays):\n"
              f"  python {PROG} tune-postprocess {run_dir}")
    hint = sync_hint(sweep)
    if hint:
        print(hint)


def run_local(args: argparse.Namespace, sweep: LocalSweep, trial_mode: str) -> int:
    """Run agents on a local sweep (here, or one per GPU), then print the leaderboard."""
    if args.gpus:
        status = spawn_gpu_agents(args, sweep.id)
    else:
        label = f"[{args.agent_label}] " if args.agent_label else ""
        opts = AgentOptions(args.count, trial_mode, devices=args.gpus_per_trial, rerun=args.rerun_failed)
        done: list[Trial] = []
        try:
            run_agent(sweep, opts, say=lambda line: print(label + line, flush=True), done=done)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM
            left = f" --count {args.count - len(done)}" if args.count else ""  # trials this agent still owed
            left += " --rerun-failed" if args.rerun_failed else ""
            print(f"\ninterrupted; resume with: python {PROG} --sweep-id {sweep.id}{left}", file=sys.stderr)
            return 130
        status = exit_status(done)
    if not args.agent_label:
        print_results(sweep, args.top)
    return status


def cmd_preview(args: argparse.Namespace) -> int:
    config = sweep_definition(args)
    create = shlex.join(["python", PROG, *args.argv, "--create-sweep"])
    dest = destination(args, config)  # a bad WANDB_MODE is one line before any cap is measured
    caps = cap_table(sweep_parameters(config, str(args.config)), *visible_gpu(), args.configs_dir)
    print(preview_text(config, str(args.config), dest, caps, create))
    return 0


def cmd_create(args: argparse.Namespace) -> int:
    config = sweep_definition(args)
    dest = destination(args, config)
    if dest.backend == "wandb":
        check_wandb_devices(config, args.gpus_per_trial)
        sweep_id = online.create_sweep(config, dest.project, dest.entity)
        ref = online.sweep_path(sweep_id, dest.project, dest.entity)
        print(f"created W&B sweep {ref}\n{agent_commands(ref, local=False, run_cap=config.get('run_cap'))}")
        if args.gpus:
            return spawn_gpu_agents(args, ref)
        return online.run_agent(ref, dest.project, dest.entity, args.count) if args.count else 0
    sweep = create_sweep(args.store, config, dest.project, dest.entity)
    if args.count or args.gpus:  # agents start now; the way to add more is said once, up front
        print(f"created local sweep {sweep.id} in {sweep.dir} (more agents: python {PROG} --sweep-id {sweep.id})")
        return run_local(args, sweep, dest.trial_mode)
    print(f"created local sweep {sweep.id} in {sweep.dir}\n"
          f"{agent_commands(sweep.id, local=True, run_cap=config.get('run_cap'))}")
    return 0


def is_local(args: argparse.Namespace, sweep_id: str, dest: Destination) -> bool:
    """True for a sweep of the embedded controller (in the store, named local-..., or no W&B server in use); a
    W&B sweep path (entity/project/id) while W&B is not in use is a `UserError` saying so."""
    if is_local_sweep(args.store, sweep_id):
        return True
    if dest.backend == "embedded" and "/" in sweep_id:
        why = "--offline" if args.offline else "no W&B API key" if not dest.key_set else f"WANDB_MODE={wandb_mode()}"
        raise UserError(
            f"--sweep-id {sweep_id} is a W&B sweep path, but W&B is not in use here ({why}): log in "
            "(`wandb login` or WANDB_API_KEY in .env) to join it, or pass a local sweep id "
            f"(local sweeps in {args.store}/: {', '.join(sweep_ids(args.store)) or 'none'})"
        )
    return dest.backend == "embedded"


def cmd_agent(args: argparse.Namespace) -> int:
    dest = destination(args, {})
    if is_local(args, args.sweep_id, dest):
        sweep = open_sweep(args.store, args.sweep_id)
        return run_local(args, sweep, "disabled" if dest.trial_mode == "disabled" else "offline")
    if args.rerun_failed:
        raise UserError(f"--rerun-failed works on local sweeps only; W&B's server chooses the trials of "
                        f"{args.sweep_id}: to run failed configurations again, create a sweep narrowed to their "
                        "values (--create-sweep with --models/--image-sizes/... and --method grid)")
    if args.gpus or args.gpus_per_trial > 1:
        check_wandb_devices(online.fetch_sweep(args.sweep_id, dest.project, dest.entity).config, args.gpus_per_trial)
    if args.gpus:
        return spawn_gpu_agents(args, args.sweep_id)
    return online.run_agent(args.sweep_id, dest.project, dest.entity, args.count)


def cmd_best(args: argparse.Namespace) -> int:
    dest = destination(args, {})
    sweep_id = sweep_id_or_newest(args.store, args.sweep_id)
    if is_local(args, sweep_id, dest):
        print_results(open_sweep(args.store, sweep_id), args.top)
        return 0
    sweep = online.fetch_sweep(sweep_id, dest.project, dest.entity)
    config, rows = sweep.config, wandb_rows(sweep, history=False)
    print(f"best runs of W&B sweep {online.sweep_path(sweep_id, dest.project, dest.entity)} ({len(rows)} runs):")
    print(leaderboard(config, rows, args.top))
    print(best_summary(config, rows))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of wandb_sweep.py (a sweep, or a subcommand: inspect-data, report, tune's); the exit status."""
    parser = build_parser()
    words = list(sys.argv[1:] if argv is None else argv)
    commands = {inspect.COMMAND: inspect.main, report.COMMAND: report.main, **{c: tune.main for c in tune.COMMANDS}}
    if words and words[0] in commands:
        return commands[words[0]](words, prog=f"python {PROG}")
    if words and not words[0].startswith("-"):  # this CLI has options only: a leading word is a subcommand
        parser.error(f"unknown subcommand {words[0]!r}{did_you_mean(words[0], list(commands))}: the subcommands are "
                     f"{', '.join(commands)} (python {PROG} SUBCOMMAND --help); sweeps take options only (--help)")
    args = parser.parse_args(words)
    args.argv = words
    check_combination(args, parser)
    command = (cmd_create if args.create_sweep else cmd_best if args.best
               else cmd_agent if args.sweep_id else cmd_preview)
    with exit_on_user_error(PROG):
        load_env()
        return command(args)


def cli() -> None:
    """Console entry point `ocr-sweep` (the same as `python wandb_sweep.py`)."""
    sys.exit(main())


if __name__ == "__main__":
    cli()
