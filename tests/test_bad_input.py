"""Bad input at every public entry point, counted: each case must end in ONE clear error
(a ValueError or OSError whose first line names the problem; on the command line exit status
2 and one line on stderr, no traceback) and leave no half-written result file.

Counts per input class go to ``BAD_INPUT`` and, with ``SUPERPOSE_BAD_INPUT_SUMMARY=F``, to the
JSON file F at the end of the session (the README's table comes from it).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from empirical import cli
from empirical.llm import load_model
from tests.tiny_llm import random_params, tiny_config, tiny_spec, write_tiny_gguf

#: input class -> {"tried", "clean", "accepted"} ("accepted": a valid input after all, e.g. a
#: bit flip inside a weight's mantissa; it must then load and hold finite weights).
BAD_INPUT: dict[str, dict[str, int]] = defaultdict(lambda: {"tried": 0, "clean": 0, "accepted": 0})
CLEAN = (ValueError, OSError)  # ModelFileError, UsageError and FileNotFoundError among them
CASES = settings(max_examples=int(os.environ.get("SUPERPOSE_BAD_INPUT_EXAMPLES", "25")), deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@contextmanager
def one_clear_error(kind: str, *, match: str | None = None, may_accept: bool = False):
    """The body must raise one clear error (or, with ``may_accept``, succeed); counted under ``kind``."""
    BAD_INPUT[kind]["tried"] += 1
    try:
        yield
    except CLEAN as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        assert first, f"{kind}: {type(err).__name__} without a message"
        if match is not None:
            assert match in first, f"{kind}: {first!r} does not say {match!r}"
        BAD_INPUT[kind]["clean"] += 1
        return
    assert may_accept, f"{kind}: bad input was accepted"
    BAD_INPUT[kind]["accepted"] += 1


def cli_error(kind: str, argv: list[str], capsys, *, leaves: list[Path] = (), match: str | None = None) -> None:
    """``superpose argv`` must exit 2 with one line on stderr and write none of ``leaves``."""
    BAD_INPUT[kind]["tried"] += 1
    code = cli.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, (kind, argv, code, err)
    assert len(err) == 1 and err[0].startswith(f"superpose {argv[0]}: error: "), (kind, err)
    assert "Traceback" not in err[0]
    if match is not None:
        assert match in err[0], (kind, err[0])
    for path in leaves:
        assert not Path(path).exists(), f"{kind}: {path} was written"
        stray = [p for p in Path(path).parent.glob(f".{Path(path).name}.*")] if Path(path).parent.is_dir() else []
        assert not stray, f"{kind}: temporary files left: {stray}"
    BAD_INPUT[kind]["clean"] += 1


@pytest.fixture(scope="module")
def gguf_bytes(tmp_path_factory) -> bytes:
    path = write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")
    load_model(path)  # the intact file loads: every failure below is the corruption's
    return path.read_bytes()


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# --------------------------------------------------------------------------- GGUF files


@CASES
@given(frac=st.floats(0.0, 0.999))
def test_truncated_gguf(tmp_path, gguf_bytes, frac):
    path = _write(tmp_path, "cut.gguf", gguf_bytes[: int(len(gguf_bytes) * frac)])
    with one_clear_error("GGUF truncated", match=str(path)):
        load_model(path)


@CASES
@given(pos=st.floats(0.0, 1.0, exclude_max=True), bit=st.integers(0, 7))
def test_bit_flipped_gguf(tmp_path, gguf_bytes, pos, bit):
    data = bytearray(gguf_bytes)
    i = int(pos * len(data))
    data[i] ^= 1 << bit
    path = _write(tmp_path, "flip.gguf", bytes(data))
    with one_clear_error("GGUF bit-flipped", may_accept=True):
        model = load_model(path)
        assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree_util.tree_leaves(model.params))


@pytest.mark.parametrize("arch", ["bloom", "mamba", "qwen3", "gptj_"])
def test_gguf_of_an_unsupported_architecture(tmp_path, gguf_bytes, arch):
    path = _write(tmp_path, "other.gguf", gguf_bytes.replace(b"llama", arch.encode()))
    with one_clear_error("GGUF of an unsupported architecture", match="unsupported GGUF architecture"):
        load_model(path)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_gguf_with_non_finite_weights(tmp_path, value):
    from empirical.llm.gguf_io import write_gguf

    cfg = tiny_config()
    params = random_params(cfg)
    params["layers"]["up"]["kernel"][0, 3, 5] = value
    path = write_gguf(tmp_path / "nan.gguf", cfg, params, tokenizer=tiny_spec())
    with one_clear_error("NaN / inf weights", match="non-finite"):
        load_model(path)


# --------------------------------------------------------------------------- Hugging Face folders


def _hf_folder(folder: Path, cfg=None, *, tokenizer_tokens: int | None = None) -> tuple[Path, dict, dict]:
    """A Hugging Face folder of a tiny random model, written without torch."""
    from safetensors.numpy import save_file

    from empirical.llm.weights import state_dict_from_params

    cfg = cfg or tiny_config()
    folder.mkdir(parents=True, exist_ok=True)
    config = {"model_type": "llama", "vocab_size": cfg.vocab_size, "hidden_size": cfg.d_model,
              "intermediate_size": cfg.d_ff, "num_hidden_layers": cfg.n_layers,
              "num_attention_heads": cfg.n_heads, "num_key_value_heads": cfg.n_kv_heads, "head_dim": cfg.head_dim,
              "rms_norm_eps": cfg.rms_eps, "max_position_embeddings": cfg.max_len, "rope_theta": cfg.rope_theta,
              "tie_word_embeddings": cfg.tie_embeddings}
    tensors = {k: np.ascontiguousarray(v, np.float32) for k, v in state_dict_from_params(cfg, random_params(cfg)).items()}
    (folder / "config.json").write_text(json.dumps(config))
    save_file(tensors, str(folder / "model.safetensors"))
    if tokenizer_tokens is not None:
        from tokenizers import Tokenizer, models

        vocab = {f"t{i}": i for i in range(tokenizer_tokens)}
        Tokenizer(models.WordLevel(vocab, unk_token="t0")).save(str(folder / "tokenizer.json"))
    return folder, config, tensors


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    folder, config, tensors = _hf_folder(tmp_path_factory.mktemp("hf") / "model")
    load_model(folder)  # the intact folder loads
    return config, tensors


def _rewrite(folder: Path, config: dict, tensors: dict) -> Path:
    from safetensors.numpy import save_file

    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config))
    save_file(tensors, str(folder / "model.safetensors"))
    return folder


@CASES
@given(data=st.data())
def test_safetensors_with_a_missing_tensor(tmp_path, hf_folder, data):
    config, tensors = hf_folder
    name = data.draw(st.sampled_from(sorted(tensors)))
    folder = _rewrite(tmp_path / "m", config, {k: v for k, v in tensors.items() if k != name})
    with one_clear_error("safetensors: missing tensor", match=str(folder)):
        load_model(folder)


@CASES
@given(data=st.data())
def test_safetensors_with_a_wrong_shape(tmp_path, hf_folder, data):
    config, tensors = hf_folder
    name = data.draw(st.sampled_from(sorted(tensors)))
    extra = data.draw(st.integers(1, 3))
    bad = np.concatenate([tensors[name], np.zeros((extra,) + tensors[name].shape[1:], np.float32)])
    folder = _rewrite(tmp_path / "m", config, {**tensors, name: bad})
    with one_clear_error("safetensors: wrong shape", match=str(folder)):
        load_model(folder)


@CASES
@given(data=st.data())
def test_safetensors_with_a_wrong_dtype(tmp_path, hf_folder, data):
    config, tensors = hf_folder
    name = data.draw(st.sampled_from(sorted(tensors)))
    dtype = data.draw(st.sampled_from([np.int32, np.int64, np.uint8, np.bool_]))
    folder = _rewrite(tmp_path / "m", config, {**tensors, name: tensors[name].astype(dtype)})
    with one_clear_error("safetensors: wrong dtype", match=str(folder)):
        load_model(folder)


REQUIRED = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")


@CASES
@given(drop=st.lists(st.sampled_from(REQUIRED), min_size=1, max_size=3, unique=True))
def test_config_json_with_missing_keys(tmp_path, hf_folder, drop):
    config, tensors = hf_folder
    folder = _rewrite(tmp_path / "m", {k: v for k, v in config.items() if k not in drop}, tensors)
    with one_clear_error("config.json with missing keys", match=str(folder)):
        load_model(folder)


@pytest.mark.parametrize("extra", [1, 17, 500])
def test_tokenizer_larger_than_the_vocabulary(tmp_path, extra):
    cfg = tiny_config()
    folder, _, _ = _hf_folder(tmp_path / "m", cfg, tokenizer_tokens=cfg.vocab_size + extra)
    with one_clear_error("tokenizer.json not matching the model", match="tokenizer"):
        load_model(folder)


# --------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("weights,config", [("lookup", "add"), ("add", "copy"), ("copy", "like-construction")])
def test_checkpoint_of_another_configuration(tmp_path, weights, config):
    from empirical import runs

    run = tmp_path / "mixed"
    shutil.copytree(runs.resolve(weights), run)
    shutil.copy(runs.resolve(config) / "config.json", run / "config.json")
    with one_clear_error("checkpoint of another configuration", match="does not match"):
        runs.load(run)


@CASES
@given(frac=st.floats(0.0, 0.99), flip=st.booleans())
def test_corrupted_checkpoint(tmp_path, frac, flip):
    from empirical import runs

    run = tmp_path / "bad"
    if run.exists():
        shutil.rmtree(run)
    shutil.copytree(runs.resolve("lookup"), run)
    weights = [p for p in run.iterdir() if p.suffix in (".npz", ".safetensors", ".msgpack")]
    assert weights, sorted(p.name for p in run.iterdir())
    data = bytearray(weights[0].read_bytes())
    data = data[: int(len(data) * frac)] if not flip else data
    if flip:
        data[int(frac * len(data))] ^= 0xFF
    weights[0].write_bytes(bytes(data))
    with one_clear_error("checkpoint corrupted", may_accept=flip):
        runs.load(run)


# --------------------------------------------------------------------------- task files and the CLI


def _table(draw, vocab):
    return draw(st.lists(st.integers(0, vocab - 1), min_size=vocab, max_size=vocab))


@st.composite
def bad_task_files(draw):
    """A task file with exactly one defect."""
    vocab, n = draw(st.integers(2, 12)), draw(st.integers(2, 6))
    tasks = [{"name": f"t{i}", "position": draw(st.integers(0, n - 2)), "table": _table(draw, vocab)}
             for i in range(draw(st.integers(1, 4)))]
    doc = {"vocab_size": vocab, "example_len": n, "tasks": tasks}
    defect = draw(st.sampled_from(["value out of range", "negative value", "short table", "long table",
                                   "position out of range", "negative position", "non-integer entry",
                                   "missing field", "no tasks", "not an object", "vocab_size 0", "example_len 1"]))
    t = tasks[0]
    if defect == "value out of range":
        t["table"][draw(st.integers(0, vocab - 1))] = vocab + draw(st.integers(0, 5))
    elif defect == "negative value":
        t["table"][0] = -1
    elif defect == "short table":
        t["table"] = t["table"][:-1]
    elif defect == "long table":
        t["table"] = t["table"] + [0]
    elif defect == "position out of range":
        t["position"] = n - 1 + draw(st.integers(0, 3))
    elif defect == "negative position":
        t["position"] = -1
    elif defect == "non-integer entry":
        t["table"][0] = draw(st.sampled_from([0.5, "a", None, [1]]))
    elif defect == "missing field":
        del doc[draw(st.sampled_from(["vocab_size", "example_len", "tasks"]))]
    elif defect == "no tasks":
        doc["tasks"] = []
    elif defect == "not an object":
        doc = draw(st.sampled_from([[1, 2], "tasks", 3, None]))
    elif defect == "vocab_size 0":
        doc["vocab_size"] = 0
    elif defect == "example_len 1":
        doc["example_len"] = 1
    return defect, doc


@CASES
@given(case=bad_task_files())
def test_task_files_with_invalid_tables_or_positions(case):
    from construction import tasks_from_json
    from construction.tasks import TaskSet

    defect, doc = case
    with one_clear_error("task file: invalid tables or positions"):
        tasks_from_json(doc)
    with one_clear_error("task file: invalid tables or positions"):
        TaskSet.from_json(doc)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=bad_task_files())
def test_cli_with_a_bad_task_file(tmp_path, capsys, case):
    _, doc = case
    path = tmp_path / "tasks.json"
    path.write_text(json.dumps(doc))
    out = tmp_path / "verify.json"
    cli_error("task file: invalid tables or positions (CLI)", ["verify", "--tasks-file", str(path), "--json",
              str(out), "--out", str(tmp_path), "--prompts", "2", "--quiet"], capsys, leaves=[out])


@CASES
@given(lam=st.one_of(st.floats(-10, -1e-9), st.floats(1 + 1e-9, 10), st.just(float("nan"))))
def test_lambda_outside_the_unit_interval(lam):
    from empirical import sweep, within_prompt

    with one_clear_error("lambda outside [0, 1]", match="lambda"):
        sweep.sweep(lambda t: np.full((len(t), 37), 1 / 37), "add", [1, 4], n_prompts=2, n_examples=2,
                    lambdas=[lam], progress=False)
    with one_clear_error("lambda outside [0, 1]", match="lambda"):
        within_prompt.from_sweep({"points": [], "lambdas": []}, lam)


@CASES
@given(extra=st.integers(1, 40))
def test_prompts_longer_than_the_model_takes(extra):
    from construction import default_tasks, sample_prompts

    model = _small_construction()
    p = sample_prompts(0, default_tasks(), [1 / 3] * 3, n_examples=8 + extra, batch=1, example_len=5)
    with one_clear_error("prompt longer than the model's capacity", match="examples"):
        model.predict(p.tokens)


@functools.cache
def _small_construction():
    from construction import construct, default_tasks

    return construct(default_tasks(), vocab_size=10, example_len=5, max_examples=8)


@pytest.mark.parametrize("excess", [1, 100])
def test_llm_prompt_longer_than_its_context(tmp_path, excess):
    path = write_tiny_gguf(tmp_path / "short.gguf", tiny_config(max_len=64))
    model = load_model(path)
    with one_clear_error("prompt longer than the model's capacity", match="exceeds the model's context"):
        model.prefix([[1] * (64 + excess)], step=1)


def test_cli_lambda_and_lengths(tmp_path, capsys):
    sweep_file = tmp_path / "s.json"
    sweep_file.write_text(json.dumps({"tasks": ["add:1", "add:4"], "points": [], "lambdas": [0.5], "n_prompts": 2}))
    out = tmp_path / "w.json"
    for lam in ("1.5", "-0.1"):
        cli_error("lambda outside [0, 1] (CLI)", ["within-prompt", "--sweep", str(sweep_file), "--lambda", lam,
                                                  "--json", str(out)], capsys, leaves=[out])
    cli_error("prompt longer than the model's capacity (CLI)",
              ["compare", "--run", "lookup", "--examples", "500", "--json", str(out)], capsys, leaves=[out])


@pytest.mark.parametrize("argv_of", [
    lambda d, f: ["verify", "--prompts", "1", "--examples", "2", "--json", f"{f}/r.json", "--out", str(d), "--quiet"],
    lambda d, f: ["eval", "--run", "add", "--sequences", "1", "--json", f"{f}/r.json", "--quiet"],
    lambda d, f: ["verify", "--prompts", "1", "--examples", "2", "--out", f"{f}/plots", "--quiet"],
    lambda d, f: ["train", "--family", "add", "--steps", "1", "--out", f"{f}/run", "--quiet"],
])
def test_unwritable_output_folder(tmp_path, capsys, argv_of):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    cli_error("unwritable output folder", argv_of(tmp_path, blocker), capsys, leaves=[blocker / "r.json"])
    assert blocker.read_text() == "not a folder"


def test_cli_with_bad_model_files(tmp_path, capsys, gguf_bytes):
    cut = _write(tmp_path, "cut.gguf", gguf_bytes[: len(gguf_bytes) // 2])
    out = tmp_path / "p.json"
    cli_error("GGUF truncated (CLI)", ["probe", "--model", str(cut), "--prompts", "1", "--json", str(out),
                                       "--out", str(tmp_path)], capsys, leaves=[out], match=str(cut))
    cli_error("GGUF truncated (CLI)", ["probe", "--model", str(tmp_path / "missing.gguf"), "--json", str(out)],
              capsys, leaves=[out], match="no such model")


def test_every_class_was_tried_and_every_case_was_clean():
    """Runs last in this module: the table's invariant (ordering: pytest keeps file order)."""
    assert BAD_INPUT, "no case ran"
    for kind, c in BAD_INPUT.items():
        assert c["tried"] == c["clean"] + c["accepted"], (kind, c)
