"""The data engine on the real stack: Ray Data on the session's local Ray cluster, rensa
MinHash, math-verify, and vLLM CPU serving the tiny model as a teacher."""

from __future__ import annotations

import glob
import json
import os

import numpy as np
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pytest
from rich.console import Console

from logics_rl.config.loader import load_config
from logics_rl.curate.planted import benchmark_rows, planted_rows

pytestmark = pytest.mark.integration


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
    return str(path)


def curate(run_dir, *overrides):
    from logics_rl.trainer.stages import run

    cfg = load_config(None, ["mode=curate", f"trainer.run_dir={run_dir}", *overrides])
    run(cfg, Console(width=120))
    with open(os.path.join(run_dir, "report.json"), encoding="utf-8") as fh:
        return json.load(fh)


def step_rows(run_dir, step, columns=("id", "_drop")):
    (d,) = glob.glob(os.path.join(run_dir, "curate", f"*-{step}-*"))
    return pads.dataset(os.path.join(d, "data"), format="parquet").to_table(columns=list(columns))


def kept_ids(run_dir, step) -> set[int]:
    t = step_rows(run_dir, step)
    return set(t.filter(pc.is_null(t["_drop"]))["id"].to_pylist())


def detection(s: np.ndarray, bands: int, rows: int, t: float = 0.7) -> np.ndarray:
    """P(a pair of Jaccard s is linked): it shares a band (the LSH S-curve) and its Jaccard,
    checked exactly, is at least ``t``."""
    return (1 - (1 - s**rows) ** bands) * (s >= t)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    d = tmp_path_factory.mktemp("planted")
    rows = list(planted_rows(1500, seed=3, exact_fraction=0.08, near_fraction=0.16))
    return rows, write_jsonl(d / "planted.jsonl", rows)


@pytest.fixture(scope="module")
def dedup_runs(ray_cluster, planted, tmp_path_factory):
    """The same dedup on 1 and on 2 Ray workers."""
    _, path = planted
    out = {}
    for workers in (1, 2):
        run_dir = str(tmp_path_factory.mktemp(f"dedup{workers}"))
        rep = curate(
            run_dir,
            f"curate.inputs=[{{path: {path}}}]",
            "curate.stages=[dedup]",
            f"curate.workers={workers}",
        )
        out[workers] = (run_dir, rep)
    return out


def test_dedup_finds_the_planted_duplicates_as_the_lsh_curve_predicts(planted, dedup_runs):
    rows, _ = planted
    run_dir, rep = dedup_runs[2]
    kept = kept_ids(run_dir, "dedup")
    extra = rep["steps"][1]["extra"]
    bands, r = extra["bands"], extra["rows"]
    clusters: dict[int, list[dict]] = {}
    for row in rows:
        clusters.setdefault(row["cluster"], []).append(row)

    # exact copies: one survivor among the original and its exact copies, the longest solution
    for members in clusters.values():
        group = [m for m in members if m["kind"] in ("original", "exact")]
        if len(group) > 1:
            alive = [m for m in group if m["uid"] in kept]
            assert len(alive) <= 1, group
    # precision: a removed row always has a planted cluster mate (originals share no shingle)
    for row in rows:
        if row["uid"] not in kept:
            assert len(clusters[row["cluster"]]) > 1, row
    # near copies: linked to their original (same dup_cluster) at least at the rate the S-curve
    # and the exact check predict from each pair's measured Jaccard (within 4 standard
    # deviations); sibling copies of the same original can link a pair too, so only more is
    t = step_rows(run_dir, "dedup", ("id", "dup_cluster")).to_pylist()
    label = {r["id"]: r["dup_cluster"] for r in t}
    near = [m for m in rows if m["kind"] == "near"]
    linked = np.array(
        [label[m["uid"]] is not None and label[m["uid"]] == label[m["cluster"]] for m in near]
    )
    p = detection(np.array([m["jaccard"] for m in near]), bands, r)
    sd = np.sqrt((p * (1 - p)).sum())
    assert linked.sum() >= p.sum() - 4 * sd, (linked.sum(), p.sum(), sd)
    jac = np.array([m["jaccard"] for m in near])
    assert linked[jac >= 0.85].mean() >= 0.95
    assert linked[jac <= 0.55].mean() < 0.5  # the threshold (0.7) separates
    assert extra["rejected_edges"] >= 0 and extra["candidate_edges"] >= extra["rejected_edges"]
    # every cluster keeps exactly one row: its label is a kept row, every other member removed
    for cid in {v for v in label.values() if v is not None}:
        members = [i for i, v in label.items() if v == cid]
        assert [i for i in members if i in kept] == [cid]
    removed = rep["steps"][1]["removed"]
    assert removed["exact duplicate"] == sum(
        len([m for m in c if m["kind"] in ("original", "exact")]) - 1
        for c in clusters.values()
        if sum(m["kind"] in ("original", "exact") for m in c) > 1
    )


