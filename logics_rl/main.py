"""Entry point: ``python -m logics_rl.main [--config RECIPE.yaml] [key=value ...]``.

With no arguments it runs the embedded quickstart (a small model built locally, SFT then GRPO on
generated arithmetic, no network, no GPU). Overrides use OmegaConf dot-list syntax, e.g.
``trainer.total_steps=20 rollout.n=4``. The resolved config is printed and saved in the run dir.

Everything the run prints also lands in ``<run_dir>/run.log``; known harmless start-up warnings
of vLLM / torch / Ray stay off the console unless ``--verbose`` (``logics_rl/logs.py``).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
import traceback

from logics_rl.logs import VERBOSE_ENV, run_console, verbose_from_env

QUICKSTART = os.path.join(os.path.dirname(os.path.abspath(__file__)), "recipes", "quickstart.yaml")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m logics_rl.main",
        description="RL post-training with verifiable rewards (GRPO / DAPO / Logics-STEM), and SFT.",
        epilog=(
            "examples:\n"
            "  python -m logics_rl.main                                  # the embedded quickstart\n"
            "  python -m logics_rl.main --config recipes/dapo_qwen3_8b.yaml trainer.seed=1\n"
            "  python -m logics_rl.main -c recipes/smollm2_arith_cpu.yaml --print-config\n"
            "\n"
            "Every line the run prints is kept in <trainer.run_dir>/run.log. Known harmless\n"
            "start-up warnings of vLLM's CPU backend, torch and Ray (tcmalloc, Triton, NUMA,\n"
            "thread settings, token authentication; list in logics_rl/logs.py) are kept off the\n"
            "console; errors and other warnings always show."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("-c", "--config", help="recipe YAML (default: the embedded quickstart)")
    ap.add_argument(
        "--print-config", action="store_true", help="print the resolved config and exit"
    )
    ap.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show every line on the console, known start-up warnings included "
        f"(also: {VERBOSE_ENV}=1)",
    )
    ap.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.argv = argv
    from rich.console import Console

    from logics_rl.config.loader import ConfigError, load_config, preflight, to_yaml
    from logics_rl.data.files import DataError

    console = Console()
    try:
        cfg = load_config(args.config or QUICKSTART, args.overrides)
        preflight(cfg)
    except ConfigError as exc:
        console.print(f"[red]config error:[/red] {exc}", highlight=False)
        return 2
    if args.print_config:
        console.print(to_yaml(cfg), highlight=False)
        return 0
    from logics_rl.controller.errors import WorkerDiedError, WorkerTimeoutError
    from logics_rl.errors import CheckpointError, ClusterResourcesError, TrainingError
    from logics_rl.trainer.stages import run

    ray_was_up = _ray_up()
    verbose = args.verbose or verbose_from_env()
    with run_console(os.path.abspath(cfg.trainer.run_dir), verbose=verbose) as log:
        console.print(to_yaml(cfg), highlight=False)
        try:
            run(cfg, console)
        except (ConfigError, DataError, ClusterResourcesError) as exc:
            console.print(f"[red]error:[/red] {exc}", highlight=False)
            return 2
        except (WorkerDiedError, WorkerTimeoutError, CheckpointError, TrainingError) as exc:
            log.write_line(traceback.format_exc().rstrip("\n"))  # the whole story: log only
            console.print(
                fault_report(exc, cfg.trainer.run_dir, args, log.path, cfg.trainer.max_restarts),
                highlight=False,
            )
            return 3
        finally:
            if not ray_was_up and _ray_up():
                # the Ray instance this run started: its last forwarded worker lines pass the
                # console filter too (atexit would print them after it is gone)
                import ray

                ray.shutdown()
    return 0


def fault_report(
    exc: BaseException, run_dir: str, args: argparse.Namespace, log: str, max_restarts: int = 0
) -> str:
    """One paragraph for a fault that ended the run: what failed, the likely cause, the last
    complete checkpoint, and the command that resumes from it."""
    from logics_rl.checkpoint import find_latest
    from logics_rl.controller.errors import WorkerDiedError, WorkerTimeoutError

    if isinstance(exc, WorkerDiedError):
        pid = f" (pid {exc.pid})" if exc.pid else ""
        what = f"worker rank {exc.rank}{pid} died while running {exc.method}()."
        if "low on memory" in exc.detail:
            cause = "Cause: Ray's memory monitor killed it, the node ran low on memory."
        elif node := re.search(r"node (\S+) is down|node (has )?died|NODE_DIED", exc.detail, re.I):
            which = f" {node.group(1)}" if node.group(1) else ""
            cause = (
                f"Cause: its node{which} died or lost contact with the head (raylet killed, "
                "machine down or unreachable); the run can resume once the cluster has the node back."
            )
        else:
            cause = (
                "Likely cause: the process was killed with SIGKILL (the kernel's OOM killer does "
                "this when memory runs out: see `dmesg`; also `kill -9`) or crashed."
            )
    elif isinstance(exc, WorkerTimeoutError):
        what, cause = f"{exc}.", ""
    else:
        what, cause = f"{exc}", ""
    found = find_latest(run_dir)
    if found:
        where = f"Last complete checkpoint: {found[0]} (step {found[1]})."
        given = sys.argv[1:] if args.argv is None else args.argv
        command = ["python", "-m", "logics_rl.main", *given]
        command = [c for c in command if not c.startswith("trainer.resume=")]
        resume = f"Resume from it with: {shlex.join(command)}"
    else:
        where, resume = "No complete checkpoint was written yet.", "Re-running starts over."
    if isinstance(exc, (WorkerDiedError, WorkerTimeoutError)):
        if max_restarts == 0:
            resume += "\n(trainer.max_restarts=1 makes the run restart its workers by itself.)"
        else:
            resume += f"\n(after {max_restarts} restart(s): trainer.max_restarts={max_restarts})"
    head = f"{what} {cause}" if cause else what
    return f"[red]error:[/red] {head}\n{where} {resume}\nFull traceback: {log}"


def _ray_up() -> bool:
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()


if __name__ == "__main__":
    sys.exit(main())
