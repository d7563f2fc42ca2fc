"""Every benchmark, one command: the char LM's training throughput (rnn/lstm/gru, fp32 and bf16, Lightning
against a plain loop, the loader's share, bf16 against fp32 at equal wall time) and variable-length
classification and inference (benchmarks/bench_charlm.py, benchmarks/bench_classify.py), with the machine's facts.

    python benchmarks/bench.py           # about 20 minutes on 2 cores, after `dvc repro` (the real data and models)
    python benchmarks/bench.py --smoke   # a few steps of each at a tiny size: checks that it runs

Writes metrics/bench.json (`dvc metrics show` lists it) and the same figures as tables in reports/bench.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the other benchmark scripts, run as `python benchmarks/...`

import bench_charlm  # noqa: E402
import bench_classify  # noqa: E402
from machine import machine  # noqa: E402

from rnnlab.core.io import write_json, write_text  # noqa: E402

TINY_CHARLM = {"embedding_dim": 8, "hidden_size": 16, "num_layers": 2, "batch_size": 4, "seq_len": 16}


def num(x) -> str:
    return f"{x:,}".replace(",", " ") if isinstance(x, int) else f"{x}"


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(num(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def markdown(r: dict) -> str:
    m, c, v = r["machine"], r["charlm"], r["classify"]
    s = c["settings"]
    out = [f"# Benchmarks\n\n`python benchmarks/bench.py` on {r['date']}: {m['cpu']}, {m['cores']} cores, "
           f"{m['threads']} threads, torch {m['torch']}, device {m['device']}, native bf16 {m['bf16_cpu']}; load "
           f"average {m['load_average_1min_before']} before, {m['load_average_1min_after']} after. Figures: "
           "metrics/bench.json.\n"]
    out.append(f"\n## Char LM training throughput (characters/s)\n\nThe pipeline's char LM settings "
               f"(`experiment={s['experiment']}`): embedding {s['embedding_dim']}, {s['num_layers']} x "
               f"{s['hidden_size']} hidden, dropout {s['dropout']}, batch {s['batch_size']} x {s['seq_len']}, through "
               f"the Lightning module; characters over the lower decile of the step times of {s['rounds']} interleaved "
               f"rounds of {s['steps_per_round']} steps (the steps other work on the machine left alone).\n\n")
    precisions = sorted({p for cell in c["chars_per_second"].values() for p in cell})
    out.append(table(["cell", *precisions], [[cell, *(by.get(p, "") for p in precisions)]
                                            for cell, by in c["chars_per_second"].items()]))
    if "default_char_lm" in c:
        d = c["default_char_lm"]
        out.append(f"\nThe default char LM ({d['cell']}, {d['precision']}): {num(d['chars_per_second'])} chars/s a "
                   f"training step at the lower decile (target {num(d['target_chars_per_second'])}: "
                   f"{'met' if d['meets_target'] else 'not met'}), {num(d['median_step_chars_per_second'])} at the "
                   "median step")
        whole = c.get("equal_time", {}).get(d["precision"])
        if whole:
            out.append(f"; over a whole fit of {c['equal_time']['seconds']} s, validations, checkpoints and the "
                       f"machine's slow spells included, {num(whole['chars_per_second'])} chars/s (below)")
        out.append(".\n")
    if "lightning_vs_plain" in c:
        lp = c["lightning_vs_plain"]
        sizes = lp["sizes"]
        out.append(f"\n## Lightning module against a plain PyTorch loop ({lp['precision']})\n\nThe same model, batches "
                   "and update (carried state, AdamW, clipping, autocast) in a plain loop on a twin of the model, one "
                   f"plain step after each of {lp['steps']} Lightning steps, so that a busy spell on the machine slows "
                   "both steps of a pair; characters/s at each path's median step, *ratio* the median of the pairs' "
                   "plain / Lightning step times, *Lightning ms* the median time a step Lightning adds (hooks, "
                   f"logging, the loop); target ratio at least {lp['target_ratio']}.\n\n")
        rows = [[cell, name, f"{sizes[name]['num_layers']} x {sizes[name]['hidden_size']}", x["lightning"],
                 x["plain"], x["ratio"], x["lightning_ms_per_step"]] for cell, by in lp.items()
                if isinstance(by, dict) and cell != "sizes" for name, x in by.items()]
        out.append(table(["cell", "size", "layers x hidden", "Lightning", "plain", "ratio", "Lightning ms"], rows))
        ls = c["loader_share"]
        out.append(f"\nData loading takes {ls['share_of_step_loop'] * 100:.2f} % of the step loop ({ls['cell']}, "
                   f"{ls['precision']}; Lightning's SimpleProfiler; target at most {ls['target_at_most'] * 100:.0f} %)."
                   "\n")
    if "equal_time" in c:
        et = c["equal_time"]
        out.append(f"\n## bf16 against fp32 at equal wall time\n\n`rnnlab train experiment={et['experiment']}` for "
                   f"{et['seconds']} s at each precision, then scored on the test plays; characters/s over the whole "
                   "fit, validations and checkpoints included.\n\n")
        out.append(table(["precision", "steps", "chars/s", "test bpc"],
                         [[p, x["steps"], x["chars_per_second"], x["test_bpc"]] for p, x in et.items()
                          if isinstance(x, dict)]))
        if "quality_holds" in et:
            out.append(f"\nbf16 - fp32 test bpc: {et['bf16_minus_fp32_bpc']:+.4f} (bar: at most +0.02: "
                       f"{'holds' if et['quality_holds'] else 'fails'}).\n")
    vl = v["variable_length"]
    out.append(f"\n## Variable-length classification: packing and length buckets\n\nTraining through the Lightning "
               f"module at the pipeline's sizes, {vl['precision']}, best of {vl['rounds']} interleaved rounds of "
               f"{vl['steps_timed']} steps; *padded* runs the same model over the padded batch without packing, "
               f"*bucketed* sorts rows by length within pools of {vl['bucket_pool_batches']} batches.\n\n")
    rows = []
    for task, t in vl["tasks"].items():
        for batching in ("random", "bucketed"):
            packed, padded = t["runs"][f"packed_{batching}"], t["runs"][f"padded_{batching}"]
            rows.append([task, batching, f"{packed['padding_fraction'] * 100:.0f} %",
                         packed["tokens_per_second"], padded["tokens_per_second"],
                         round(packed["tokens_per_second"] / padded["tokens_per_second"], 2)])
    out.append(table(["task", "batching", "padding", "packed tokens/s", "padded tokens/s", "packed / padded"], rows))
    out.append("\nBucketed over random batches, packed: " + ", ".join(
        f"{task} {t['speedup']['bucketed_over_random_packed']}x" for task, t in vl["tasks"].items()) + ".\n")
    inf = v["inference"]
    g = inf["generation"]
    out.append(f"\n## Inference\n\nGeneration: {g['ms_per_char']} ms per character ({num(g['chars_per_second'])} "
               f"chars/s), batch 1.\n\n")
    rows = [[task, x["p50_ms"], x["p95_ms"], x["path"]] for task, x in inf["single"].items()]
    rows += [[f"{task} (served)", x["p50_ms"], x["p95_ms"], x["path"]] for task, x in inf.get("served", {}).items()]
    out.append(table(["task", "p50 ms", "p95 ms", "path"], rows))
    out.append("\n" + table(["task", "batch", "examples/s"], [[task, x["batch_size"], x["examples_per_second"]]
                                                             for task, x in inf["batched"].items()]))
    return "".join(out)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="a few steps of each at a tiny size")
    parser.add_argument("--equal-time", type=int, default=240, metavar="SECONDS",
                        help="bf16 against fp32: seconds of training each (0: skip)")
    parser.add_argument("--data-dir", default="data/processed")
    parser.add_argument("--models-dir", default="models")
    parser.add_argument("--out", help="default metrics/bench.json (with --smoke: none)")
    parser.add_argument("--report", help="default reports/bench.md (with --smoke: none)")
    parser.add_argument("--tables-only", action="store_true", help="only rewrite the tables from the JSON file")
    opts = parser.parse_args(argv)
    if opts.tables_only:
        result = json.loads(Path(opts.out or "metrics/bench.json").read_text())
        write_text(opts.report or "reports/bench.md", markdown(result))
        return result
    if not opts.smoke:
        opts.out, opts.report = opts.out or "metrics/bench.json", opts.report or "reports/bench.md"

    facts = machine()
    classify_args = ["--data-dir", opts.data_dir, "--models-dir", opts.models_dir]
    charlm_args, settings = ["--equal-time", str(opts.equal_time)], None
    if opts.smoke:
        charlm_args = ["--steps", "2", "--warmup", "1", "--rounds", "1", "--cells", "gru", "--equal-time", "0"]
        settings = {**bench_charlm.pipeline_settings(), **TINY_CHARLM}
        classify_args += ["--smoke"]
    result = {"date": datetime.date.today().isoformat(), "machine": facts,
              "charlm": bench_charlm.main(charlm_args, settings=settings),
              "classify": bench_classify.main(classify_args)}
    facts["load_average_1min_after"] = round(os.getloadavg()[0], 2)
    tables = markdown(result)
    if opts.out:
        write_json(opts.out, result)
    if opts.report:
        write_text(opts.report, tables)
    print(tables)
    return result


if __name__ == "__main__":
    main()