def test_templated_questions_are_not_chained(ray_cluster, tmp_path):
    """800 distinct 2-digit sums and differences share most of their shingles (Jaccard 0.43,
    0.54 or 0.67, never 0.7): band collisions over 320,000 pairs, and signature estimates that
    land above 0.7, would chain them into components (527 of 2,000 such rows were removed
    before the check); the exact check keeps every one of them."""
    import random

    from logics_rl.data.synthetic import arithmetic_problem

    rng, seen, rows = random.Random(0), set(), []
    while len(rows) < 800:
        p = arithmetic_problem(rng, 2, 2)
        if p.prompt not in seen:
            seen.add(p.prompt)
            rows.append({"question": p.prompt, "answer": p.answer})
    path = write_jsonl(tmp_path / "arith.jsonl", rows)
    rep = curate(
        str(tmp_path / "run"), f"curate.inputs=[{{path: {path}}}]", "curate.stages=[dedup]"
    )
    dedup = rep["steps"][1]
    assert dedup["removed"] == {}, dedup
    assert dedup["extra"]["rejected_edges"] > 0  # there were chance collisions to reject


def test_dedup_keeps_the_longest_solution_of_an_exact_cluster(planted, dedup_runs):
    rows, _ = planted
    run_dir, _ = dedup_runs[1]
    kept = kept_ids(run_dir, "dedup")
    by_cluster: dict[int, list[dict]] = {}
    for row in rows:
        if row["kind"] in ("original", "exact"):
            by_cluster.setdefault(row["cluster"], []).append(row)
    checked = 0
    for group in by_cluster.values():
        alive = [m for m in group if m["uid"] in kept]
        if len(group) > 1 and alive:
            assert len(alive[0]["solution"]) == max(len(m["solution"]) for m in group)
            checked += 1
    assert checked > 20


def test_dedup_gives_the_same_rows_on_one_and_two_workers(dedup_runs):
    assert kept_ids(dedup_runs[1][0], "dedup") == kept_ids(dedup_runs[2][0], "dedup")
    assert dedup_runs[1][1]["steps"][1]["removed"] == dedup_runs[2][1]["steps"][1]["removed"]


def test_connected_components_of_chains_need_rounds_and_find_each_smallest(ray_cluster):
    from logics_rl.curate.dedup import components

    # 1-2-3-4-5 is a chain (no star), 20-21 and 21-22 meet at 21, 30-31 is already a star
    pairs = np.array([[1, 2], [2, 3], [3, 4], [4, 5], [20, 21], [22, 21], [30, 31]])
    stars, rounds = components(pairs, 3, 2, max_rounds=20)
    assert stars.tolist() == [[2, 1], [3, 1], [4, 1], [5, 1], [21, 20], [22, 20], [31, 30]]
    assert rounds >= 1


