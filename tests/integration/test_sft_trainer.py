"""The SFT trainer end to end on CPU (real Ray, FSDP2 over gloo, the tied tiny Qwen3).

- the loss of a step is the token-mean NLL of the assistant tokens only, over every rank: checked
  against a plain HF forward on hand-built multi-turn conversations (the token-level mask itself
  is covered by ``tests/unit/data/test_data.py``); validation on an odd number of conversations
  over two ranks counts each conversation once;
- the loss falls over a few steps of the synthetic arithmetic task;
- a run resumed from a mid-run checkpoint logs exactly the metrics of the uninterrupted run, across
  epochs of a small train set.
"""

from __future__ import annotations

import io
import math
import os
from types import SimpleNamespace

import pytest
import torch
from rich.console import Console

from logics_rl.config.loader import load_config
from logics_rl.config.schema import SyntheticDataConfig
from logics_rl.data.files import write_jsonl
from logics_rl.data.synthetic import write_task
from logics_rl.tracking import read_metrics
from logics_rl.trainer.sft import SFTTrainer

pytestmark = pytest.mark.integration

CONVERSATIONS = [
    [
        {"role": "system", "content": "You add numbers."},
        {"role": "user", "content": "1+1?"},
        {"role": "assistant", "content": "1+1=2. \\boxed{2}"},
        {"role": "user", "content": "And 2+2?"},
        {"role": "assistant", "content": "\\boxed{4}"},
    ],
    [
        {"role": "user", "content": "Say hi."},
        {"role": "assistant", "content": "hi"},
    ],
    [
        {"role": "user", "content": "Count to three."},
        {"role": "assistant", "content": "1 2 3"},
        {"role": "user", "content": "Backwards?"},
        {"role": "assistant", "content": "3 2 1"},
        {"role": "user", "content": "Thanks"},
        {"role": "assistant", "content": "You're welcome!"},
    ],
]
PROMPT_RESPONSE = {"prompt": "What is 5-3?", "response": "5-3=2, so \\boxed{2}."}


def sft_config(run_dir: str, model: str, train: list[str], val: list[str], **kw):
    settings = {
        "mode": "sft",
        "model.path": model,
        "sft.train_files": "[" + ",".join(train) + "]",
        "sft.val_files": "[" + ",".join(val) + "]",
        "sft.max_length": 256,
        "sft.optim.lr": 3e-3,
        "sft.optim.warmup_steps": 2,
        "sft.optim.schedule": "cosine",
        "sft.optim.min_lr_ratio": 0.1,
        "sft.optim.weight_decay": 0.0,
        "trainer.progress": False,
        "trainer.plot": False,
        "trainer.run_dir": run_dir,
        "cluster.call_timeout_s": 600,
    }
    settings.update({k.replace("__", "."): v for k, v in kw.items()})
    return load_config(None, [f"{k}={v}" for k, v in settings.items()])


def fit(cfg, model: str, export_to: str | None = None, out: io.StringIO | None = None):
    console = Console(file=out if out is not None else io.StringIO(), width=200)
    trainer = SFTTrainer(cfg, model, cfg.trainer.run_dir, console)
    try:
        trainer.fit()
        if export_to:
            trainer.export_hf(export_to)
    finally:
        trainer.shutdown()
    return read_metrics(os.path.join(cfg.trainer.run_dir, "metrics.jsonl"))


def by_hand(messages: list[dict], tokenizer) -> tuple[list[int], list[bool]]:
    """Token ids of the rendered conversation and the trained-token mask, found by searching the
    text: each assistant turn trains on its content and the ``<|im_end|>`` that closes it."""
    text = tokenizer.apply_chat_template(messages, tokenize=False)

    def n_tokens(s: str) -> int:
        return len(tokenizer(s, add_special_tokens=False)["input_ids"])

    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    mask = [False] * len(ids)
    pos = 0
    for m in messages:
        if m["role"] != "assistant":
            continue
        head, body = "<|im_start|>assistant\n", m["content"] + "<|im_end|>"
        start = text.index(head + body, pos) + len(head)
        pos = start + len(body)
        a, b = n_tokens(text[:start]), n_tokens(text[:pos])
        mask[a:b] = [True] * (b - a)
    return ids, mask


