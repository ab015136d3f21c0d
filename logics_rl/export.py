"""Export a checkpoint as a HF model directory (loads in transformers and vLLM).

python -m logics_rl.export runs/NAME/checkpoints/step_40 OUT_DIR
"""

from __future__ import annotations

import argparse

from logics_rl.engines.train import export_checkpoint


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m logics_rl.export", description=__doc__)
    ap.add_argument("checkpoint", help="a complete checkpoint directory (checkpoints/step_N)")
    ap.add_argument("out_dir", help="where to write the HF model directory")
    args = ap.parse_args(argv)
    print(export_checkpoint(args.checkpoint, args.out_dir))


if __name__ == "__main__":
    main()
