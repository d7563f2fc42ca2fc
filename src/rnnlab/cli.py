"""The `rnnlab` command: pull, preprocess, train, evaluate, generate, predict, compare."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from rnnlab import RnnlabError

HYDRA_COMMANDS = ("train", "evaluate")
USAGE = """usage: rnnlab COMMAND [ARGS]

  pull TASK                 fetch and verify the task's raw data into data/raw/TASK (DVC stage)
  preprocess TASK           split, build the vocabulary, encode into data/processed/TASK (DVC stage)
  train [OVERRIDES]         fit a model; Hydra overrides, e.g. model=gru trainer.max_epochs=1, -m for sweeps
  evaluate [OVERRIDES]      score the pipeline's model on the test split (DVC stage)
  generate [--prompt ...]   sample text from a trained character model
  predict TASK INPUT        classify one raw input: sentiment TEXT | surname NAME | speaker FILE.csv
  translate SENTENCE        English -> Spanish with the trained translator (--beam N, --checkpoint PATH)
  gradients adding CELL     the adding problem at every length of params.yaml gradients.adding (DVC stage)
  gradients exploding       a relu RNN without and with gradient clipping (DVC stage)
  gradients report          gradient lab metrics, plots and figures (DVC stage)
  compare TASK [--tag K=V]  the task's MLflow runs sorted by its metric, and a PNG of their val_loss curves
