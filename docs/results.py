#!/usr/bin/env python
"""The numbers of the docs, generated from the metrics files.

README.md and the pages under docs/ hold marked blocks:

    <!-- results:NAME -->
    ... generated text ...
    <!-- /results -->

whose content is made here, by the generator NAME below, from metrics/*.json and metrics/*.csv (and
reports/translate_full/, the longer translation run kept outside the pipeline). Which score is a task's
headline and which way is better come from the task registry (rnnlab.tasks), not from this file.

    python docs/results.py            rewrite every block in place
    python docs/results.py --check    exit 1, naming each file and block whose text disagrees with the files
    python docs/results.py --root DIR the same for another checkout (the tests use a copy)

Prose outside the blocks must not repeat a metric value: a sentence that states one belongs in a block.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
from collections.abc import Callable
from pathlib import Path

# a marker is a line of its own (one quoted inside a sentence, as here, is not)
BLOCK = re.compile(
    r"^(?P<open><!-- results:(?P<name>[A-Za-z0-9_.-]+) -->\n)(?P<body>.*?)^(?P<close><!-- /results -->)$",
    re.S | re.M,
)
OPEN = re.compile(r"^<!-- results:(\S*) -->$", re.M)
CLOSE = re.compile(r"^<!-- /results -->$", re.M)


# ---------------------------------------------------------------------------------------------------- reading


class Files:
    """The metrics files of one checkout, read once each."""

    def __init__(self, root: Path):
        self.root = root
        self._cache: dict[str, object] = {}

    def json(self, rel: str) -> dict:
        if rel not in self._cache:
            path = self.root / rel
            try:
                self._cache[rel] = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise SystemExit(f"results: cannot read {rel}: {e}") from e
        return self._cache[rel]  # type: ignore[return-value]

    def metrics(self, task: str) -> dict:
        return self.json(f"metrics/{task}.json")

    def has(self, rel: str) -> bool:
        """Whether the checkout holds `rel`: a task registered but not yet run by the pipeline has no metrics."""
        return (self.root / rel).is_file()

    def csv(self, rel: str) -> list[dict[str, str]]:
        if rel not in self._cache:
            try:
                with open(self.root / rel, newline="", encoding="utf-8") as f:
                    self._cache[rel] = list(csv.DictReader(f))
            except OSError as e:
                raise SystemExit(f"results: cannot read {rel}: {e}") from e
        return self._cache[rel]  # type: ignore[return-value]


def registry():
    from rnnlab import tasks

    return tasks


def flatten(scores: dict) -> dict:
    from rnnlab.evaluation import flatten as flat

    return flat(scores)


def fmt(x: float) -> str:
    """One rounding rule for every generated number: 3 decimals below 10, 2 below 100, 1 above."""
    x = float(x)
    if abs(x) < 10:
        return f"{x:.3f}"
    if abs(x) < 100:
        return f"{x:.2f}"
    return f"{x:.1f}"


def spaced(n: float) -> str:
    """A whole number with a space between thousands, as the prose writes them (1 487)."""
    return f"{round(n):,}".replace(",", " ")


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def path_of(scores: dict, metric: str, prefix: str = "test") -> tuple[str, ...]:
    """The nested keys under `prefix` whose flattened MLflow name is `metric` (test_co2_mae -> (co2, mae))."""
    for name, _ in flatten({prefix: scores.get(prefix, {})}).items():
        if name == metric:
            break
    else:
        raise SystemExit(f"results: {metric} is not in the test scores")

    def walk(node, keys, name):
        if not isinstance(node, dict):
            return keys if name == metric else None
        for k, v in node.items():
            found = walk(v, keys + (k,), f"{name}_{k}")
            if found is not None:
                return found
        return None

    return walk(scores[prefix], (), prefix)


def get(scores: dict, keys: tuple[str, ...]):
    node = scores
    for k in keys:
        if not isinstance(node, dict) or k not in node:
            return None
        node = node[k]
    return node


def baseline_score(scores: dict, baseline: str, path: tuple[str, ...], leaf=(int, float)):
    """A baseline's score on the headline's measure: baseline.<name>.<path> or, per series,
    baseline.<series>.<name>.<measure> (the name inserted anywhere along the path); `leaf`: the type it has
    (a {mean, std} dict in a seeds file)."""
    for i in range(len(path)):
        value = get(scores, ("baseline",) + path[:i] + (baseline,) + path[i:])
        if isinstance(value, leaf):
            return value
    return None


def seeds_of(f: Files, task: str) -> dict | None:
    """metrics/<task>_seeds.json (the seeds stage) when it holds more than one seed."""
    rel = f"metrics/{task}_seeds.json"
    if not (f.root / rel).is_file():
        return None
    found = f.json(rel)
    return found if len(found["seeds"]) > 1 else None


def peer_seconds(f: Files, task: str, series: tuple[str, ...] = ()) -> dict[str, str]:
    """Each classical peer's fit + predict seconds, from reports/TASK/TASK_peers.csv (the evaluate stage's; kept
    out of the metrics, which must be byte-identical run to run); {} where the task has none. A file with a
    `series` column (forecast's: the peers of each series) gives only the rows of a series in `series`."""
    rel = f"reports/{task}/{task}_peers.csv"
    if not (f.root / rel).is_file():
        return {}
    return {r["peer"]: r["seconds"] for r in f.csv(rel) if "series" not in r or r["series"] in series}


def against(model: dict, baseline: dict, higher_is_better: bool) -> str:
    """Whether the model is ahead of a baseline, behind it, or level: ahead or behind only when the difference
    of the means exceeds their spread, the two standard deviations combined (sqrt(sd1^2 + sd2^2))."""
    diff = (model["mean"] - baseline["mean"]) * (1 if higher_is_better else -1)
    spread = math.hypot(model["std"], baseline["std"])
    return "ahead" if diff > spread else "behind" if diff < -spread else "level"


def mean_sd(node: dict) -> str:
    return fmt(node["mean"]) + (f" ± {fmt(node['std'])}" if node["std"] else "")


def direction(higher: bool) -> str:
    return "higher is better" if higher else "lower is better"


# ------------------------------------------------------------------------------------------------- generators


def headline(f: Files) -> str:
    """README: every registered task's headline test score, with the baselines its spec names."""
    tasks = registry()
    rows = []
    for name in tasks.names():
        t = tasks.get(name)
        if not f.has(f"metrics/{name}.json"):
            rows.append([f"[`{name}`]({PAGES[name]})", t.shape, f"`{t.metric}` ({direction(t.higher_is_better)})",
                         f"not run yet (`dvc repro evaluate@{name}`)", ", ".join(b.replace("_", " ") for b in t.baselines)])
            continue
        scores = f.metrics(name)
        path = path_of(scores, t.metric)
        # over the seeds of the seeds stage where it trained more than one; else the one run, spread 0
        spread = seeds_of(f, name)
        if spread:
            model = get(spread, ("test",) + path)
            shown = f"**{mean_sd(model)}** ({len(spread['seeds'])} seeds)"
        else:
            model = {"mean": get(scores, ("test",) + path), "std": 0.0}
            shown = f"**{fmt(model['mean'])}**"
        versus, seconds = [], peer_seconds(f, name, path)  # forecast's series: along the path
        for b in t.baselines:
            v = baseline_score(spread, b, path, dict) if spread else baseline_score(scores, b, path)
            if v is not None:
                v = v if spread else {"mean": v, "std": 0.0}
                took = f", {seconds[b]} s" if b in seconds else ""
                versus.append(f"{b.replace('_', ' ')} {mean_sd(v)} ({against(model, v, t.higher_is_better)}{took})")
        rows.append([f"[`{name}`]({PAGES[name]})", t.shape, f"`{t.metric}` ({direction(t.higher_is_better)})",
                     shown, ", ".join(versus)])
    return table(["task", "shape", "headline test score", "model", "baselines on it (the model: ahead, level, "
                  "behind; a classical peer's fit + predict seconds)"], rows)


def highlights(f: Files) -> str:
    """README: the second numbers of the tasks whose headline alone says too little."""
    g = f.metrics("surname_gen")["generated"]
    fc = f.metrics("forecast")
    tr = f.metrics("translate")["test"]
    sp = f.metrics("speech")
    sun, base = fc["test"]["sunspots"]["mae"], fc["baseline"]["sunspots"]
    spread = f.json("metrics/forecast_seeds.json")
    rolling = {s: (mean_sd(spread["test"][s]["rolling"]["mae_mean"]),
                   fmt(fc["baseline"][s][peer]["rolling"]["mae_mean"]))
               for s, peer in (("co2", "sarimax"), ("sunspots", "autoreg"))}
    return "\n".join([
        f"- `surname_gen`: {fmt(g['classifier_agreement'])} of the generated names are judged the asked language "
        f"by the surname classifier, {g['ratio']:.1f}x chance ({fmt(g['chance'])}).",
        f"- `forecast`: sunspots MAE {fmt(sun)} (naive {fmt(base['naive']['mae'])}, AutoReg(9) "
        f"{fmt(base['autoreg']['mae'])}); over the rolling origins inside the test period, the score the peers are "
        f"compared by, MAE {rolling['co2'][0]} for CO2 (SARIMAX {rolling['co2'][1]}) and {rolling['sunspots'][0]} for "
        f"sunspots (AutoReg(9) {rolling['sunspots'][1]}), {len(spread['seeds'])} seeds.",
        f"- `translate`: chrF {fmt(tr['chrf'])} (beam {tr['beam_width']}, {tr['verses']} of the "
        f"{spaced(tr['verses_in_split'])} test verses); greedy decoding BLEU {fmt(tr['bleu_greedy'])}.",
        f"- `speech`: {fmt(sp['test']['syllable_accuracy'])} of the recordings of unheard test syllables decoded exactly "
        f"right, tones {fmt(sp['test']['tone_accuracy'])} (the window baseline "
        f"{fmt(sp['baseline']['window']['syllable_accuracy'])} and {fmt(sp['baseline']['window']['tone_accuracy'])}).",
    ])


def translate_full(f: Files) -> str:
    s = f.json("reports/translate_full/translate.json")["test"]
    return (f"The longer translation budget (`experiment=translate_full`, 12 epochs, not in the pipeline; "
            f"`reports/translate_full/translate.json`) scores BLEU {fmt(s['bleu'])}, chrF {fmt(s['chrf'])} "
            f"(beam {s['beam_width']}, {s['verses']} test verses).")


def speech(f: Files) -> str:
    m = f.metrics("speech")
    t, v, w = m["test"], m["val"], m["baseline"]["window"]

    def row(name: str, s: dict, bold: bool = False) -> list[str]:
        cells = [fmt(s["per"]), fmt(s["syllable_accuracy"]), fmt(s["tone_accuracy"])]
        return [name] + ([f"**{c}**" for c in cells] if bold else cells) + [spaced(s["recordings"])]

    return table(["", "phone error rate", "syllables exactly right", "tones right", "recordings"], [
        row(f"recurrent model, test, beam {t['beam_width']}", t, bold=True),
        row("recurrent model, test, greedy", t["greedy"]),
        row("  speaker 3 (natural voice)", t["speaker_3"]),
        row("  speaker 5 (voicebank)", t["speaker_5"]),
        row(f"window baseline, test, beam {w['beam_width']}", w),
        row(f"recurrent model, validation, beam {v['beam_width']}", v),
        row("window baseline, validation", w["val"]),
    ])


def speech_speaker3(f: Files) -> str:
    s = f.json("reports/speech_speaker3/speech.json")["test"]
    return (f"Trained on speaker 3 alone (`experiment=speech_speaker3`, not in the pipeline; "
            f"`reports/speech_speaker3/speech.json`): the unheard test syllables of speaker 3 get phone error rate "
            f"{fmt(s['speaker_3']['per'])} ({fmt(s['speaker_3']['syllable_accuracy'])} exactly right), "
            f"those of speaker 5, a voice it never heard, {fmt(s['speaker_5']['per'])} "
            f"({fmt(s['speaker_5']['syllable_accuracy'])}).")



def speech_en(f: Files) -> str:
    m = f.json("reports/speech_en/speech.json")
    t, v, w = m["test"], m["val"], m["baseline"]["window"]

    def row(name: str, s: dict, prompts: int, bold: bool = False) -> list[str]:
        cells = [fmt(s["cer"]), fmt(s["wer"])]
        return [name] + ([f"**{c}**" for c in cells] if bold else cells) + [str(prompts)]

    return table(["", "character error rate", "word error rate", "prompts"], [
        row(f"recurrent model, test, beam {t['beam_width']}", t, t["prompts"], bold=True),
        row("recurrent model, test, greedy", t["greedy"], t["prompts"]),
        row(f"window baseline, test, beam {w['beam_width']}", w, w["prompts"]),
        row("window baseline, test, greedy", w["greedy"], w["prompts"]),
        row(f"recurrent model, validation, beam {v['beam_width']}", v, v["prompts"]),
        row(f"window baseline, validation, beam {w['val']['beam_width']}", w["val"], w["val"]["prompts"]),
    ])


def speech_en_curve(f: Files) -> str:
    rows = f.csv("reports/speech_en/speech_curves.csv")  # one validation an epoch, and one when time runs out
    errors = [float(r["val_per"]) for r in rows]
    best = min(range(len(errors)), key=errors.__getitem__)
    return (f"The recogniser's learning curve, its validation token error (greedy decoding; letters, apostrophes "
            f"and word breaks) at each of the {len(errors)} validations of its 30 minutes (one an epoch, the last "
            f"when the time ran out): " + " -> ".join(f"{e:.2f}" for e in errors)
            + f". The lowest, {errors[best]:.3f} at validation {best + 1}, chose the checkpoint evaluated above; "
            f"the validation loss had stopped falling well before ({min(float(r['val_loss']) for r in rows):.2f} at "
            f"its lowest, {float(rows[-1]['val_loss']):.2f} at the end) while the error kept falling.")

def charlm(f: Files) -> str:
    m = f.metrics("charlm")
    rows = [["LSTM, bits per character", f"**{fmt(m['test']['bpc'])}**", fmt(m["val"]["bpc"])],
            ["LSTM, per-character perplexity", fmt(m["test"]["perplexity"]), fmt(m["val"]["perplexity"])]]
    kn = m.get("baseline", {}).get("kn_ngram")  # metrics written before the peer existed have none
    if kn:
        seconds = peer_seconds(f, "charlm")
        rows.append([f"Kneser-Ney {kn['order']}-gram (order chosen on validation; fit and scoring "
                     f"{seconds['kn_ngram']} s), bits per character", fmt(kn["bpc"]), fmt(kn["val_bpc"])])
    return table(["", "test (*Hamlet*, *The Tempest*)", "validation (*Julius Caesar*, *Twelfth Night*)"], rows)


# the many-to-one targets of issue 2 (docs content: what "good enough" meant when each task was added)
CLASSIFIER_TARGETS: dict[str, tuple[str, Callable[[dict], bool]]] = {
    "sentiment": ("≥ 0.77 and above the bag baseline",
                  lambda m: m["test"]["accuracy"] >= 0.77 and m["test"]["accuracy"] > m["baseline"]["bag"]["accuracy"]),
    "speaker": ("≥ 0.97", lambda m: m["test"]["accuracy"] >= 0.97),
    "surname": ("≥ 2 x the majority class",
                lambda m: m["test"]["accuracy"] >= 2 * m["baseline"]["majority"]["accuracy"]),
}


def many_to_one(f: Files) -> str:
    rows = []
    for name, (target, met) in CLASSIFIER_TARGETS.items():
        m = f.metrics(name)
        acc, bag, major = m["test"]["accuracy"], m["baseline"]["bag"]["accuracy"], m["baseline"]["majority"]["accuracy"]
        diff = acc - bag
        versus = "ties" if abs(diff) < 5e-5 else f"{diff:+.3f}"
        rows.append([f"`{name}`", f"**{fmt(acc)}**", fmt(m["test"]["macro_f1"]), fmt(bag), versus, fmt(major),
                     f"{acc / major:.1f} x", f"{target}: {'met' if met(m) else 'not met'}"])
    return table(["task", "test accuracy", "test macro-F1", "bag baseline", "model - bag", "majority class",
                  "model / majority", "target"], rows)


def many_to_one_peers(f: Files) -> str:
    """The classical peers of the labelled tasks (their specs' `peers`) beside the recurrent model: the rows the
    metrics files hold, their runtimes from reports/TASK/TASK_peers.csv (kept out of the metrics, which must be
    byte-identical run to run); metrics written before the peers existed print a line saying so."""
    tasks = registry()
    rows = []
    for name in tasks.names():
        t = tasks.get(name)
        if not t.peers:
            continue
        m = f.metrics(name)
        seconds = peer_seconds(f, name)
        for peer in t.peer_names:
            s = m["baseline"].get(peer)
            if s is None:
                continue
            chosen = ", ".join(f"{k} {v:g}" for k, v in s["chosen"].items())
            versus = f"{m['test']['accuracy'] - s['accuracy']:+.3f}"
            rows.append([f"`{name}`", peer.replace("_", " "), f"**{fmt(s['accuracy'])}**", fmt(s["macro_f1"]),
                         fmt(s["val_accuracy"]), chosen, seconds.get(peer, "?"), versus])
    if not rows:
        return ("Not measured yet: the committed metrics predate the peers; the next run of the evaluate stages "
                "of the tasks that name peers writes them here.")
    return table(["task", "peer", "test accuracy", "test macro-F1", "validation accuracy (chosen by)", "chosen",
                  "fit + predict s", "model - peer"], rows)


def confusion_errors(f: Files, task: str) -> tuple[int, int]:
    rows = f.csv(f"reports/{task}/{task}_confusion.csv")
    return sum(r["actual"] != r["predicted"] for r in rows), len(rows)


def many_to_one_errors(f: Files) -> str:
    parts = []
    for name in CLASSIFIER_TARGETS:
        wrong, n = confusion_errors(f, name)
        parts.append(f"{name} {wrong} of {n}")
    return f"Misclassified test examples (`reports/TASK/TASK_confusion.csv`): {', '.join(parts)}."


def surname_gen(f: Files) -> str:
    m = f.metrics("surname_gen")
    g = m["generated"]
    target = 3
    return table(["test bpc", "val bpc", "new names", "distinct", "classifier agreement", "chance", "ratio", "target"], [[
        f"**{fmt(m['test']['bpc'])}**", fmt(m["val"]["bpc"]), fmt(g["novel"]), fmt(g["unique"]),
        f"**{fmt(g['classifier_agreement'])}**", fmt(g["chance"]), f"**{g['ratio']:.1f}x**",
        f"≥ {target}x chance: {'met' if g['ratio'] >= target else 'not met'}"]])


def surname_gen_languages(f: Files) -> str:
    per = f.metrics("surname_gen")["per_language"]
    judge = f.metrics("surname")["test"]
    order = sorted(per, key=lambda lang: (per[lang]["classifier_agreement"], lang))
    low = ", ".join(f"{per[x]['classifier_agreement']:.2f} ({x})" for x in order[:4])
    high = ", ".join(f"{per[x]['classifier_agreement']:.2f} ({x})" for x in order[-2:])
    recall = {lang: s["recall"] for lang, s in judge["per_class"].items()}
    worst = sorted(recall, key=lambda lang: (recall[lang], lang))[:3]
    weakest = order[0]
    return (f"Per language the agreement runs from {low} to {high}. The judge is imperfect too: on real "
            f"test names its accuracy is {judge['accuracy']:.2f} and its recall lowest for "
            + ", ".join(f"{x} ({recall[x]:.2f})" for x in worst)
            + f"; {weakest}, the generator's weakest language, has recall {recall.get(weakest, float('nan')):.2f} "
            f"on real names.")


def translate(f: Files) -> str:
    m = f.metrics("translate")
    t, v, c = m["test"], m["val"], m["baseline"]["copy_source"]
    n, nv = t["verses"], v["verses"]
    return table(["", "BLEU", "chrF", "length ratio"], [
        [f"test (1 Samuel, Mark; {n} verses), beam {t['beam_width']}", f"**{fmt(t['bleu'])}**",
         f"**{fmt(t['chrf'])}**", fmt(t["length_ratio"])],
        [f"test, greedy (same {n} verses)", fmt(t["bleu_greedy"]), fmt(t["chrf_greedy"]), fmt(t["length_ratio_greedy"])],
        [f"test, greedy, all {spaced(t['verses_in_split'])} verses", fmt(t["all_verses"]["bleu_greedy"]),
         fmt(t["all_verses"]["chrf_greedy"]), ""],
        [f"validation (Joshua, John; {nv} verses), beam {v['beam_width']}", fmt(v["bleu"]), fmt(v["chrf"]),
         fmt(v["length_ratio"])],
        [f"validation, greedy, all {spaced(v['verses_in_split'])} verses",
         fmt(v["all_verses"]["bleu_greedy"]), fmt(v["all_verses"]["chrf_greedy"]), ""],
        [f"copy the English source (test, {n} verses)", fmt(c["bleu"]), fmt(c["chrf"]), fmt(c["length_ratio"])],
    ])


def translate_curve(f: Files) -> str:
    rows = f.csv("metrics/translate_curves.csv")
    t = f.metrics("translate")["test"]
    losses = " -> ".join(f"{float(r['val_loss']):.2f}" for r in rows)
    return (f"Validation loss fell {losses} nats per subword at each half epoch (perplexity "
            f"{float(rows[-1]['val_ppl']):.1f} at the end). Beam search shortens greedy decoding's over-long, "
            f"repetitive output (length ratio {t['length_ratio_greedy']:.2f} -> {t['length_ratio']:.2f}, "
            f"{t['bleu'] - t['bleu_greedy']:+.1f} BLEU).")


def translate_full_table(f: Files) -> str:
    m = f.json("reports/translate_full/translate.json")
    t, v = m["test"], m["val"]
    n = t["verses"]
    return table(["", "BLEU", "chrF", "length ratio"], [
        [f"test ({n} verses), beam {t['beam_width']}", f"**{fmt(t['bleu'])}**", f"**{fmt(t['chrf'])}**",
         fmt(t["length_ratio"])],
        [f"test, greedy (same {n} verses)", fmt(t["bleu_greedy"]), fmt(t["chrf_greedy"]), fmt(t["length_ratio_greedy"])],
        [f"test, greedy, all {spaced(t['verses_in_split'])} verses", fmt(t["all_verses"]["bleu_greedy"]),
         fmt(t["all_verses"]["chrf_greedy"]), ""],
        [f"validation ({v['verses']} verses), beam {v['beam_width']}", fmt(v["bleu"]), fmt(v["chrf"]),
         fmt(v["length_ratio"])],
    ])


def translate_full_curve(f: Files) -> str:
    rows = f.csv("reports/translate_full/translate_curves.csv")
    epochs = rows[1::2]  # validation runs twice an epoch: every second row ends an epoch
    full = f.json("reports/translate_full/translate.json")["test"]["bleu"]
    pipeline = f.metrics("translate")["test"]["bleu"]
    last_two = float(epochs[-1]["val_loss"]) - float(epochs[-3]["val_loss"])
    return ("Validation loss (nats per subword) at every epoch: "
            + " -> ".join(f"{float(r['val_loss']):.2f}" for r in epochs)
            + f" (perplexity {float(epochs[-1]['val_ppl']):.2f} at the end). Three times the steps bought "
            f"{full - pipeline:+.1f} BLEU on the test books over the pipeline's run; the curve flattens in the "
            f"last epochs ({last_two:+.2f} over the last two) as the cosine schedule runs out.")


SERIES = {"co2": "CO2 (ppmv, 53 months)", "sunspots": "sunspots (31 years)"}


NOT_RUN = "No `metrics/{task}.json` yet: the pipeline has not run the task (`dvc repro evaluate@{task}`)."


def summarize(f: Files) -> str:
    if not f.has("metrics/summarize.json"):
        return NOT_RUN.format(task="summarize")
    m = f.metrics("summarize")
    t, v, base = m["test"], m["val"], m["baseline"]

    def row(name: str, s: dict, bold: bool = False, suffix: str = "") -> list[str]:
        cells = [fmt(s[f"{k}{suffix}"]) for k in ("rouge1", "rouge2", "rougeL", "bleu")]
        return [name, *(f"**{c}**" for c in cells)] if bold else [name, *cells]

    n, nv = spaced(t["pairs"]), spaced(v["pairs"])
    return table(["", "ROUGE-1", "ROUGE-2", "ROUGE-L", "BLEU"], [
        row(f"test ({n} pairs), beam {t['beam_width']}, length penalty {t['length_penalty']}, no repeated "
            f"{t['no_repeat_ngram']}-gram", t, bold=True),
        row("test, greedy", t, suffix="_greedy"),
        row(f"validation ({nv} pairs), beam {v['beam_width']}", v),
        row("validation, greedy", v, suffix="_greedy"),
        row("`lead`: the first sentence (test)", base["lead"]),
        row("`lead_10`: its first 10 words (test)", base["lead_10"]),
    ])


def summarize_copy(f: Files) -> str:
    if not f.has("metrics/summarize.json"):
        return ""
    c = f.metrics("summarize")["test"]["copy"]
    words = f.csv("reports/summarize/summarize_copied_words.csv")[:12]
    return (f"On test, {100 * c['copied_pieces']:.1f} % of the written pieces took most of their probability from "
            f"the copy switch ({100 * c['copied_words']:.1f} % of the words; mean p_gen {c['mean_p_gen']:.2f}), and "
            f"{100 * c['copied_words_in_document']:.1f} % of the copied words are words of the document. The words it "
            f"copied most often: " + ", ".join(f"`{w['word']}` ({w['count']})" for w in words) + ".")


def forecast(f: Files) -> str:
    t = registry().get("forecast")
    m = f.metrics("forecast")
    rows = []

    def rolled(s: dict) -> str:  # metrics written before the rolling-origin evaluation have none
        r = s.get("rolling")
        return f"{fmt(r['mae_mean'])} ± {fmt(r['mae_std'])} ({r['origins']} × {r['horizon']} steps)" if r else "–"

    def covered(s: dict) -> str:  # the 80 % interval's coverage: whole horizon / mean over the rolling origins
        if "coverage_80" not in s:  # metrics written before the model forecast quantiles
            return "–"
        return f"{fmt(s['coverage_80'])} / {fmt(s['rolling']['coverage_80'])}"

    for series, label in SERIES.items():
        seconds = peer_seconds(f, "forecast", (series,))  # {} before the evaluate stage timed them
        t_s = m["test"][series]
        rows.append([label, "**GRU seq2seq**", f"**{fmt(t_s['mae'])}**", f"**{fmt(t_s['rmse'])}**", f"**{rolled(t_s)}**",
                     covered(t_s), ""])
        for b in t.baselines:
            s = m["baseline"][series].get(b)
            if s is not None:
                rows.append(["", BASELINE_NAMES.get(b, b), fmt(s["mae"]), fmt(s["rmse"]), rolled(s), "",
                             seconds.get(b, "–")])
    return table(["series", "model", "MAE", "RMSE", "rolling-origin MAE, mean ± sd (origins × horizon)",
                  "80 % interval coverage (horizon / rolling)", "fit + predict, whole horizon (s)"], rows)


BASELINE_NAMES = {"seasonal_naive": "seasonal naive", "sarimax": "SARIMAX(1,1,1)(0,1,1,12)", "naive": "naive",
                  "autoreg": "AutoReg(9)"}
NAIVE = {"co2": "seasonal_naive", "sunspots": "naive"}
STATISTICAL = {"co2": "sarimax", "sunspots": "autoreg"}


def rolled_ratio(model: dict, peer: dict) -> str:
    """The rolling-origin mean MAE against the peer's, the comparison that one horizon's luck does not sway."""
    if "rolling" not in model or "rolling" not in peer:
        return ""
    ratio = model["rolling"]["mae_mean"] / peer["rolling"]["mae_mean"]
    return f", over the rolling origins {ratio:.2f} x ({'better' if ratio < 1 else 'worse'})"


def forecast_reading(f: Files) -> str:
    m = f.metrics("forecast")
    parts = []
    beats_naive = {s: m["test"][s]["mae"] < m["baseline"][s][NAIVE[s]]["mae"] for s in SERIES}
    beats_stat = {s: m["test"][s]["mae"] < m["baseline"][s][STATISTICAL[s]]["mae"] for s in SERIES}
    for s in SERIES:
        model, naive, stat = m["test"][s]["mae"], m["baseline"][s][NAIVE[s]]["mae"], m["baseline"][s][STATISTICAL[s]]["mae"]
        parts.append(f"on {s} the model's MAE is {model / naive:.2f} x the {BASELINE_NAMES[NAIVE[s]]} forecast's "
                     f"({'better' if beats_naive[s] else 'worse'}) and {model / stat:.2f} x "
                     f"{BASELINE_NAMES[STATISTICAL[s]]}'s ({'better' if beats_stat[s] else 'worse'})"
                     + rolled_ratio(m["test"][s], m["baseline"][s][STATISTICAL[s]]))
    verdict = ("beats the naive baselines on both series (target met)" if all(beats_naive.values())
               else "does not beat the naive baselines on every series (target not met)")
    stat = ("and the statistical models too" if all(beats_stat.values())
            else "but not every statistical model fitted for these series")
    return f"The recurrent forecaster {verdict}, {stat}: " + "; ".join(parts) + "."


def gradients_adding(f: Files) -> str:
    g = f.json("metrics/gradients.json")
    lengths = sorted(g["adding_baseline_mse"], key=lambda k: int(k[1:]))
    cells = [c for c in ("rnn", "lstm", "gru") if c in g["adding"]]
    rows = []
    for T in lengths:
        rows.append([T[1:]] + [f"{g['adding'][c][T]['test_mse']:.4f} ({g['adding'][c][T]['steps']})" for c in cells]
                    + [f"{g['adding_baseline_mse'][T]:.4f}"])
    return table(["T"] + [{"rnn": "rnn (tanh)"}.get(c, c) for c in cells] + ["predict 1.0"], rows)


def gradients_profile(f: Files) -> str:
    p = f.json("metrics/gradients.json")["profile"]
    init = {c: p[f"{c}_init"]["first_over_last"] for c in ("rnn", "gru", "lstm")}
    trained = {c: p[f"{c}_trained"]["first_over_last"] for c in ("rnn", "gru", "lstm")}
    return (f"Freshly initialised, the gradient from step 100 is {init['rnn']:.0e} of its size by step 1 for the "
            f"tanh RNN, {init['gru']:.0e} for the GRU, {init['lstm']:.0e} for the LSTM. After training at "
            f"T = 100 the ratios are {trained['lstm']:.2f} (LSTM) and {trained['gru']:.2f} (GRU), and "
            f"{trained['rnn']:.0e} for the tanh RNN. Spectral radius of the GRU's update-gate block "
            f"{p['gru_trained']['spectral_radius']['z']:.1f}, of the LSTM's forget-gate block "
            f"{p['lstm_trained']['spectral_radius']['f']:.1f}, of the trained RNN's W_hh "
            f"{p['rnn_trained']['spectral_radius']['h']:.2f}.")


def gradients_exploding(f: Files) -> str:
    e = f.json("metrics/gradients.json")["exploding"]
    no, clip = e["no_clip"], e["clip_1"]
    first = (f"Without clipping the norm reaches {spaced(no['max_grad_norm'])}"
             + (f" and the loss turns NaN at step {no['steps_trained']}" if no["diverged"]
                else f" and the run trains all {no['steps_trained']} steps"))
    second = (f"with clipping the same run trains all {clip['steps_trained']} steps (largest norm "
              f"{clip['max_grad_norm']:.1f})" if not clip["diverged"] else "with clipping it diverges too")
    return f"{first}; {second}."


CAPTION_VIEWS = (("full", "full test"), ("no_skin_tone", "no skin tone"), ("cross_style", "across styles"))


def caption(f: Files) -> str:
    """The captioner (beam search and greedy) beside the two baselines in the three views: BLEU-4 / ROUGE-L / exact."""
    if not f.has("metrics/caption.json"):
        return NOT_RUN.format(task="caption")
    m = f.metrics("caption")

    def cell(s: dict) -> str:
        return f"{fmt(s['bleu'])} / {fmt(s['rouge_l'])} / {fmt(s['exact'])}"

    test = m["test"]

    def decoding(split: dict) -> str:  # the twin of the cross-style view decodes its own way (metrics since 2026-12-02)
        def name(width: int) -> str:
            return "greedy" if width == 1 else f"beam search, width {width}"
        twin = split["cross_style"].get("beam_width", split["beam_width"])
        own = name(split["beam_width"])
        return own if twin == split["beam_width"] else f"{own}; the twin's across styles: {name(twin)}"

    spread = seeds_of(f, "caption") or {"seeds": []}  # the seeds stage's: the same training from other seeds

    def over_seeds(label: str, split: str) -> list[list[str]]:
        if not spread["seeds"]:
            return []
        return [[f"captioner, {label}, mean ± sd over {len(spread['seeds'])} seeds"]
                + [" / ".join(mean_sd(spread[split][v][k]) for k in ("bleu", "rouge_l", "exact")) for v, _ in CAPTION_VIEWS]]

    # greedy captions beside a beam's (the same captions at width 1)
    greedy = [] if test["beam_width"] == 1 else [
        ["captioner, greedy"] + [f"{fmt(test[v]['bleu_greedy'])} / – / {fmt(test[v]['exact_greedy'])}"
                                 for v, _ in CAPTION_VIEWS]]
    rows = [[f"captioner ({decoding(test)})"] + [cell(test[v]) for v, _ in CAPTION_VIEWS],
            *greedy,
            [f"captioner, validation ({decoding(m['val'])})"] + [cell(m["val"][v]) for v, _ in CAPTION_VIEWS],
            *over_seeds("test", "test"), *over_seeds("validation", "val"),
            ["nearest neighbour, 32×32 pixels"] + [cell(m["baseline"]["nearest"][v]) for v, _ in CAPTION_VIEWS],
            ["constant caption"] + [cell(m["baseline"]["constant"][v]) for v, _ in CAPTION_VIEWS]]
    header = (["BLEU-4 / ROUGE-L / exact % (test, unless said)"]
              + [f"{name} ({spaced(test[v]['n'])})" for v, name in CAPTION_VIEWS])
    return table(header, rows)


GENERATORS: dict[str, Callable[[Files], str]] = {
    "caption": caption,
    "headline": headline,
    "highlights": highlights,
    "translate-full": translate_full,
    "charlm": charlm,
    "speech": speech,
    "speech-speaker3": speech_speaker3,
    "speech-en": speech_en,
    "speech-en-curve": speech_en_curve,
    "many-to-one": many_to_one,
    "many-to-one-errors": many_to_one_errors,
    "many-to-one-peers": many_to_one_peers,
    "surname-gen": surname_gen,
    "surname-gen-languages": surname_gen_languages,
    "translate": translate,
    "translate-curve": translate_curve,
    "translate-full-table": translate_full_table,
    "translate-full-curve": translate_full_curve,
    "summarize": summarize,
    "summarize-copy": summarize_copy,
    "forecast": forecast,
    "forecast-reading": forecast_reading,
    "gradients-adding": gradients_adding,
    "gradients-profile": gradients_profile,
    "gradients-exploding": gradients_exploding,
}

# where each task is documented (README links), relative to the repository root
PAGES = {
    "charlm": "docs/tasks/charlm.md",
    "sentiment": "docs/tasks/many-to-one.md",
    "speaker": "docs/tasks/many-to-one.md",
    "surname": "docs/tasks/many-to-one.md",
    "surname_gen": "docs/tasks/surname-generation.md",
    "forecast": "docs/tasks/forecasting.md",
    "translate": "docs/tasks/translation.md",
    "speech": "docs/tasks/speech.md",
    "caption": "docs/tasks/captioning.md",
    "summarize": "docs/tasks/summarization.md",
}


# ----------------------------------------------------------------------------------------------------- blocks


def pages(root: Path) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def render(text: str, files: Files, where: str, problems: list[str]) -> str:
    for m in OPEN.finditer(text):
        if m.group(1) not in GENERATORS:
            problems.append(f"{where}: unknown results block {m.group(1)!r} (known: {', '.join(GENERATORS)})")
    if len(OPEN.findall(text)) != len(CLOSE.findall(text)):
        problems.append(f"{where}: a results block is not closed with <!-- /results -->")

    def one(m: re.Match) -> str:
        gen = GENERATORS.get(m.group("name"))
        if gen is None:
            return m.group(0)
        return m.group("open") + gen(files).rstrip("\n") + "\n" + m.group("close")

    return BLOCK.sub(one, text)


def run(root: Path, check: bool) -> int:
    files = Files(root)
    problems: list[str] = []
    stale: list[str] = []
    for page in pages(root):
        rel = page.relative_to(root).as_posix()
        text = page.read_text(encoding="utf-8")
        new = render(text, files, rel, problems)
        if new == text:
            continue
        old_blocks = {m.start(): (m.group("name"), m.group("body")) for m in BLOCK.finditer(text)}
        new_blocks = [(m.group("name"), m.group("body")) for m in BLOCK.finditer(new)]
        names = [name for (name, body), (_, new_body) in zip(old_blocks.values(), new_blocks) if body != new_body]
        if check:
            stale += [f"{rel}: block {name!r} disagrees with the metrics files" for name in names]
        else:
            page.write_text(new, encoding="utf-8")
            print(f"rewrote {rel}: {', '.join(names)}")
    for line in problems + stale:
        print(f"results: {line}", file=sys.stderr)
    if stale:
        print("results: run `python docs/results.py` to regenerate them", file=sys.stderr)
    return 1 if problems or stale else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Regenerate (or --check) the docs' results blocks from metrics/.")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 naming each stale block")
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1],
                        help="the checkout whose README.md, docs/ and metrics/ to use (default: this one)")
    args = parser.parse_args(argv)
    return run(args.root.resolve(), args.check)


if __name__ == "__main__":
    sys.exit(main())
