"""Shared by the train-engine tests: a batch of uneven rows, a globally normalised loss, a plain
HF reference, and Megatron engine runs in their own gloo worlds (spawned processes, no Ray).

``run_world(world, spec)`` starts ``world`` processes that each build the engine at
``spec["tp"]`` x ``spec["pp"]`` (data parallel takes the rest) and write what the tests compare
into ``spec["out"]``: log-probs, entropy, HF-named gradients of one loss, per-step losses of a
short training run, its exported HF weights, and (when asked) a checkpoint written or read.
"""

from __future__ import annotations

import os
import socket

import torch

from logics_rl.protocol import Batch


def make_batch(
    n: int = 8, seed: int = 0, vocab: int = 100, group: int = 1, max_prompt: int = 6
) -> Batch:
    """Rows of uneven prompt (up to ``max_prompt``) / response lengths (some responses empty),
    random weights; ``group`` consecutive rows share a prompt (a GRPO group)."""
    g = torch.Generator().manual_seed(seed)
    P, R = max_prompt, 9
    prompts = -(-n // group)
    p_len = torch.randint(1, P + 1, (prompts,), generator=g).repeat_interleave(group)[:n]
    r_len = torch.randint(0, R + 1, (n,), generator=g)
    pm = torch.arange(P)[None] >= (P - p_len)[:, None]
    rm = torch.arange(R)[None] < r_len[:, None]
    prompt_ids = torch.randint(5, vocab, (prompts, P), generator=g).repeat_interleave(group, 0)
    return Batch.from_dict(
        {
            "prompt_ids": prompt_ids[:n] * pm,
            "prompt_mask": pm,
            "response_ids": torch.randint(5, vocab, (n, R), generator=g) * rm,
            "response_mask": rm,
            "loss_mask": rm,
            "weight": torch.randn(n, R, generator=g),
        }
    )


def weighted_nll(total_tokens: int):
    """sum(-w * logp) / total_tokens: globally normalised, like the RL losses."""

    def loss_fn(mb: Batch, logp_BT, entropy_BT):
        w = mb["weight"] * mb["response_mask"]
        loss = -(w * logp_BT).sum() / total_tokens
        return loss, {"loss_sum": float(loss) * total_tokens / max(1, int(mb["loss_mask"].sum()))}

    return loss_fn


def hf_reference(model_path: str, batch: Batch, temperature: float = 1.0):
    """Plain HF, one sample at a time, fp32, one process: log-probs and entropy at
    ``temperature``, and the gradients of ``weighted_nll`` (at temperature 1)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    total = int(batch["response_mask"].sum())
    loss = 0.0
    logps = torch.zeros(batch["response_ids"].shape)
    entropy = torch.zeros(batch["response_ids"].shape)
    for i in range(len(batch)):
        p = batch["prompt_ids"][i][batch["prompt_mask"][i]]
        r = batch["response_ids"][i][batch["response_mask"][i]]
        logits = model(torch.cat([p, r])[None]).logits[0].float()[len(p) - 1 : len(p) - 1 + len(r)]
        lp = torch.log_softmax(logits, -1).gather(-1, r[:, None])[:, 0]
        at_t = torch.log_softmax(logits.detach() / temperature, -1)
        logps[i, : len(r)] = at_t.gather(-1, r[:, None])[:, 0]
        entropy[i, : len(r)] = -(at_t.exp() * at_t).sum(-1)
        loss = loss - (batch["weight"][i, : len(r)] * lp).sum() / total
    loss.backward()
    return logps, entropy, {n: p.grad for n, p in model.named_parameters()}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_world(world: int, spec: dict) -> None:
    import torch.multiprocessing as mp

    port = _free_port()
    mp.start_processes(_worker, args=(world, port, spec), nprocs=world, start_method="spawn")


def _hf_grads(engine) -> dict[str, torch.Tensor]:
    """This stage's gradients under HF names (tp shards gathered)."""
    import torch.distributed as dist

    from logics_rl.engines.train.megatron import convert

    out = {}
    for name, p in engine.module.gpt.named_parameters():
        if engine.shape.tied and name == "output_layer.weight" and not engine.first_stage:
            continue  # the tied copy: its gradient was summed into the embedding's
        g = p.grad
        shards = [g]
        if engine.tp > 1:
            shards = [torch.empty_like(g) for _ in range(engine.tp)]
            dist.all_gather(shards, g.contiguous(), group=engine.tp_group)
        out.update(convert.hf_from_shards(name, shards, engine.shape, engine.layer_offset))
    return out


def _worker(rank: int, world: int, port: int, spec: dict) -> None:
    import torch.distributed as dist

    from logics_rl.config.schema import ParallelConfig, TrainEngineConfig
    from logics_rl.engines.train import build_train_engine

    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    cfg = TrainEngineConfig(
        engine="megatron",
        parallel=ParallelConfig(
            tensor=spec["tp"], pipeline=spec["pp"], sequence=spec.get("sp", False)
        ),
        max_tokens_per_micro_batch=spec.get("max_tokens", 64),
        activation_checkpointing=spec.get("recompute", False),
        dtype=spec.get("dtype", "auto"),
    )
    cfg.optim.lr = 1e-3
    engine = build_train_engine(cfg, spec["model"], total_steps=10, seed=0)
    par = engine.parallel
    batch = make_batch(vocab=101)  # every test model has at least 101 tokens
    # every data-parallel rank takes its rows, like the controller's DP_COMPUTE dispatch
    rows = list(range(par.dp_rank, len(batch), par.dp_size))
    local = batch[rows]
    total = int(batch["response_mask"].sum())
    out: dict = {"rows": rows, "parallel": par}
    count = torch.tensor([float(sum(_count(engine, n, p) for n, p in engine._local_params()))])
    dist.all_reduce(count, group=engine.mp_group)
    out["params"] = int(count.item())

    lp = engine.compute_log_prob(local, temperature=0.7, with_entropy=True)
    out["logp"], out["entropy"] = lp.logp, lp.entropy
    m = engine.forward_backward(local, weighted_nll(total), temperature=1.0)
    engine._reduce_grads()
    out["metrics"] = m
    out["grads"] = _hf_grads(engine)
    engine.optimizer.zero_grad(set_to_none=True)

    losses = []
    for _ in range(spec.get("steps", 3)):
        m = engine.train_step(local, weighted_nll(total), temperature=1.0)
        losses.append((m.get("loss_sum", 0.0), m["grad_norm"]))
    out["losses"] = losses
    if spec.get("save"):
        engine.save_checkpoint(spec["save"])
        out["saved_weights"] = {n: t.clone() for n, t in engine.named_parameters_for_export()}
    if spec.get("load"):
        engine.load_checkpoint(spec["load"])
    if spec.get("after_steps"):
        for _ in range(spec["after_steps"]):
            engine.train_step(local, weighted_nll(total), temperature=1.0)
    out["weights"] = {n: t.clone() for n, t in engine.named_parameters_for_export()}
    os.makedirs(spec["out"], exist_ok=True)
    torch.save(out, os.path.join(spec["out"], f"rank{rank}.pt"))
    dist.barrier()
    dist.destroy_process_group()


def _count(engine, name: str, p) -> int:
    """Values of a parameter counted once across the model-parallel group: tp duplicates on tp
    rank 0 only, a tied output copy not at all, vocabulary padding rows not at all."""
    from megatron.core.tensor_parallel import param_is_not_tensor_parallel_duplicate

    if engine.shape.tied and name == "output_layer.weight" and not engine.first_stage:
        return 0
    if not param_is_not_tensor_parallel_duplicate(p):
        return 0
    if name in ("embedding.word_embeddings.weight", "output_layer.weight"):
        rows = p.shape[0]
        return max(0, min(rows, engine.shape.vocab - engine.tp_rank * rows)) * p.shape[1]
    return p.numel()


def load_results(out_dir: str) -> list[dict]:
    files = sorted(f for f in os.listdir(out_dir) if f.startswith("rank"))
    return [torch.load(os.path.join(out_dir, f), weights_only=False) for f in files]
