"""Bad input at every public entry point, counted: each case must end in ONE clear error
(a ValueError or OSError whose first line names the problem of its input class; on the command
line exit status 2 and one line on stderr, no traceback) and leave no new file behind. A
generic exception (KeyError, IndexError, TypeError, AttributeError) wrapped into a clean type is
not clean: it is a bug that happened to be caught.

Counts per input class go to ``BAD_INPUT`` and, with ``SUPERPOSE_BAD_INPUT_SUMMARY=F``, to the
JSON file F at the end of the session (the README's table comes from it).
"""

from __future__ import annotations

import functools
import json
import os
import re
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
from empirical.llm.config import HF_REQUIRED
from empirical.llm.weights import GGUFFile
from tests.tiny_llm import random_params, tiny_config, tiny_spec, write_tiny_gguf

#: input class -> {"tried", "clean", "accepted"} ("accepted": a valid input after all, e.g. a
#: bit flip inside a weight's mantissa; it must then load and hold finite weights).
BAD_INPUT: dict[str, dict[str, int]] = defaultdict(lambda: {"tried": 0, "clean": 0, "accepted": 0})
CLEAN = (ValueError, OSError)  # ModelFileError, UsageError and FileNotFoundError among them
GENERIC = (KeyError, IndexError, TypeError, AttributeError)
CASES = settings(max_examples=int(os.environ.get("SUPERPOSE_BAD_INPUT_EXAMPLES", "25")), deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _wrapped_generic(err: BaseException) -> str | None:
    """The generic exception ``err`` wraps (its cause, or its message's "(KeyError: ..."), if any."""
    if isinstance(err.__cause__, GENERIC):
        return type(err.__cause__).__name__
    hit = re.search(r"\b(%s)\b" % "|".join(t.__name__ for t in GENERIC), str(err))
    return hit.group(1) if hit else None


@contextmanager
def one_clear_error(kind: str, *, match: str, may_accept: bool = False, counts=BAD_INPUT):
    """The body must raise one clear error whose first line matches the regular expression
    ``match`` (the reason of the input class), or, with ``may_accept``, succeed; counted under ``kind``."""
    counts[kind]["tried"] += 1
    try:
        yield
    except CLEAN as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        assert first, f"{kind}: {type(err).__name__} without a message"
        generic = _wrapped_generic(err)
        assert generic is None, f"{kind}: a wrapped {generic} is a bug, not a clean error: {first!r}"
        assert re.search(match, first), f"{kind}: {first!r} does not say {match!r}"
        counts[kind]["clean"] += 1
        return
    assert may_accept, f"{kind}: bad input was accepted"
    counts[kind]["accepted"] += 1


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def cli_error(kind: str, argv: list[str], capsys, *, folder: Path, match: str) -> None:
    """``superpose argv`` must exit 2 with one line on stderr matching ``match`` (a regular
    expression) and leave nothing new in ``folder`` (listed before and after)."""
    BAD_INPUT[kind]["tried"] += 1
    before = _files(folder)
    code = cli.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, (kind, argv, code, err)
    assert len(err) == 1 and err[0].startswith(f"superpose {argv[0]}: error: "), (kind, err)
    assert "Traceback" not in err[0]
    assert re.search(match, err[0]), (kind, err[0], match)
    assert _files(folder) == before, f"{kind}: new files {sorted(_files(folder) - before)}"
    BAD_INPUT[kind]["clean"] += 1


class _Bytes(bytes):
    """A file's bytes that hypothesis reports by their length, not their 150 kB."""

    def __repr__(self) -> str:
        return f"<{len(self)} bytes>"


@pytest.fixture(scope="module")
def gguf_bytes(tmp_path_factory) -> bytes:
    path = write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")
    load_model(path)  # the intact file loads: every failure below is the corruption's
    return _Bytes(path.read_bytes())


@pytest.fixture(scope="module")
def gguf_file(tmp_path_factory, gguf_bytes) -> GGUFFile:
    """The intact file, parsed: its sections (where a flipped byte lies) and fields."""
    return GGUFFile(_write(tmp_path_factory.mktemp("intact"), "tiny.gguf", gguf_bytes))


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _flip(data: bytes, i: int, bit: int) -> bytes:
    out = bytearray(data)
    out[i] ^= 1 << bit
    return bytes(out)


#: What a damaged GGUF file's error says (the reader's, the config's, the tokenizer's or the
#: architecture check's reason; "GGUF" in capitals: the file's name is lower case).
GGUF_DAMAGE = r"GGUF|has shape|non-finite"
#: The one header flip that gives a valid file: version 3 -> 2 (same layout for little-endian files).
VERSION_FLIP = (4, 0)
REGIONS = ("header", "metadata", "tensor infos", "tensor data")


# --------------------------------------------------------------------------- GGUF files


@CASES
@given(frac=st.floats(0.0, 0.999))
def test_truncated_gguf(tmp_path, gguf_bytes, frac):
    path = _write(tmp_path, "cut.gguf", gguf_bytes[: int(len(gguf_bytes) * frac)])
    with one_clear_error("GGUF truncated", match="truncated"):
        load_model(path)


@pytest.mark.parametrize("region", REGIONS)
@CASES
@given(where=st.floats(0.0, 1.0, exclude_max=True), bit=st.integers(0, 7))
def test_bit_flipped_gguf(tmp_path, gguf_bytes, gguf_file, region, where, bit):
    """A flip in each part of the file, counted per part. Header and tensor-info flips are
    errors (but the version 3 -> 2). A metadata flip loads only if it left the file's layout
    intact and changed one field: one value (a token's text or type, a number) or one key's
    name into another valid key name (the loader then takes that key's default: a GGUF file has
    no checksum). A tensor-data flip loads only with finite weights."""
    lo, hi = gguf_file.sections[region]
    i = lo + int(where * (hi - lo))
    path = _write(tmp_path, "flip.gguf", _flip(gguf_bytes, i, bit))
    may_accept = region in ("metadata", "tensor data") or (i, bit) == VERSION_FLIP
    with one_clear_error(f"GGUF bit-flipped: {region}", match=GGUF_DAMAGE, may_accept=may_accept):
        model = load_model(path)
        assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree_util.tree_leaves(model.params))
        if region == "metadata":
            _assert_one_value_changed(gguf_file, GGUFFile(path))


