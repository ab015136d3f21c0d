"""The curation pipeline: load, then the steps ``curate.stages`` lists, then the output sets.

Every step reads the kept rows of the step before it, writes every row it received (removed ones
with their reason in ``_drop``) as parquet into ``<run_dir>/curate/<NN>-<step>-<key>/``, then a
``report.json`` (rows in, rows out, removed by reason, seconds, the step's own figures) and a
``DONE`` marker. ``key`` hashes the step's settings with the key of the step before it, down to
the inputs' paths, sizes and modification times: re-running the same command re-uses every step
whose key and ``DONE`` exist and runs the rest (a step killed half-way is recomputed).

The output sets, written into ``<run_dir>/output/``:
    rl/   parquet in the RL prompt schema: ``prompt`` (``curate.prompt`` filled in),
          ``ground_truth``, ``data_source`` -- rows with an answer
    sft/  parquet in the SFT chat schema: ``messages`` (the prompt, then the solution) -- rows
          with a solution
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from rich.console import Console
from rich.table import Table

from logics_rl.config.loader import to_plain
from logics_rl.config.schema import Config, CurateConfig
from logics_rl.curate.rows import DROP, conform, fill
from logics_rl.data.files import DataError

VERSION = 1  # bump when a step's output for the same settings changes
DONE = "DONE"


@dataclass
class StepContext:
    cfg: Config
    run_dir: str
    step_dir: str
    concurrency: int  # Ray Data tasks (or actors) at once per operation
    partitions: int  # hash partitions of a shuffle
    console: Console
    model_path: Callable[[str | None], str]  # a model setting (None: model.path) -> directory


@dataclass
class StepReport:
    name: str
    rows_in: int
    rows_out: int
    removed: dict[str, int]
    seconds: float
    cached: bool
    extra: dict = field(default_factory=dict)
    started: float = 0.0  # wall clock (time.time()) when the step began computing


def _fingerprint(cfg: CurateConfig) -> dict:
    from logics_rl.curate.source import expand

    files = []
    for path, _ in expand(cfg.inputs):
        paths = [path]
        if os.path.isdir(path):
            paths = sorted(os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs)
        for p in paths:
            st = os.stat(p)
            files.append([os.path.abspath(p), st.st_size, st.st_mtime_ns])
    return {"files": files, "inputs": to_plain(cfg.inputs), "on_bad_row": str(cfg.on_bad_row)}


def _key(parent: str, name: str, settings: object) -> str:
    text = json.dumps([VERSION, parent, name, settings], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


ROWS_PER_BLOCK = 25_000  # a step's input is cut into blocks of about this many rows


def read_kept(step_dir: str, min_blocks: int = 1):
    """The kept rows a step wrote (``_drop`` null), without the ``_drop`` column, in at least
    ``min_blocks`` blocks (Ray Data would read small files as one block: one task, one core)."""
    import pyarrow.dataset as pads
    import ray.data

    data = os.path.join(step_dir, "data")
    rows = pads.dataset(data, format="parquet").count_rows()
    blocks = max(min_blocks, -(-rows // ROWS_PER_BLOCK))
    ds = ray.data.read_parquet(data).repartition(blocks)
    return ds.map_batches(_kept, batch_format="pyarrow")


def _kept(batch):
    import pyarrow.compute as pc

    return batch.filter(pc.is_null(batch.column(DROP))).drop_columns([DROP])


def _count(step_dir: str) -> tuple[int, int, dict[str, int]]:
    import pyarrow.dataset as pads

    col = pads.dataset(os.path.join(step_dir, "data"), format="parquet").to_table(columns=[DROP])
    counts = col.column(DROP).value_counts().to_pylist()
    removed = {c["values"]: c["counts"] for c in counts if c["values"] is not None}
    total = col.num_rows
    return total, total - sum(removed.values()), dict(sorted(removed.items(), key=lambda x: -x[1]))


def _write(ds, step_dir: str) -> None:
    ds.map_batches(conform, batch_format="pyarrow").write_parquet(os.path.join(step_dir, "data"))


def _unwrap(exc: BaseException) -> BaseException:
    """The user-facing error inside Ray's task wrappers (a DataError names file and row)."""
    seen = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, DataError) and not type(exc).__name__.startswith("RayTaskError"):
            return exc
        nxt = getattr(exc, "cause", None) or exc.__cause__
        if nxt is None:
            break
        exc = nxt
    return exc


