"""HF rollout engine: reproducible sampling, correct log-probs, finish reasons, weight updates."""

from __future__ import annotations

import torch

from logics_rl.engines.rollout.base import Sampling, buckets
from logics_rl.engines.rollout.hf import HFEngine, _filter


def test_same_seed_same_samples_and_resume(tiny_model):
    s = Sampling(n=3, temperature=1.0, max_tokens=12)
    prompts = [[5, 6, 7], [8, 9]]
    a, b = HFEngine(tiny_model, seed=7), HFEngine(tiny_model, seed=7)
    ga1, gb1 = a.generate(prompts, s), b.generate(prompts, s)
    assert ga1.response_ids == gb1.response_ids and ga1.logprobs == gb1.logprobs
    assert len(ga1.response_ids) == 6
    ga2 = a.generate(prompts, s)
    assert ga2.response_ids != ga1.response_ids  # a new call draws new samples
    c = HFEngine(tiny_model, seed=7)
    c.load_state_dict(b.state_dict())  # resume after one call
    assert c.generate(prompts, s).response_ids == ga2.response_ids
    assert HFEngine(tiny_model, seed=8).generate(prompts, s).response_ids != ga1.response_ids


def test_logprobs_are_those_of_the_sampling_distribution(tiny_model):
    eng = HFEngine(tiny_model, seed=0)
    s = Sampling(n=1, temperature=0.7, top_k=20, max_tokens=6)
    g = eng.generate([[5, 6, 7]], s)
    ids = [5, 6, 7] + g.response_ids[0]
    with torch.no_grad():
        logits = eng.model(torch.tensor([ids])).logits[0].float()
    for j, tok in enumerate(g.response_ids[0]):
        row = _filter(logits[2 + j] / 0.7, 20, 1.0)
        assert abs(float(torch.log_softmax(row, -1)[tok]) - g.logprobs[0][j]) < 1e-4
    assert g.finish_reasons[0] in ("stop", "length")
    if g.finish_reasons[0] == "length":
        assert len(g.response_ids[0]) == 6


def test_greedy_finish_reason_and_prompt_logprobs(tiny_model):
    eng = HFEngine(tiny_model, seed=0)
    g = eng.generate([[5, 6]], Sampling(n=1, temperature=0.0, max_tokens=4))
    assert g.finish_reasons == ["length"] or g.response_ids[0][-1] in eng.eos_ids
    seq = [5, 6, 7, 8]
    lp = eng.prompt_logprobs([seq])[0]
    with torch.no_grad():
        ref = torch.log_softmax(eng.model(torch.tensor([seq])).logits[0].float(), -1)
    assert len(lp) == 3
    for t in range(1, 4):
        assert abs(lp[t - 1] - float(ref[t - 1, seq[t]])) < 1e-5


def test_ignore_eos_runs_every_sample_to_max_tokens(tiny_model):
    eng = HFEngine(tiny_model, seed=0)
    eng.eos_ids = set(range(eng.model.config.vocab_size))  # every token ends a sample
    s = Sampling(n=2, temperature=1.0, max_tokens=5)
    g = eng.generate([[5, 6]], s)
    assert [len(r) for r in g.response_ids] == [1, 1] and g.finish_reasons == ["stop"] * 2
    s.ignore_eos = True
    g = eng.generate([[5, 6]], s)
    assert [len(r) for r in g.response_ids] == [5, 5] and g.finish_reasons == ["length"] * 2


def test_top_p_keeps_the_nucleus():
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    kept = torch.isfinite(_filter(logits, -1, 0.8))
    assert kept.tolist() == [True, True, False, False]
    assert torch.isfinite(_filter(logits, -1, 0.3)).tolist() == [True, False, False, False]
    assert torch.isfinite(_filter(logits, 2, 1.0)).tolist() == [True, True, False, False]


def test_update_weights_changes_outputs(tiny_model):
    eng = HFEngine(tiny_model, seed=0)
    before = eng.prompt_logprobs([[5, 6, 7, 8]])[0]
    new = [(n, p.detach() + 0.01) for n, p in eng.model.named_parameters()]
    stats = eng.update_weights(new)
    assert stats["bytes"] == sum(p.numel() * 4 for _, p in new)
    assert eng.prompt_logprobs([[5, 6, 7, 8]])[0] != before


def test_buckets_bound_size_and_keep_order():
    tensors = [(f"t{i}", torch.zeros(n)) for i, n in enumerate([10, 10, 30, 5, 5])]
    out = list(buckets(tensors, bucket_bytes=80))  # 20 float32 elements per bucket
    assert [[n for n, _ in b] for b in out] == [["t0", "t1"], ["t2"], ["t3", "t4"]]
    assert all(
        t.dtype == torch.bfloat16 for b in buckets(tensors, 80, torch.bfloat16) for _, t in b
    )