def _assert_one_value_changed(intact: GGUFFile, flipped: GGUFFile) -> None:
    assert flipped.sections == intact.sections, "a metadata flip that moved the file's parts loaded"
    renamed = [(a, b) for a, b in zip(intact.fields, flipped.fields) if a != b]
    if renamed:
        assert len(renamed) == 1 and len(flipped.fields) == len(intact.fields), renamed
        (old, new), = renamed
        assert _same(intact.fields[old].value, flipped.fields[new].value), (old, new)
        return
    changed = [k for k in intact.fields if not _same(intact.fields[k].value, flipped.fields[k].value)]
    assert len(changed) == 1, changed


def _same(a, b) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return type(a) is type(b) and a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
    return type(a) is type(b) and a == b


def test_every_header_flip_is_an_error_but_the_version(tmp_path, gguf_bytes, gguf_file):
    """All 192 single-bit flips of the header (magic, version, tensor and key counts)."""
    lo, hi = gguf_file.sections["header"]
    loaded = []
    for i in range(lo, hi):
        for bit in range(8):
            path = _write(tmp_path, "flip.gguf", _flip(gguf_bytes, i, bit))
            with one_clear_error("GGUF bit-flipped: header", match=GGUF_DAMAGE, may_accept=True,
                                 counts=defaultdict(lambda: {"tried": 0, "clean": 0, "accepted": 0})):
                load_model(path)
                loaded.append((i, bit))
    assert loaded == [VERSION_FLIP]