def _steps() -> dict[str, type]:
    from logics_rl.curate import annotate, decontaminate, dedup, distill, stratify

    return {
        "annotate": annotate.Annotate,
        "dedup": dedup.Dedup,
        "decontaminate": decontaminate.Decontaminate,
        "distill": distill.Distill,
        "stratify": stratify.Stratify,
    }


def run_curate(
    cfg: Config, run_dir: str, console: Console, model_path: Callable[[str | None], str]
) -> dict:
    """Run the pipeline; returns the report (also saved as ``<run_dir>/report.json``)."""
    import ray.data

    from logics_rl.controller import init_ray

    init_ray()
    _configure_ray_data()
    c = cfg.curate
    concurrency = c.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
    partitions = max(4, 2 * (c.workers or int(ray.cluster_resources().get("CPU", 1))))
    root = os.path.join(run_dir, "curate")
    os.makedirs(root, exist_ok=True)
    steps = _steps()
    from logics_rl.config.loader import ConfigError

    built = {}
    for name in [str(s) for s in c.stages]:  # settings errors before anything runs
        try:
            built[name] = steps[name](c)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    reports: list[StepReport] = []
    key = _key("", "load", _fingerprint(c))
    names = ["load", *[str(s) for s in c.stages]]
    prev_dir = None
    files: list[str] = []
    for i, name in enumerate(names):
        step = built.get(name)
        if step is not None:
            settings = step.settings()
            if name == "distill" or (name == "annotate" and c.annotate.judge.model):
                # a model-served step: the model and its engine settings too
                settings = {
                    **settings,
                    "model": cfg.model.path,
                    "rollout": to_plain(cfg.rollout),
                    "max_prompt_length": cfg.data.max_prompt_length,
                    "seed": cfg.trainer.seed,
                }
            key = _key(key, name, settings)
        step_dir = os.path.join(root, f"{i:02d}-{name}-{key[:12]}")
        cached = os.path.exists(os.path.join(step_dir, DONE))
        t0, started = time.perf_counter(), time.time()
        if not cached:
            shutil.rmtree(step_dir, ignore_errors=True)
            os.makedirs(step_dir)
            ctx = StepContext(cfg, run_dir, step_dir, concurrency, partitions, console, model_path)
            try:
                if step is None:
                    from logics_rl.curate.source import read_inputs

                    ds, files, _ = read_inputs(c.inputs, str(c.on_bad_row), concurrency)
                    extra = {"files": files}
                else:
                    ds, extra = step.apply(read_kept(prev_dir, 2 * concurrency), ctx)
                _write(ds, step_dir)
            except Exception as exc:
                inner = _unwrap(exc)
                if isinstance(inner, DataError):
                    # Ray Data appends its retry advice to the message: the first line is ours
                    first = str(inner).splitlines()[0] if str(inner) else repr(inner)
                    raise DataError(f"curate step {name}: {first}") from None
                raise
            rows_in, rows_out, removed = _count(step_dir)
            rep = StepReport(
                name, rows_in, rows_out, removed, time.perf_counter() - t0, False, extra, started
            )
            with open(os.path.join(step_dir, "report.json"), "w", encoding="utf-8") as fh:
                json.dump(rep.__dict__, fh, indent=2)
            open(os.path.join(step_dir, DONE), "w").close()
        else:
            with open(os.path.join(step_dir, "report.json"), encoding="utf-8") as fh:
                rep = StepReport(**{**json.load(fh), "cached": True})
        if name == "load":
            files = rep.extra.get("files", files)
        reports.append(rep)
        console.print(_line(rep), highlight=False)
        prev_dir = step_dir

    outputs = write_outputs(prev_dir, os.path.join(run_dir, "output"), c.prompt)
    report = {
        "steps": [r.__dict__ for r in reports],
        "files": files,
        "outputs": outputs,
        "final_step_dir": prev_dir,
    }
    with open(os.path.join(run_dir, "report.json"), "w", encoding="utf-8") as fh:
        json.dump(report, fh, indent=2)
    print_report(console, reports, outputs)
    return report