def test_decontaminate_removes_exactly_the_rows_sharing_a_benchmark_ngram(ray_cluster, tmp_path):
    originals = [r for r in planted_rows(400, seed=6) if r["kind"] == "original"][:15]
    bench = benchmark_rows(originals, 30, seed=5, copied=10)
    bench_path = write_jsonl(tmp_path / "bench.jsonl", bench)
    rows = list(planted_rows(400, seed=6, benchmark=bench, contaminate=10))
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    run_dir = str(tmp_path / "run")
    rep = curate(
        run_dir,
        f"curate.inputs=[{{path: {train}}}]",
        "curate.stages=[decontaminate]",
        f"curate.decontaminate.benchmarks=[{{path: {bench_path}, field: problem, name: fixture}}]",
    )
    kept = kept_ids(run_dir, "decontaminate")
    expected = {r["uid"] for r in rows if r["contaminated"]}
    assert len(expected) >= 20
    assert {r["uid"] for r in rows} - kept == expected
    assert rep["steps"][1]["removed"] == {"contaminated: fixture": len(expected)}


def test_distill_with_the_tiny_teacher_on_vllm_keeps_only_verified_solutions(
    ray_cluster, tiny_model, tmp_path
):
    from transformers import AutoTokenizer

    from logics_rl.data.prompts import load_prompts
    from logics_rl.data.sft import load_conversations
    from logics_rl.rewards import RewardInput, math_verify

    # single-digit answers: an untrained model's random text ends in the right digit often
    # enough (at k=16) that some questions keep a solution and others keep none
    rows = [{"q": f"Add {i} and 0.", "a": str(i % 10)} for i in range(12)]
    rows.append({"q": "A question without an answer."})
    path = write_jsonl(tmp_path / "raw.jsonl", rows)
    run_dir = str(tmp_path / "run")
    rep = curate(
        run_dir,
        f"model.path={tiny_model}",
        f"curate.inputs=[{{path: {path}, fields: {{question: q, answer: a}}}}]",
        "curate.stages=[distill]",
        "curate.workers=1",
        "curate.distill.k=16",
        "curate.distill.max_tokens=24",
        "curate.distill.temperature=1.0",
        "curate.distill.top_p=1.0",
        "curate.distill.keep=all",
    )
    t = step_rows(run_dir, "distill", ("id", "answer", "solution", "pass_rate", "_drop"))
    out = t.to_pylist()
    kept = [r for r in out if r["_drop"] is None]
    dropped = [r for r in out if r["_drop"] is not None]
    assert kept and dropped
    # every kept solution verifies against the reference; pass_rate = correct / k
    scores = math_verify(
        RewardInput.build([r["solution"] for r in kept], ground_truths=[r["answer"] for r in kept])
    ).components["correct"]
    assert scores == [1.0] * len(kept)
    per_q: dict[int, int] = {}
    for r in kept:
        per_q[r["id"]] = per_q.get(r["id"], 0) + 1
    for r in kept:
        assert r["pass_rate"] == pytest.approx(per_q[r["id"]] / 16)  # keep=all: every correct one
    reasons = {r["_drop"] for r in dropped}
    assert reasons <= {"distill: no correct solution in 16", "distill: no reference answer"}
    assert "distill: no reference answer" in reasons
    assert rep["steps"][1]["rows_out"] == len(kept)
    # the output sets load into the trainers' loaders unchanged
    tok = AutoTokenizer.from_pretrained(tiny_model)
    outs = rep["outputs"]
    prompts, _ = load_prompts([outs["rl"]["path"]], tok, max_prompt_length=512)
    assert len(prompts) == len(kept)
    assert sorted(p.ground_truth for p in prompts) == sorted(r["answer"] for r in kept)
    convs, _ = load_conversations([outs["sft"]["path"]], tok, max_length=512)
    assert len(convs) == len(kept) and all(any(c.loss_mask) for c in convs)