@pytest.mark.parametrize("arch", ["bloom", "mamba", "olmo2", "gptj_"])
def test_gguf_of_an_unsupported_architecture(tmp_path, gguf_bytes, arch):
    path = _write(tmp_path, "other.gguf", gguf_bytes.replace(b"llama", arch.encode()))
    with one_clear_error("GGUF of an unsupported architecture", match="unsupported GGUF architecture"):
        load_model(path)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_gguf_with_non_finite_weights(tmp_path, value):
    from empirical.llm.gguf_io import write_gguf

    cfg = tiny_config()
    params = random_params(cfg)
    params["layers"]["mlp"]["w_in"][0, 3, 5] = value
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
    with one_clear_error("safetensors: missing tensor", match=re.escape(f"tensor {name} missing")):
        load_model(folder)


@CASES
@given(data=st.data())
def test_safetensors_with_a_wrong_shape(tmp_path, hf_folder, data):
    config, tensors = hf_folder
    name = data.draw(st.sampled_from(sorted(tensors)))
    extra = data.draw(st.integers(1, 3))
    bad = np.concatenate([tensors[name], np.zeros((extra,) + tensors[name].shape[1:], np.float32)])
    folder = _rewrite(tmp_path / "m", config, {**tensors, name: bad})
    with one_clear_error("safetensors: wrong shape", match="has shape"):
        load_model(folder)


@CASES
@given(data=st.data())
def test_safetensors_with_a_wrong_dtype(tmp_path, hf_folder, data):
    config, tensors = hf_folder
    name = data.draw(st.sampled_from(sorted(tensors)))
    dtype = data.draw(st.sampled_from([np.int32, np.int64, np.uint8, np.bool_]))
    folder = _rewrite(tmp_path / "m", config, {**tensors, name: tensors[name].astype(dtype)})
    with one_clear_error("safetensors: wrong dtype", match="dtype"):
        load_model(folder)


@CASES
@given(drop=st.lists(st.sampled_from(HF_REQUIRED), min_size=1, max_size=3, unique=True))
def test_config_json_with_missing_keys(tmp_path, hf_folder, drop):
    config, tensors = hf_folder
    folder = _rewrite(tmp_path / "m", {k: v for k, v in config.items() if k not in drop}, tensors)
    every_key = "".join(f"(?=.*\\b{k}\\b)" for k in drop)  # each dropped key, in any order
    with one_clear_error("config.json with missing keys", match="config.json lacks" + every_key):
        load_model(folder)


@pytest.mark.parametrize("extra", [1, 17, 500])
def test_tokenizer_larger_than_the_vocabulary(tmp_path, extra):
    cfg = tiny_config()
    folder, _, _ = _hf_folder(tmp_path / "m", cfg, tokenizer_tokens=cfg.vocab_size + extra)
    with one_clear_error("tokenizer.json not matching the model", match=f"the tokenizer has {cfg.vocab_size + extra} "
                         f"tokens but the model's embedding only {cfg.vocab_size}"):
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
    with one_clear_error("checkpoint corrupted", match="is not a readable parameter file|does not match|non-finite",
                         may_accept=flip):
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


#: The reason each task-file defect's error must give.
TASK_FILE_REASONS = {
    "value out of range": "not a map on the vocabulary", "negative value": "not a map on the vocabulary",
    "short table": "its table has|not a map on the vocabulary", "long table": "its table has",
    "position out of range": "is outside the example's inputs", "negative position": "position must be >= 0",
    "non-integer entry": "must be integer symbols", "missing field": "missing the field",
    "no tasks": "at least one task", "not an object": "holds a JSON object", "vocab_size 0": "vocab_size=0",
    "example_len 1": "example_len must be >= 2",
}