"""


def config_dir() -> Path:
    """conf/ of the project in the working directory, else of the source checkout."""
    for candidate in (os.environ.get("RNNLAB_CONFIG_DIR"), "conf", Path(__file__).parents[2] / "conf"):
        if candidate and (Path(candidate) / "config.yaml").is_file():
            return Path(candidate).resolve()
    raise RnnlabError("no Hydra config found: run from the project root (conf/config.yaml) or set RNNLAB_CONFIG_DIR")


def run_hydra(command: str, args: list[str]) -> None:
    import hydra

    from rnnlab.evaluate import run_evaluate
    from rnnlab.train import train

    def task(cfg):
        if cfg.get("threads"):  # e.g. 1 on a CPU shared with other jobs (conf/experiment/translate.yaml)
            import torch

            torch.set_num_threads(int(cfg.threads))
        try:
            if command == "train":
                train(cfg)
            else:
                run_evaluate(cfg)
        except RnnlabError as e:
            fail(e)

    sys.argv = [f"rnnlab {command}", *args]
    hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")(task)()


class OneLineParser(argparse.ArgumentParser):
    """Bad arguments get one line on stderr and exit code 2 (argparse adds a usage block)."""

    def error(self, message):
        fail(RnnlabError(f"{self.prog}: {message}"))


def generate(args: list[str]) -> None:
    parser = OneLineParser(prog="rnnlab generate", description="Sample text from a character model.")
    parser.add_argument("--prompt", default="ROMEO:", help="text to continue (default: %(default)s)")
    parser.add_argument("--length", type=int, default=400, help="characters to add (default: %(default)s)")
    parser.add_argument("--temperature", type=float, default=0.8, help="0 is greedy (default: %(default)s)")
    parser.add_argument("--checkpoint", default="models/charlm/model.ckpt", help="default: the pipeline's model")
    parser.add_argument("--seed", type=int, default=None, help="seed for reproducible samples")
    opts = parser.parse_args(args)
    if opts.length < 0:
        parser.error(f"--length must be >= 0, got {opts.length}")
    if opts.temperature < 0:
        parser.error(f"--temperature must be >= 0, got {opts.temperature}")
    from rnnlab.checkpoint import load_checkpoint

    model = load_checkpoint(opts.checkpoint, kinds=("CharLanguageModel",))
    print(model.generate(opts.prompt, opts.length, opts.temperature, seed=opts.seed))


def predict(args: list[str]) -> None:
    parser = OneLineParser(prog="rnnlab predict", description="Classify one raw input with a trained model.")
    parser.add_argument("task", help="sentiment | surname | speaker")
    parser.add_argument("input", help="the text, the surname, or a CSV file of frames x 12 values (speaker)")
    parser.add_argument("--checkpoint", help="default: the pipeline's models/TASK/model.ckpt")
    parser.add_argument("--top-k", type=int, default=None, help="labels to print (default: 3 for surname, else 1)")
    opts = parser.parse_args(args)
    from rnnlab.predict import predict as classify

    top_k = opts.top_k if opts.top_k is not None else 3 if opts.task == "surname" else 1
    checkpoint = opts.checkpoint or f"models/{opts.task}/model.ckpt"
    for label, probability in classify(opts.task, opts.input, checkpoint, top_k):
        print(f"{label} {probability:.3f}")


def translate(args: list[str]) -> None:
    parser = OneLineParser(prog="rnnlab translate", description="Translate one English sentence into Spanish.")
    parser.add_argument("sentence", help="the English sentence")
    parser.add_argument("--beam", type=int, default=None, help="beam width, 1 = greedy (default: the model's)")
    parser.add_argument("--checkpoint", default="models/translate/model.ckpt", help="default: the pipeline's model")
    opts = parser.parse_args(args)
    if opts.beam is not None and opts.beam < 1:
        parser.error(f"--beam must be >= 1, got {opts.beam}")
    if not opts.sentence.strip():
        parser.error("empty sentence: give an English sentence to translate")
    from rnnlab.checkpoint import load_checkpoint

    model = load_checkpoint(opts.checkpoint, task="translate", kinds=("Seq2SeqTranslator",))
    print(model.translate(opts.sentence, opts.beam))


def gradients(args: list[str]) -> None:
    parser = OneLineParser(prog="rnnlab gradients", description="The gradient lab's DVC stages.")
    parser.add_argument("experiment", choices=["adding", "exploding", "report"])
    parser.add_argument("cell", nargs="?", help="adding only: rnn | lstm | gru")
    parser.add_argument("--params", default="params.yaml")
    opts = parser.parse_args(args)
    if (opts.experiment == "adding") != (opts.cell is not None):
        parser.error("give a CELL for `adding` and only for it")
    from rnnlab import gradient_report
    from rnnlab import gradients as lab

    if opts.experiment == "adding":
        lab.run_adding(opts.cell, opts.params)
    elif opts.experiment == "exploding":
        lab.run_exploding(opts.params)
    else:
        gradient_report.run_report(opts.params)


def compare(args: list[str]) -> None:
    parser = OneLineParser(prog="rnnlab compare", description="Compare the MLflow runs of a task.")
    parser.add_argument("task", help="charlm | sentiment | speaker | surname")
    parser.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE",
                        help="keep runs with this tag, e.g. cell=lstm or role=model (repeatable)")
    parser.add_argument("--metric", help="sort by this metric (default: test_bpc for charlm, else test_accuracy)")
    parser.add_argument("--max-runs", type=int, default=20, help="rows in the table (default: %(default)s)")
    parser.add_argument("--plot", help="the PNG of val_loss curves (default: reports/compare_TASK.png)")
    parser.add_argument("--all", action="store_true", help="also failed, killed and running runs")
    opts = parser.parse_args(args)
    if opts.max_runs < 1:
        parser.error(f"--max-runs must be >= 1, got {opts.max_runs}")
    from rnnlab.compare import run_compare

    run_compare(opts.task, opts.tag, opts.metric, opts.max_runs, opts.plot, opts.all)


def fail(error: Exception) -> None:
    print(f"rnnlab: error: {error}", file=sys.stderr)
    sys.exit(2)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return
    command, rest = argv[0], argv[1:]
    try:
        if command in HYDRA_COMMANDS:
            run_hydra(command, rest)
        elif command == "generate":
            generate(rest)
        elif command == "predict":
            predict(rest)
        elif command == "translate":
            translate(rest)
        elif command == "gradients":
            gradients(rest)
        elif command == "compare":
            compare(rest)
        elif command in ("pull", "preprocess"):
            parser = OneLineParser(prog=f"rnnlab {command}")
            parser.add_argument("task")
            parser.add_argument("--params", default="params.yaml")
            opts = parser.parse_args(rest)
            from rnnlab import stages

            getattr(stages, command)(opts.task, opts.params)
        else:
            print(USAGE, file=sys.stderr)
            fail(RnnlabError(f"unknown command {command!r}"))
    except RnnlabError as e:
        fail(e)


if __name__ == "__main__":
    main()
