"""Entry point: ``python -m logics_rl.main [--config RECIPE.yaml] [key=value ...]``.

With no arguments it runs the embedded quickstart (a small model built locally, SFT then GRPO on
generated arithmetic, no network, no GPU). Overrides use OmegaConf dot-list syntax, e.g.
``trainer.total_steps=20 rollout.n=4``. The resolved config is printed and saved in the run dir.
"""

from __future__ import annotations

import argparse
import os
import sys

QUICKSTART = os.path.join(os.path.dirname(os.path.abspath(__file__)), "recipes", "quickstart.yaml")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m logics_rl.main",
        description="RL post-training with verifiable rewards (GRPO / DAPO / Logics-STEM), and SFT.",
        epilog=(
            "examples:\n"
            "  python -m logics_rl.main                                  # the embedded quickstart\n"
            "  python -m logics_rl.main --config recipes/dapo_qwen3_8b.yaml trainer.seed=1\n"
            "  python -m logics_rl.main -c recipes/smollm2_arith_cpu.yaml --print-config"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("-c", "--config", help="recipe YAML (default: the embedded quickstart)")
    ap.add_argument(
        "--print-config", action="store_true", help="print the resolved config and exit"
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
    console.print(to_yaml(cfg), highlight=False)
    if args.print_config:
        return 0
    from logics_rl.trainer.stages import run

    try:
        run(cfg, console)
    except (ConfigError, DataError) as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
