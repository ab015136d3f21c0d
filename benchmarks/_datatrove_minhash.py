"""datatrove's four-stage MinHash dedup on a spec file: the driver ``bench_curate_datatrove.py`` runs.

    benchmarks/.datatrove-venv/bin/python benchmarks/_datatrove_minhash.py SPEC.json

Runs inside ``benchmarks/.datatrove-venv`` (never the package's environment) and imports only
datatrove. The spec (JSON) names ``input_dir`` (``*.jsonl`` shards), ``work_dir``, ``text_key``,
``id_key``, ``n_grams``, ``bands`` (datatrove's ``num_buckets``), ``rows``
(``hashes_per_bucket``), ``tasks`` (stage 1 and 4, one per shard), ``workers`` and
``compression`` (of the deduplicated output). The stages are datatrove's documented pipeline
(``examples/minhash_deduplication.py`` of its repository), each a ``LocalPipelineExecutor``:

1. ``JsonlReader`` -> ``MinhashDedupSignature`` (``tasks`` tasks): signatures, one file per task
   and bucket, sorted;
2. ``MinhashDedupBuckets`` (``bands`` tasks): equal band signatures -> duplicate pairs;
3. ``MinhashDedupCluster`` (1 task): union-find over the pairs -> ids to remove;
4. ``JsonlReader`` -> ``MinhashDedupFilter`` -> ``JsonlWriter`` (``tasks`` tasks): the kept rows.

Everything else is datatrove's default: ``MinhashConfig`` (seed 1, 64-bit xxhash shingle
hashes, ``TextNormConfig()`` normalisation), English word tokenizer, ``forkserver`` pools.
Each stage is timed on its own; afterwards (untimed) the kept ids are read back from the
output. ``SPEC.result.json`` gets the seconds, counts, config, versions and
``SPEC.kept.txt`` the kept ids, one per line.
"""

from __future__ import annotations

import gzip
import json
import sys
import time
from pathlib import Path


def run(spec: dict) -> dict:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup import MinhashDedupSignature
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
    )
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers.jsonl import JsonlWriter
    from datatrove.utils.typeshelper import Languages

    work = Path(spec["work_dir"])
    config = MinhashConfig(
        n_grams=spec["n_grams"], num_buckets=spec["bands"], hashes_per_bucket=spec["rows"]
    )
    tasks, workers = spec["tasks"], spec["workers"]

    def reader() -> JsonlReader:
        return JsonlReader(
            spec["input_dir"],
            text_key=spec["text_key"],
            id_key=spec["id_key"],
            glob_pattern="*.jsonl",
        )

    def executor(name: str, pipeline: list, n_tasks: int, n_workers: int):
        return LocalPipelineExecutor(
            pipeline=pipeline,
            tasks=n_tasks,
            workers=min(n_workers, n_tasks),
            logging_dir=str(work / "logs" / name),
        )

    stages = {
        "signatures": executor(
            "signatures",
            [
                reader(),
                MinhashDedupSignature(
                    output_folder=str(work / "signatures"),
                    config=config,
                    language=Languages.english,
                ),
            ],
            tasks,
            workers,
        ),
        "buckets": executor(
            "buckets",
            [
                MinhashDedupBuckets(
                    input_folder=str(work / "signatures"),
                    output_folder=str(work / "buckets"),
                    config=config,
                )
            ],
            config.num_buckets,
            workers,
        ),
        "cluster": executor(
            "cluster",
            [
                MinhashDedupCluster(
                    input_folder=str(work / "buckets"),
                    output_folder=str(work / "remove_ids"),
                    config=config,
                )
            ],
            1,
            1,
        ),
        "filter": executor(
            "filter",
            [
                reader(),
                MinhashDedupFilter(input_folder=str(work / "remove_ids")),
                JsonlWriter(str(work / "output"), compression=spec["compression"]),
            ],
            tasks,
            workers,
        ),
    }
    seconds = {}
    for name, ex in stages.items():
        t0 = time.perf_counter()
        ex.run()
        seconds[name] = time.perf_counter() - t0
        print(f"stage {name}: {seconds[name]:.2f} s", flush=True)

    kept = []
    for path in sorted((work / "output").iterdir()):
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as fh:
            # JsonlWriter drops falsy fields, so the document with id 0 comes back without one
            kept.extend(json.loads(line).get("id", 0) for line in fh)
    Path(spec["kept_path"]).write_text("".join(f"{k}\n" for k in kept), encoding="utf-8")

    import importlib.metadata as md

    return {
        "seconds": seconds,
        "kept": len(kept),
        "config": str(config),
        "norm_config": repr(config.norm_config),
        "hash_config": repr(config.hash_config),
        "seed": config.seed,
        "versions": {d: md.version(d) for d in ("datatrove", "spacy", "xxhash", "numpy")},
    }


def main() -> None:
    spec_path = Path(sys.argv[1])
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    result = run(spec)
    Path(spec["result_path"]).write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
