"""Two Ray nodes on this machine (two raylets, Ray's test cluster utility): ``cluster.nnodes=2``
puts one rank on each node and the run equals the single-node two-rank run; SIGKILL of the
second node (its raylet and the worker under it: the machine going down) mid-run is reported as
that node's failure within 60 s, with the last
checkpoint intact, and the same command resumes from it once the node is back.

Marked ``slow`` (about 4 minutes): ``make test-slow`` runs it, ``make test`` does not."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
import time

import psutil
import pytest

pytestmark = [pytest.mark.faults, pytest.mark.slow]

SETTINGS = ("sft.total_steps=40", "sft.save_every=2", "cluster.cpus_per_proc=1")


@pytest.fixture(scope="module")
def two_nodes():
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False}
    )
    second = cluster.add_node(num_cpus=2)
    cluster.wait_for_nodes()
    yield cluster, second
    cluster.shutdown()


@pytest.fixture(scope="module")
def two_rank_reference(sft_recipe, main_run, tmp_path_factory) -> str:
    run_dir = str(tmp_path_factory.mktemp("two_ranks") / "run")
    code, out, _ = main_run(sft_recipe, run_dir, *SETTINGS, "cluster.procs_per_node=2")
    assert code == 0, out[-3000:]
    assert "2 rank(s) on CPU, 1 node(s)" in out
    return run_dir


def test_one_rank_per_node_equals_two_ranks_on_one_node(
    two_nodes, two_rank_reference, sft_recipe, main_run, assert_same_run, tmp_path
):
    cluster, _ = two_nodes
    run_dir = str(tmp_path / "run")
    env = {"RAY_ADDRESS": cluster.address}
    code, out, _ = main_run(sft_recipe, run_dir, *SETTINGS, "cluster.nnodes=2", env=env)
    assert code == 0, out[-3000:]
    assert "2 rank(s) on CPU, 2 node(s)" in out
    assert_same_run(run_dir, two_rank_reference)


def test_a_node_lost_mid_run_is_reported_and_the_run_resumes(
    two_nodes, two_rank_reference, sft_recipe, main_cmd, main_run, assert_same_run, tmp_path
):
    cluster, second = two_nodes
    run_dir = str(tmp_path / "run")
    env = {**os.environ, "RAY_ADDRESS": cluster.address, "COLUMNS": "2000"}
    cmd = main_cmd(sft_recipe, run_dir, *SETTINGS, "cluster.nnodes=2")
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    step_2 = os.path.join(run_dir, "checkpoints", "step_2", "COMPLETE")
    deadline = time.monotonic() + 300
    while not os.path.exists(step_2):
        assert proc.poll() is None, "".join(lines)[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    # The machine goes down: its raylet and every process under it (the rank-1 worker) are
    # SIGKILLed at once (a raylet killed alone leaves its workers running for a while).
    raylet = next(p for p in second.all_processes["raylet"])
    node = [psutil.Process(raylet.process.pid)]
    node += node[0].children(recursive=True)
    t0 = time.monotonic()
    for p in node:
        with contextlib.suppress(psutil.Error):
            os.kill(p.pid, signal.SIGKILL)
    code = proc.wait(timeout=120)
    reported = time.monotonic() - t0
    reader.join(10)
    out = "".join(lines)
    said = next((x for x in out.splitlines() if "error:" in x), "")
    print(f"\nmeasured: node lost -> exit {code} after {reported:.1f} s: {said}")
    assert code == 3, out[-3000:]
    assert reported < 60
    # the rank on the lost node (bundle order decides which) is named, with its node
    assert re.search(r"worker rank [01] \(pid \d+\) died while running \w+\(\)", out), out[-3000:]
    assert f"Cause: its node {second.node_id} died or lost contact with the head" in out
    assert "Last complete checkpoint" in out

    cluster.remove_node(second, allow_graceful=False)
    cluster.add_node(num_cpus=2)
    cluster.wait_for_nodes()
    code, out, _ = main_run(
        sft_recipe, run_dir, *SETTINGS, "cluster.nnodes=2", env={"RAY_ADDRESS": cluster.address}
    )
    assert code == 0, out[-3000:]
    assert f"resumed from {run_dir}/checkpoints/step_" in out
    assert_same_run(run_dir, two_rank_reference)
