"""Bad input, generated: random config overrides give a ``ConfigError`` naming the key or a config
that passes every check made before a run starts; malformed data rows (wrong types, invalid
UTF-8, huge rows, cut parquet files) give a ``DataError`` naming the file and the row. Never any
other exception (a traceback)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import typing
from enum import Enum

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logics_rl.config.loader import ConfigError, load_config, preflight
from logics_rl.config.schema import Config
from logics_rl.data.files import DataError
from logics_rl.main import QUICKSTART

# Fixed examples in CI (a run's verdict must not depend on luck); a wider random search with
# LOGICS_RL_FUZZ_EXAMPLES=N (e.g. 2000) explores new ones each time.
_EXPLORE = os.environ.get("LOGICS_RL_FUZZ_EXAMPLES")
FUZZ = settings(
    max_examples=int(_EXPLORE or 120),
    derandomize=_EXPLORE is None,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def leaves(cls: type = Config, prefix: str = "") -> dict[str, object]:
    """Every leaf key of the schema and its type."""
    out: dict[str, object] = {}
    for f in dataclasses.fields(cls):
        t = typing.get_type_hints(cls)[f.name]
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(t):
            out.update(leaves(t, key + "."))
        else:
            out[key] = t
    return out


LEAVES = leaves()
TRICKY = [
    "0", "-1", "1", "2", "3", "-0.5", "0.5", "1e30", "-1e30", "nan", "inf", "-inf", "true", "false",
    "null", "''", "abc", "[]", "[1,2]", "{}", "{a: 1}", "9999999999999999999999", "1.5", "auto",
    "[[1]]", "[{name: x}]",
]  # fmt: skip


def typed_values(t: object) -> st.SearchStrategy[str]:
    """Values of the key's own type, near its edges (most configs get past the type check)."""
    args = [a for a in typing.get_args(t) if a is not type(None)]
    base = args[0] if args and typing.get_origin(t) is not list else t
    if base is bool:
        return st.sampled_from(["true", "false"])
    if base is int:
        return st.one_of(st.integers(-3, 8), st.integers(-(10**9), 10**9)).map(str)
    if base is float:
        return st.one_of(
            st.sampled_from(["0", "-1", "0.5", "1", "1e-9", "1e30", "nan", "inf"]),
            st.floats(-1e6, 1e6).map(repr),
        )
    if isinstance(base, type) and issubclass(base, Enum):
        return st.sampled_from([m.value for m in base] + ["nope"])
    return st.sampled_from(TRICKY)


override = st.sampled_from(sorted(LEAVES)).flatmap(
    lambda key: st.one_of(
        typed_values(LEAVES[key]), typed_values(LEAVES[key]), st.sampled_from(TRICKY)
    ).map(lambda v: f"{key}={v}")
)
junk = st.one_of(
    st.text(max_size=20),  # no '=', unknown keys, bare dots, control characters, ...
    st.text(st.characters(codec="utf-8", exclude_characters="\n\r"), max_size=12).map(
        lambda v: f"rollout.n={v}"
    ),
)
overrides = st.lists(st.one_of(override, override, override, junk), max_size=3)


def finite_floats(obj, where: str = "") -> list[str]:
    """Dotted keys of non-finite floats anywhere in the config (must never pass the checks)."""
    if dataclasses.is_dataclass(obj):
        out = []
        for f in dataclasses.fields(obj):
            out += finite_floats(getattr(obj, f.name), f"{where}{f.name}.")
        return out
    if isinstance(obj, float) and not math.isfinite(obj):
        return [where.rstrip(".")]
    if isinstance(obj, list):
        return [k for i, v in enumerate(obj) for k in finite_floats(v, f"{where}{i}.")]
    return []


@FUZZ
@given(overrides)
def test_random_overrides_give_a_config_error_or_a_config_that_passes_preflight(dots):
    try:
        cfg = load_config(QUICKSTART, dots)
        preflight(cfg)
    except ConfigError as exc:
        assert str(exc)  # a message, not a traceback
        return
    assert finite_floats(cfg) == []


def test_the_fuzz_reaches_valid_configs():
    # The overrides start from the quickstart recipe and mostly have their key's type: without
    # this, every example could be stopped by the same first check and prove little.
    valid = []

    @settings(max_examples=80, deadline=None, derandomize=True, database=None)
    @given(overrides)
    def count(dots):
        try:
            preflight(load_config(QUICKSTART, dots))
        except ConfigError:
            return
        valid.append(dots)

    count()
    assert len(valid) >= 10, valid  # 14 of 80 with this seed


def test_preflight_names_the_key_of_a_bad_plugin_setting():
    with pytest.raises(ConfigError, match=r"reward term 0 \('nope'\): unknown reward 'nope'"):
        preflight(load_config(QUICKSTART, ["reward.terms=[{name: nope}]"]))
    with pytest.raises(ConfigError, match="cosine_length"):
        preflight(load_config(QUICKSTART, ["reward.terms=[{name: cosine_length}]"]))
    with pytest.raises(ConfigError, match="actor.optim.lr: must be a finite number"):
        load_config(QUICKSTART, ["actor.optim.lr=nan"])


# --------------------------------------------------------------------------- data rows
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
prompt_like = st.fixed_dictionaries(
    {},
    optional={
        "prompt": json_values,
        "messages": json_values
        | st.lists(
            st.fixed_dictionaries({}, optional={"role": json_values, "content": json_values}),
            max_size=3,
        ),
        "ground_truth": json_values,
        "data_source": json_values,
        "extras": json_values,
        "response": json_values,
    },
)
raw_lines = st.one_of(
    prompt_like.map(lambda r: json.dumps(r).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=40),  # invalid UTF-8, control bytes, cut JSON
    st.just(b'{"prompt": "' + b"x " * 100_000 + b'", "ground_truth": "1"}'),  # a huge row
)


@pytest.fixture(scope="module")
def tok(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def load_prompt_rows(path: str, tok) -> None:
    from logics_rl.data.prompts import load_prompts

    load_prompts([path], tok, max_prompt_length=64)


def load_sft_rows(path: str, tok) -> None:
    from logics_rl.data.sft import load_conversations

    load_conversations([path], tok, max_length=64)


@pytest.mark.parametrize("load", [load_prompt_rows, load_sft_rows], ids=["prompts", "sft"])
@FUZZ
@given(lines=st.lists(raw_lines, min_size=1, max_size=4))
def test_malformed_rows_name_file_and_row(tmp_path_factory, tok, load, lines):
    path = str(tmp_path_factory.mktemp("rows") / "rows.jsonl")
    with open(path, "wb") as fh:
        fh.write(b"\n".join(lines) + b"\n")
    try:
        load(path, tok)
    except DataError as exc:
        msg = str(exc)
        assert path in msg, msg
        assert "row " in msg or "no usable" in msg or "no conversations" in msg, msg


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(cut=st.floats(0.0, 0.999))
def test_a_cut_parquet_file_is_named(tmp_path_factory, cut):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from logics_rl.data.files import iter_rows

    d = tmp_path_factory.mktemp("pq")
    rows = [{"prompt": f"q{i}", "ground_truth": str(i)} for i in range(300)]
    pq.write_table(pa.Table.from_pylist(rows), d / "full.parquet", row_group_size=50)
    data = (d / "full.parquet").read_bytes()
    path = d / "cut.parquet"
    path.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(DataError, match="cut.parquet"):
        list(iter_rows(str(path)))