@CASES
@given(case=bad_task_files())
def test_task_files_with_invalid_tables_or_positions(case):
    from construction import tasks_from_json
    from construction.tasks import TaskSet

    defect, doc = case
    with one_clear_error("task file: invalid tables or positions", match=TASK_FILE_REASONS[defect]):
        tasks_from_json(doc)
    with one_clear_error("task file: invalid tables or positions", match=TASK_FILE_REASONS[defect]):
        TaskSet.from_json(doc)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=bad_task_files())
def test_cli_with_a_bad_task_file(tmp_path, capsys, case):
    defect, doc = case
    path = tmp_path / "tasks.json"
    path.write_text(json.dumps(doc))
    cli_error("task file: invalid tables or positions (CLI)", ["verify", "--tasks-file", str(path), "--json",
              str(tmp_path / "verify.json"), "--out", str(tmp_path), "--prompts", "2", "--quiet"], capsys,
              folder=tmp_path, match=TASK_FILE_REASONS[defect])


LAMBDA = r"lambda must lie in \[0, 1\]"


@CASES
@given(lam=st.one_of(st.floats(-10, -1e-9), st.floats(1 + 1e-9, 10), st.just(float("nan"))))
def test_lambda_outside_the_unit_interval(lam):
    from empirical import sweep, within_prompt

    with one_clear_error("lambda outside [0, 1]", match=LAMBDA):
        sweep.sweep(lambda t: np.full((len(t), 37), 1 / 37), "add", [1, 4], n_prompts=2, n_examples=2,
                    lambdas=[lam], progress=False)
    with one_clear_error("lambda outside [0, 1]", match=LAMBDA):
        within_prompt.from_sweep({"points": [], "lambdas": []}, lam)


@CASES
@given(extra=st.integers(1, 40))
def test_prompts_longer_than_the_model_takes(extra):
    from construction import default_tasks, sample_prompts

    model = _small_construction()
    p = sample_prompts(0, default_tasks(), [1 / 3] * 3, n_examples=8 + extra, batch=1, example_len=5)
    with one_clear_error("prompt longer than the model's capacity",
                         match=rf"prompts hold {8 + extra} examples; this model takes"):
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
                                                  "--json", str(out)], capsys, folder=tmp_path, match=LAMBDA)
    cli_error("prompt longer than the model's capacity (CLI)",
              ["compare", "--run", "lookup", "--examples", "500", "--json", str(out)], capsys, folder=tmp_path,
              match="prompts can hold at most")


#: Every subcommand with --json / --out, with arguments that would otherwise start real work.
SUBCOMMANDS = {
    "verify": ["verify", "--prompts", "1", "--examples", "2", "--quiet"],
    "check": ["check", "--quick"],
    "train": ["train", "--family", "add", "--steps", "1", "--quiet"],
    "eval": ["eval", "--run", "add", "--sequences", "1", "--quiet"],
    "export": ["export", "--run", "add", "--sequences", "1", "--quiet"],
    "sweep": ["sweep", "--run", "add", "--tasks", "add:1,add:2", "--prompts", "1", "--quiet"],
    "compare": ["compare", "--run", "lookup", "--prompts", "1", "--quiet"],
    "task-vectors": ["task-vectors", "--run", "constructed", "--prompts", "2", "--quiet"],
    "within-prompt": ["within-prompt", "--sweep", "{sweep}"],
    "scaling": ["scaling", "eval", "--prompts", "1", "--quiet"],
    "probe": ["probe", "run", "--model", "{gguf}", "--prompts", "1", "--quiet"],
}


@pytest.mark.parametrize("command", sorted(SUBCOMMANDS))
@pytest.mark.parametrize("case", ["--json under a file", "--out under a file", "--json is a folder",
                                  "--out is a file"])
