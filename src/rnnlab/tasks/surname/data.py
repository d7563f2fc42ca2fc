"""Surnames by language, from the person providers in the PyPI wheel `faker` (MIT). The name lists are read
with `ast` straight from the wheel's source files: faker is never imported or run. Which language? From the
characters of the name."""

from __future__ import annotations

import ast
import re
import unicodedata
from collections import defaultdict
from pathlib import Path
from typing import Any

from datasets import ClassLabel, Dataset, Features, Sequence, Value

from rnnlab import RnnlabError
from rnnlab.core.sources import wheel_members
from rnnlab.data.splits import SPLITS, class_counts, load_raw, save_splits, stratified_split
from rnnlab.data.vocab import TokenVocab

PROVIDER = "faker/providers/person/{}/__init__.py"
# Latin-script locales whose surnames are the language's own, merged by language; each language has at
# least 300 distinct names. Left out: en_US (a census list, many of its names Spanish), en_IE (Irish names
# in English spelling, a third of them also in en_GB), en_IN, en_PK, en_KE, en_NG (several languages
# each), de_CH, de_LU, fr_BE, fr_CH, nl_BE (each mixes its country's languages), fr_DZ (Arabic names),
# and Latin-script languages with fewer than 300 names (Czech 200, Azerbaijani 209, Uzbek 198,
# Portuguese 102 + 96, Indonesian 173, Slovene 173, ...).
LANGUAGES = {
    "Croatian": ("hr_HR",),
    "Dutch": ("nl_NL",),
    "English": ("en", "en_GB", "en_NZ"),
    "Estonian": ("et_EE",),
    "Finnish": ("fi_FI",),
    "French": ("fr_FR", "fr_CA"),
    "German": ("de_DE", "de_AT", "de_LI"),
    "Irish": ("ga_IE",),
    "Italian": ("it_IT",),
    "Polish": ("pl_PL",),
    "Slovak": ("sk_SK",),
    "Spanish": ("es_ES", "es_MX", "es_CL", "es_CO", "es_AR"),
    "Swedish": ("sv_SE",),
    "Zulu": ("zu_ZA",),
}
# class attributes holding surnames: last_names and its variants (last_names_female, male_last_names, ...),
# unioned; where last_names is built from them, the union is the same list
ATTRIBUTE = re.compile(r"(\w+_)?last_names(_\w+)?")
# et_EE keeps a list of Russian surnames (last_names_rus) beside the Estonian one
ONLY = {"et_EE": ("last_names_est",)}


def normalise(name: str) -> str:
    """NFC (one code point per accented letter, whatever the source typed) and single inner spaces."""
    return " ".join(unicodedata.normalize("NFC", name).split())


def is_latin(name: str) -> bool:
    return all(not c.isalpha() or "LATIN" in unicodedata.name(c, "") for c in name)


def literal(node: ast.expr, known: dict, where: str):
    """The value of a class attribute: a literal, OrderedDict(...)/tuple(...)/sorted(set(...)) of one,
    `a + b`, or an attribute set earlier in the class."""
    if isinstance(node, (ast.Tuple, ast.List, ast.Set, ast.Dict, ast.Constant)):
        return ast.literal_eval(node)
    if isinstance(node, ast.Name) and node.id in known:
        return known[node.id]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return names_in(literal(node.left, known, where), where) + names_in(literal(node.right, known, where), where)
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and len(node.args) == 1 and not node.keywords
            and node.func.id in ("OrderedDict", "dict", "tuple", "list", "set", "sorted")):
        value = literal(node.args[0], known, where)
        # OrderedDict((name, weight), ...): the names are the keys
        return dict(value) if node.func.id in ("OrderedDict", "dict") and not isinstance(value, dict) else value
    raise ValueError(f"{where} line {node.lineno}: cannot read {ast.unparse(node)[:60]!r} without running it")


def names_in(value, where: str) -> list[str]:
    names = list(value.keys() if isinstance(value, dict) else value)
    bad = [n for n in names if not isinstance(n, str)]
    if bad:
        raise ValueError(f"{where}: {bad[0]!r} is not a name")
    return names