def _configure_ray_data() -> None:
    """Hash shuffles by the key-partitioned strategy (about half the fixed cost per shuffle of
    the default one here: the components rounds are many small shuffles); Ray Data's
    per-execution INFO lines and its under-used-concurrency warning (small steps have fewer
    blocks than workers) stay off the console; warnings and errors still show."""
    import logging
    import warnings

    import ray.data
    from ray.data.context import ShuffleStrategy

    ctx = ray.data.DataContext.get_current()
    ctx.shuffle_strategy = ShuffleStrategy.HASH_SHUFFLE
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message="The maximum number of concurrent tasks")


def _line(rep: StepReport) -> str:
    how = "cached" if rep.cached else f"{rep.seconds:.1f} s"
    return f"curate {rep.name}: {rep.rows_in} -> {rep.rows_out} rows ({how})"


def print_report(console: Console, reports: list[StepReport], outputs: dict) -> None:
    table = Table(title="curation")
    for col in ("step", "rows in", "rows out", "removed (by reason)", "time"):
        table.add_column(col, justify="right" if col.startswith("rows") else "left")
    for r in reports:
        why = "\n".join(f"{n:>7} {reason}" for reason, n in r.removed.items()) or "-"
        table.add_row(
            r.name,
            str(r.rows_in),
            str(r.rows_out),
            why,
            "cached" if r.cached else f"{r.seconds:.1f} s",
        )
    console.print(table)
    for r in reports:
        if r.extra.get("histogram_edges"):
            print_histogram(console, r)
    for name, out in outputs.items():
        console.print(f"{name} set: {out['rows']} rows in {out['path']}", highlight=False)


def print_histogram(console: Console, rep: StepReport) -> None:
    """The length histogram a stratify step measured, before and after sampling."""
    e = rep.extra
    table = Table(title=f"{rep.name}: solution length (tokens), cut points {e['cut_points']}")
    for col in ("length", "before", "after"):
        table.add_column(col, justify="right")
    edges = e["histogram_edges"]
    for lo, hi, a, b in zip(edges, edges[1:], e["histogram_before"], e["histogram_after"]):
        table.add_row(f"{lo:g} - {hi:g}", str(a), str(b))
    console.print(table)


def _to_rl(batch, prompt: str):
    import pyarrow as pa

    rows = batch.select(["question", "answer", "source"]).to_pylist()
    return pa.table(
        {
            "prompt": [fill(prompt, r) for r in rows],
            "ground_truth": [r["answer"] for r in rows],
            "data_source": [r["source"] for r in rows],
        }
    )


def _to_sft(batch, prompt: str):
    import pyarrow as pa

    rows = batch.select(["question", "solution"]).to_pylist()
    msgs = [
        [
            {"role": "user", "content": fill(prompt, r)},
            {"role": "assistant", "content": r["solution"]},
        ]
        for r in rows
    ]
    return pa.table({"messages": msgs})


def write_outputs(step_dir: str, out_dir: str, prompt: str) -> dict:
    """The RL and SFT sets from the kept rows of ``step_dir``; their paths and row counts."""
    import pyarrow.compute as pc
    import pyarrow.dataset as pads

    shutil.rmtree(out_dir, ignore_errors=True)
    ds = read_kept(step_dir)
    outputs = {}
    for name, col, fn in (("rl", "answer", _to_rl), ("sft", "solution", _to_sft)):
        path = os.path.join(out_dir, name)
        sub = ds.map_batches(
            lambda b, col=col: b.filter(pc.is_valid(b.column(col))), batch_format="pyarrow"
        ).map_batches(fn, fn_kwargs={"prompt": prompt}, batch_format="pyarrow")
        sub.write_parquet(path)
        rows = pads.dataset(path, format="parquet").count_rows() if os.path.isdir(path) else 0
        outputs[name] = {"path": path, "rows": rows}
    return outputs