def test_unwritable_output_paths(tmp_path, capsys, gguf_bytes, command, case):
    """Checked before any work: one line naming the path and the reason, nothing written (the
    folder is listed before and after), the blocking file untouched."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    sweep_file = tmp_path / "s.json"
    sweep_file.write_text(json.dumps({"tasks": ["add:1", "add:4"], "points": [], "lambdas": [0.5], "n_prompts": 2}))
    gguf = _write(tmp_path, "tiny.gguf", gguf_bytes)
    argv = [a.format(sweep=sweep_file, gguf=gguf) for a in SUBCOMMANDS[command]]
    if command == "export":
        argv += ["--to", str(tmp_path / "exported")]
    under = f"{re.escape(str(blocker))} is a file, not a folder"
    flag, value, reason = {
        "--json under a file": ("--json", f"{blocker}/deeper/r.json", under),
        "--out under a file": ("--out", f"{blocker}/plots", under),
        "--json is a folder": ("--json", str(tmp_path), "is a folder, not a file"),
        "--out is a file": ("--out", str(blocker), "is a file, not a folder"),
    }[case]
    if command == "train" and flag == "--json":
        argv += ["--out", str(tmp_path / "run")]
    cli_error("unwritable output path", argv + [flag, value], capsys, folder=tmp_path,
              match=f"error: {flag} {re.escape(value)}: {reason}")
    assert blocker.read_text() == "not a folder"


@pytest.mark.parametrize("error", [KeyError("a bug"), IndexError("a bug"), TypeError("a bug"), AttributeError("a bug")])
def test_a_generic_exception_on_the_command_line_is_a_bug(monkeypatch, tmp_path, capsys, error):
    """Only the validating error types (ValueError, OSError) are bad input, exit status 2; a
    KeyError, IndexError, TypeError or AttributeError from our code surfaces with its traceback."""
    from empirical import verify

    def broken(*args, **kw):
        raise error

    monkeypatch.setattr(verify, "load_tasks", broken)
    with pytest.raises(type(error), match="a bug"):
        cli.main(["verify", "--prompts", "1", "--out", str(tmp_path), "--quiet"])
    monkeypatch.setattr(verify, "load_tasks", lambda *a, **k: (_ for _ in ()).throw(ValueError("bad input")))
    assert cli.main(["verify", "--prompts", "1", "--out", str(tmp_path), "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == "superpose verify: error: bad input"


def test_cli_with_bad_model_files(tmp_path, capsys, gguf_bytes):
    cut = _write(tmp_path, "cut.gguf", gguf_bytes[: len(gguf_bytes) // 2])
    out = tmp_path / "p.json"
    cli_error("GGUF truncated (CLI)", ["probe", "run", "--model", str(cut), "--prompts", "1", "--json", str(out),
                                       "--out", str(tmp_path)], capsys, folder=tmp_path, match="truncated")
    cli_error("GGUF truncated (CLI)", ["probe", "run", "--model", str(tmp_path / "missing.gguf"), "--json", str(out)],
              capsys, folder=tmp_path, match="no such model file")


def test_the_counts_record_each_outcome():
    """The table's bookkeeping, on its own counts (independent of which other tests ran): a clean
    error, an accepted valid input, an accepted bad input, a wrapped generic exception and an
    error that does not name its reason."""
    counts = defaultdict(lambda: {"tried": 0, "clean": 0, "accepted": 0})
    with one_clear_error("k", match="bad value", counts=counts):
        raise ValueError("bad value 3")
    with one_clear_error("k", match="bad value", may_accept=True, counts=counts):
        pass
    for body, message in [(lambda: None, "was accepted"),
                          (lambda: _raise(ValueError("x (KeyError: 'a')")), "wrapped KeyError"),
                          (lambda: _raise(ValueError("something else")), "does not say")]:
        with pytest.raises(AssertionError, match=message), one_clear_error("k", match="bad value", counts=counts):
            body()
    with pytest.raises(AssertionError, match="wrapped IndexError"):
        with one_clear_error("k", match="bad value", counts=counts):
            try:
                [][1]
            except IndexError as err:
                raise ValueError("bad value") from err
    assert dict(counts) == {"k": {"tried": 6, "clean": 1, "accepted": 1}}


def _raise(err: BaseException):
    raise err