def read_provider(source: bytes, where: str, only: tuple[str, ...] = ()) -> list[str]:
    """Distinct normalised surnames of one locale's person provider, sorted."""
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        raise RnnlabError(f"{where} line {e.lineno}: not Python source: {e.msg}") from e
    known: dict[str, Any]
    names: set[str]
    known, names, found = {}, set(), []
    for cls in (node for node in tree.body if isinstance(node, ast.ClassDef)):
        for stmt in cls.body:
            if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
                target, value = stmt.targets[0].id, stmt.value
            elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value:
                target, value = stmt.target.id, stmt.value
            else:
                continue
            wanted = target in only if only else bool(ATTRIBUTE.fullmatch(target))
            try:
                known[target] = literal(value, known, where)
                if wanted:
                    names.update(normalise(n) for n in names_in(known[target], f"{where} {target}"))
                    found.append(target)
            except (ValueError, TypeError) as e:
                if wanted:  # other attributes (first names built with Counter, ...) may stay unread
                    raise RnnlabError(f"{where}: {target}: {e}") from e
    names.discard("")
    if not found:
        raise RnnlabError(f"{where} has no {' or '.join(only) or 'last_names'} attribute")
    return sorted(names)


def read_archive(archive: Path, languages: dict[str, tuple[str, ...]] = LANGUAGES) -> Dataset:
    """One row per distinct surname of each locale: name, language, locale."""
    rows: dict[str, list[str]] = {"name": [], "language": [], "locale": []}
    files = wheel_members(archive, [PROVIDER.format(locale) for locales in languages.values() for locale in locales])
    for language, locales in sorted(languages.items()):
        for locale in locales:
            member = PROVIDER.format(locale)
            where = f"{archive}:{member}"
            names = read_provider(files[member], where, ONLY.get(locale, ()))
            foreign = [n for n in names if not is_latin(n)]
            if foreign:
                raise RnnlabError(f"{where}: {len(foreign)} names not in Latin script, e.g. {foreign[0]!r}")
            rows["name"] += names
            rows["language"] += [language] * len(names)
            rows["locale"] += [locale] * len(names)
    return Dataset.from_dict(rows)


def unambiguous(names: list[str], languages: list[str]) -> tuple[dict[str, str], dict[str, int]]:
    """Each name with its one language. Spellings that differ only in case (MacDonald, Macdonald; Weiß,
    Weiss) count as one name, kept in the spelling that sorts first. A name found in two or more languages
    (Adam: English, French, German, ...) is dropped, so every name has one right answer and no name can
    be in two splits. Returns {name: language} and, per language, how many of its names were dropped."""
    spellings, langs_of = defaultdict(set), defaultdict(set)
    for name, language in zip(names, languages):
        spellings[name.casefold()].add(name)
        langs_of[name.casefold()].add(language)
    dropped: defaultdict[str, int] = defaultdict(int)
    for langs in langs_of.values():
        if len(langs) > 1:
            for language in langs:
                dropped[language] += 1
    kept = {min(spellings[key]): langs.pop() for key, langs in langs_of.items() if len(langs) == 1}
    return kept, dict(sorted(dropped.items()))


def preprocess(raw_dir: Path, out_dir: Path, seed: int, validation: float, test: float,
               min_names: int = 300) -> dict:
    ds = load_raw(raw_dir).to_dict()  # plain lists: iterating a dataset's column goes row by row
    language_of, dropped = unambiguous(ds["name"], ds["language"])
    labels = sorted(set(ds["language"]))
    names = sorted(language_of)  # a fixed row order, whatever the order of locales in the archive
    counts = class_counts([labels.index(language_of[n]) for n in names], labels)
    few = {language: n for language, n in counts.items() if n < min_names}
    if few:
        raise RnnlabError(f"{raw_dir}: languages with fewer than min_names={min_names} names: "
                          + ", ".join(f"{language} {n}" for language, n in few.items()))
    ids = [labels.index(language_of[n]) for n in names]
    rows = stratified_split(ids, {"validation": validation, "test": test}, seed)
    vocab = TokenVocab.build(names[i] for i in rows["train"])  # a name's tokens are its characters
    features = Features({"name": Value("string"), "label": ClassLabel(names=labels),
                         "tokens": Sequence(Value("int32"))})
    stats: dict[str, Any]
    splits, stats = {}, {"rows": {}, "classes": {}, "unknown_chars": {}, "vocab_size": len(vocab),
                         "names_per_language": counts, "ambiguous_dropped": dropped}
    for split in SPLITS:
        split_names = [names[i] for i in rows[split]]
        split_labels = [ids[i] for i in rows[split]]
        tokens = [vocab.encode(n) for n in split_names]
        splits[split] = Dataset.from_dict({"name": split_names, "label": split_labels, "tokens": tokens},
                                          features=features)
        stats["rows"][split] = len(split_names)
        stats["classes"][split] = class_counts(split_labels, labels)
        stats["unknown_chars"][split] = sum(t.count(1) for t in tokens)
    stats["name_length"] = {"min": min(map(len, names)), "max": max(map(len, names))}
    save_splits(out_dir, splits, vocab=vocab.to_dict(), labels=labels, stats=stats)
    return stats