def reference_nll(
    model_path: str, convs: list[tuple[list[int], list[bool]]]
) -> tuple[float, float]:
    """(mean NLL over trained tokens, mean NLL over every predicted token), plain HF."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    trained = everything = 0.0
    n_trained = n_all = 0
    for ids, mask in convs:
        x = torch.tensor([ids])
        with torch.no_grad():
            logp = torch.log_softmax(model(x).logits[0].float(), -1)
        nll = -logp[:-1].gather(-1, x[0, 1:, None])[:, 0]
        m = torch.tensor(mask[1:])
        trained += float(nll[m].sum())
        n_trained += int(m.sum())
        everything += float(nll.sum())
        n_all += len(nll)
    return trained / n_trained, everything / n_all


def test_sft_loss_is_the_nll_of_assistant_tokens_across_ranks(ray_cluster, tiny_model, tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    rows = [{"messages": c} for c in CONVERSATIONS] + [PROMPT_RESPONSE]
    too_long = {"prompt": "x" * 300, "response": "y"}  # over sft.max_length=256: dropped, counted
    write_jsonl(str(tmp_path / "train.jsonl"), [*rows[:2], too_long, *rows[2:]])
    write_jsonl(str(tmp_path / "val.jsonl"), rows[:3])  # 3 rows over 2 ranks: one padding row
    convs = [by_hand(c, tok) for c in CONVERSATIONS]
    convs.append(
        by_hand(
            [
                {"role": "user", "content": PROMPT_RESPONSE["prompt"]},
                {"role": "assistant", "content": PROMPT_RESPONSE["response"]},
            ],
            tok,
        )
    )
    # one token per character: each assistant turn trains len(content) + 1 (<|im_end|>) tokens
    hand_tokens = sum(
        len(m["content"]) + 1 for c in CONVERSATIONS for m in c if m["role"] == "assistant"
    )
    hand_tokens += len(PROMPT_RESPONSE["response"]) + 1
    assert sum(sum(m) for _, m in convs) == hand_tokens

    want, everything = reference_nll(tiny_model, convs)
    assert abs(want - everything) > 1e-3  # 10x the tolerance: counting other tokens would show

    cfg = sft_config(
        str(tmp_path / "run"),
        tiny_model,
        [str(tmp_path / "train.jsonl")],
        [str(tmp_path / "val.jsonl")],
        sft__batch_size=4,
        sft__total_steps=1,
        cluster__procs_per_node=2,
    )
    out = io.StringIO()
    rows = fit(cfg, tiny_model, export_to=str(tmp_path / "hf"), out=out)
    assert "SFT conversations: 4 of 5 rows; 1 longer than sft.max_length=256 tokens dropped" in (
        out.getvalue()
    )
    step = next(r for r in rows if "sft/loss" in r)
    assert step["sft/tokens"] == hand_tokens
    assert step["sft/loss"] == pytest.approx(want, abs=1e-4)
    assert step["actor/lr"] == pytest.approx(3e-3 / 2)  # warm-up step 1 of 2
    # validation after the update: the exported weights give the same NLL, each row counted once
    val = next(r for r in rows if "val/sft_loss" in r)
    got_val, _ = reference_nll(str(tmp_path / "hf"), convs[:3])
    assert val["val/sft_loss"] == pytest.approx(got_val, abs=1e-4)
    assert val["val/sft_loss"] != pytest.approx(want, abs=1e-3)  # the update moved the model


@pytest.fixture(scope="module")
def arithmetic_sft(tmp_path_factory) -> dict[str, str]:
    cfg = SyntheticDataConfig(task="arithmetic", train_size=24, val_size=8, max_digits=2, seed=7)
    return write_task(cfg, str(tmp_path_factory.mktemp("sft_data")))


@pytest.fixture(scope="module")
def sft_reference(ray_cluster, tiny_model, arithmetic_sft, tmp_path_factory) -> SimpleNamespace:
    """Eight uninterrupted steps of 8 conversations (an epoch every 3 steps), saving at step 4."""
    run_dir = str(tmp_path_factory.mktemp("sft_reference"))
    cfg = arithmetic_config(run_dir, tiny_model, arithmetic_sft, sft__save_every=4)
    return SimpleNamespace(rows=fit(cfg, tiny_model), run_dir=run_dir)


def arithmetic_config(run_dir: str, model: str, data: dict[str, str], **kw):
    return sft_config(
        run_dir,
        model,
        [data["sft_train"]],
        [data["sft_val"]],
        sft__batch_size=8,
        sft__total_steps=8,
        sft__val_every=4,
        trainer__keep_last=0,
        **kw,
    )


def test_sft_loss_decreases(sft_reference):
    rows = sft_reference.rows
    loss = [r["sft/loss"] for r in rows if "sft/loss" in r]
    assert len(loss) == 8
    assert loss[0] == pytest.approx(math.log(100), abs=0.5)  # about uniform over ~100 characters
    assert sum(loss[-2:]) / 2 < sum(loss[:2]) / 2 - 1.0, loss
    val = [(r["step"], r["val/sft_loss"]) for r in rows if "val/sft_loss" in r]
    assert [s for s, _ in val] == [4, 8]
    assert val[1][1] < val[0][1], val


def test_sft_resume_from_a_checkpoint_repeats_the_run(
    sft_reference, tiny_model, arithmetic_sft, tmp_path
):
    """A new run started from the reference's step-4 checkpoint (``trainer.resume=PATH``) logs
    the reference's steps 5-8 and final validation; step 5 opens the third epoch mid-batch."""
    ckpt = os.path.join(sft_reference.run_dir, "checkpoints", "step_4")
    assert sorted(os.listdir(os.path.dirname(ckpt))) == ["step_4", "step_8"]
    cfg = arithmetic_config(str(tmp_path), tiny_model, arithmetic_sft, trainer__resume=ckpt)
    rows = fit(cfg, tiny_model)
    want = [r for r in sft_reference.rows if r["step"] > 4]
    assert [r["step"] for r in rows] == [r["step"] for r in want] == [5, 6, 7, 8, 8]
    for g, w in zip(rows, want):
        g = {k: v for k, v in g.items() if not k.startswith("time/")}
        w = {k: v for k, v in w.items() if not k.startswith("time/")}
        assert g.keys() == w.keys()
        for k in w:
            assert g[k] == pytest.approx(w[k], abs=1e-6), (w["step"], k)
