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
import sys

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
    from rich.console import Console

    from logics_rl.config.loader import ConfigError, load_config, to_yaml
    from logics_rl.data.files import DataError

    console = Console()
    try:
        cfg = load_config(args.config or QUICKSTART, args.overrides)
    except ConfigError as exc:
        console.print(f"[red]config error:[/red] {exc}", highlight=False)
        return 2
    if args.print_config:
        console.print(to_yaml(cfg), highlight=False)
        return 0
    from logics_rl.trainer.stages import run

    ray_was_up = _ray_up()
    verbose = args.verbose or verbose_from_env()
    with run_console(os.path.abspath(cfg.trainer.run_dir), verbose=verbose):
        console.print(to_yaml(cfg), highlight=False)
        try:
            run(cfg, console)
        except (ConfigError, DataError) as exc:
            console.print(f"[red]error:[/red] {exc}", highlight=False)
            return 2
        finally:
            if not ray_was_up and _ray_up():
                # the Ray instance this run started: its last forwarded worker lines pass the
                # console filter too (atexit would print them after it is gone)
                import ray

                ray.shutdown()
    return 0


def _ray_up() -> bool:
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()


if __name__ == "__main__":
    sys.exit(main())