def test_a_bad_row_is_an_error_naming_file_and_row_or_dropped_and_counted(ray_cluster, tmp_path):
    from logics_rl.main import main

    rows = [
        {"question": "What is 1+1?", "answer": "2"},
        {"question": "Q?", "answer": ["2"]},
        {"answer": "3"},
    ]
    path = write_jsonl(tmp_path / "raw.jsonl", rows)
    args = ["mode=curate", f"curate.inputs=[{{path: {path}}}]", "curate.stages=[]"]
    code = main([*args, f"trainer.run_dir={tmp_path / 'a'}"])
    assert code == 2
    log = "".join((tmp_path / "a" / "run.log").read_text(encoding="utf-8").split())
    expected = f"error: curate step load: {path} row 2: 'answer' must be a string, got list"
    assert "".join(expected.split()) in log  # (the console wraps long lines)
    rep = curate(str(tmp_path / "b"), *args, "curate.on_bad_row=drop")
    assert rep["steps"][0]["removed"] == {
        "bad row: 'answer' must be a string, got list": 1,
        "bad row: no 'question' field": 1,
    }
    assert rep["outputs"]["rl"]["rows"] == 1
    # a damaged parquet file is named before anything runs
    bad = tmp_path / "broken.parquet"
    bad.write_bytes(b"PAR1 not really")
    bad_args = ["mode=curate", f"curate.inputs=[{{path: {bad}}}]", "curate.stages=[]"]
    code = main([*bad_args, f"trainer.run_dir={tmp_path / 'c'}"])
    assert code == 2
    log = "".join((tmp_path / "c" / "run.log").read_text(encoding="utf-8").split())
    assert f"curatestepload:{bad}:notareadableparquetfile" in log


def test_the_curate_example_reports_what_it_planted(ray_cluster, tmp_path):
    import importlib.util

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    spec = importlib.util.spec_from_file_location(
        "curate_arith", os.path.join(root, "examples", "curate_arith.py")
    )
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    rep = example.main(["--out", str(tmp_path / "run"), "--rows", "300"])
    removed = {s["name"]: s["removed"] for s in rep["steps"]}
    assert removed["annotate"] == {"filter: verifiable == True": 12}  # the answerless drafts
    assert removed["dedup"]["exact duplicate"] == 30
    assert 24 <= removed["dedup"]["near duplicate (jaccard >= 0.7)"] <= 30
    assert removed["decontaminate"] == {"contaminated: arith_eval": 12}
    assert rep["outputs"]["rl"]["rows"] == rep["steps"][-1]["rows_out"] > 0
    # each step's start time: in order, each after the previous one's start plus its seconds
    for a, b in zip(rep["steps"], rep["steps"][1:]):
        assert b["started"] >= a["started"] + a["seconds"] > 1.7e9


def test_judge_annotation_through_vllm_counts_unparsable_replies(ray_cluster, tiny_model, tmp_path):
    # the untrained tiny model never writes a JSON object: every reply is counted as unparsed
    # and its judge columns stay empty (never guessed); a filter on judge_ok drops those rows
    rows = [{"question": f"What is {i}+{i}?", "answer": str(2 * i)} for i in range(6)]
    path = write_jsonl(tmp_path / "raw.jsonl", rows)
    run_dir = str(tmp_path / "run")
    rep = curate(
        run_dir,
        f"curate.inputs=[{{path: {path}}}]",
        "curate.stages=[annotate]",
        "curate.workers=1",
        f"curate.annotate.judge.model={tiny_model}",
        "curate.annotate.judge.max_tokens=16",
        "curate.annotate.filters=[{field: judge_ok, op: '==', value: true}]",
    )
    step = rep["steps"][1]
    assert step["extra"]["judge"] == {"replies": 6, "unparsed": 6}
    assert step["removed"] == {"filter: judge_ok == True": 6}
    t = step_rows(run_dir, "annotate", ("judge_difficulty", "judge_topic", "verifiable"))
    assert t["judge_difficulty"].null_count == 6 and t["judge_topic"].null_count == 6
    assert t["verifiable"].to_pylist() == [True] * 6
