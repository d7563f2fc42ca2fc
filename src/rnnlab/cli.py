"""The `rnnlab` command: pull, preprocess, train, evaluate, register, seeds, generate, predict, compare, serve.

The tasks, their list in the help text and which of them each command takes come from the task registry
(rnnlab.tasks)."""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from pathlib import Path

from rnnlab import RnnlabError

# the config's resolvers, registered before Hydra composes a config; at module level, not in run_hydra: a joblib
# sweep's worker process imports this module (to unpickle the task function) and composes its job's config
from rnnlab.core import resolvers  # noqa: F401
from rnnlab.core.config import config_dir

HYDRA_COMMANDS = ("train", "evaluate", "register", "seeds")
USAGE = """usage: rnnlab COMMAND [ARGS]

  pull TASK                 fetch and verify the task's raw data into data/raw/TASK (DVC stage)
  preprocess TASK           split, build the vocabulary, encode into data/processed/TASK (DVC stage)
  train [OVERRIDES]         fit a model; Hydra overrides, e.g. task=surname model=gru, -m for sweeps
  evaluate [OVERRIDES]      score the pipeline's model on the test split (DVC stage)
  register [OVERRIDES]      register the evaluated model in MLflow, the champion gate decides (DVC stage)
  seeds +seeds=N [OVERR.]   train and test N seeds: each score's mean and sd, metrics/TASK_seeds.json (DVC stage)
  tasks [--json]            the registered tasks: name, sequence shape, test metric
  generate [charlm] [...]   sample text from the character model: --prompt, --length, --temperature
  generate surname ...      sample surnames of a language: --language L [-n N] [--temperature T]
  predict TASK INPUT        classify one raw input: sentiment TEXT | surname NAME | speaker FILE.csv | ...
  translate SENTENCE        English -> Spanish with the trained translator (--beam N, --checkpoint PATH)
  transcribe FILE           a recorded Mandarin syllable (wav, ogg, flac) -> its phones, zhuyin, pinyin
  caption IMAGE             an image (PNG, JPEG; an emoji) -> its best captions with their probabilities


  summarize TEXT            a package description -> its one-line synopsis (--file PATH, --beam N)
  gradients adding CELL     the adding problem at every length of params.yaml gradients.adding (DVC stage)
  gradients exploding       a relu RNN without and with gradient clipping (DVC stage)
  gradients report          gradient lab metrics, plots and figures (DVC stage)
  compare TASK [--tag K=V]  the task's MLflow runs sorted by its metric, and a PNG of their val_loss curves
  serve TASK [--port N]     serve rnnlab-TASK@champion over HTTP on 127.0.0.1 (POST /invocations)
"""


def usage() -> str:
    """USAGE and the registered tasks (rnnlab.tasks), each with its sequence shape."""
    from rnnlab import tasks

    rows = [f"  {t.name:<12} {t.shape:<16} {t.summary}" for t in map(tasks.get, tasks.names())]
    return USAGE + "\ntasks (TASK, or task=TASK for the Hydra commands):\n" + "\n".join(rows) + "\n"


def task_names(kind: str = "") -> str:
    """"a | b | c": every registered task, or those `predict` / `serve` take."""
    from rnnlab import tasks

    if kind == "predict":
        from rnnlab.serving.predict import classifiers

        return " | ".join(classifiers())
    return " | ".join(t for t in tasks.names() if kind != "serve" or tasks.get(t).serve)


def stage(command: str):
    """The entry point of a Hydra command, its module imported alone: each is a DVC stage's process, and
    register needs neither the training loop nor the evaluators (their imports cost seconds a process)."""
    if command == "train":
        from rnnlab.pipeline.train import train

        return train
    if command == "evaluate":
        from rnnlab.pipeline.evaluate import run_evaluate

        return run_evaluate
    if command == "seeds":
        from rnnlab.pipeline.seeds import run_seeds

        return run_seeds
    from rnnlab.pipeline.register import run_register

    return run_register


def run_hydra(command: str, args: list[str]) -> None:
    import hydra
    from hydra.errors import InstantiationException

    entry = stage(command)

    def task(cfg):
        try:
            result = entry(cfg)
            scores = None if command == "register" else result  # register returns its decision, not scores
            if cfg.get("optimized_metric"):  # a sweeper (conf/hparams_search/) tunes on the value returned
                return optimized_value(scores, cfg.optimized_metric)
        except RnnlabError as e:
            fail(e)
        except InstantiationException as e:  # an object hydra builds (the data module) refused its input
            if isinstance(e.__cause__, RnnlabError):
                fail(e.__cause__)
            raise
        except Exception as e:
            lost = lost_server(e, command)
            if lost is None:
                raise
            fail(lost)

    sys.argv = [f"rnnlab {command}", *args]
    hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")(task)()


def lost_server(error: BaseException, command: str) -> RnnlabError | None:
    """A tracking server that went away mid-command (killed, restarted, unplugged): MLflow's client retried
    (MLFLOW_HTTP_REQUEST_MAX_RETRIES, exponential backoff) and gave up. One line naming the server instead of the
    chained tracebacks; the training's resume checkpoint stays, so the same command resumes once it is back."""
    import requests
    from mlflow.exceptions import MlflowException

    from rnnlab.core.tracking import redact, tracking_uri

    uri = tracking_uri()
    if not uri.startswith(("http://", "https://")):
        return None
    seen: BaseException | None = error
    while seen is not None:
        gone = isinstance(seen, requests.ConnectionError) or (
            isinstance(seen, MlflowException) and any(s in str(seen) for s in ("Max retries exceeded", "Connection refused")))
        if gone:
            return RnnlabError(f"MLflow tracking server {redact(uri)} stopped answering during rnnlab {command} "
                               f"({type(seen).__name__}); start it again and re-run the same command (a training "
                               "resumes from its last checkpoint into a new run linked to this one)")
        seen = seen.__cause__ or seen.__context__
    return None


def optimized_value(scores: dict, name: str) -> float:
    from rnnlab.evaluation import flatten

    flat = flatten(scores)
    if name not in flat:
        raise RnnlabError(f"optimized_metric {name!r} is not among the scores: {', '.join(sorted(flat))}")
    return flat[name]


class OneLineParser(argparse.ArgumentParser):
    """Bad arguments get one line on stderr and exit code 2 (argparse adds a usage block)."""

    def error(self, message):
        fail(RnnlabError(f"{self.prog}: {message}"))


GENERATORS = ("charlm", "surname")


def check_temperature(parser: argparse.ArgumentParser, temperature: float) -> None:
    if not (math.isfinite(temperature) and temperature >= 0):
        parser.error(f"--temperature must be >= 0 and finite, got {temperature}")


def generate(args: list[str]) -> None:
    """`rnnlab generate charlm ...` (text; `charlm` may be left out) or `rnnlab generate surname ...` (names)."""
    if args and args[0] == "surname":
        generate_surnames(args[1:])
        return
    if args and not args[0].startswith("-") and args[0] != "charlm":
        fail(RnnlabError(f"rnnlab generate: unknown model {args[0]!r}; choose one of {', '.join(GENERATORS)}"))
    generate_text(args[1:] if args and args[0] == "charlm" else args)


def sampling_options(parser: argparse.ArgumentParser, checkpoint: str) -> argparse.ArgumentParser:
    """What every sampling command takes: temperature, checkpoint and seed."""
    parser.add_argument("--temperature", type=float, default=0.8, help="0 is greedy (default: %(default)s)")
    parser.add_argument("--checkpoint", default=checkpoint, help="default: the pipeline's model")
    parser.add_argument("--seed", type=int, default=None, help="seed for reproducible samples")
    return parser


def generate_text(args: list[str]) -> None:
    parser = OneLineParser(prog="rnnlab generate charlm", description="Sample text from a character model.")
    parser.add_argument("--prompt", default="ROMEO:", help="text to continue (default: %(default)s)")
    parser.add_argument("--length", type=int, default=400, help="characters to add (default: %(default)s)")
    opts = sampling_options(parser, "models/charlm/model.ckpt").parse_args(args)
    if opts.length < 0:
        parser.error(f"--length must be >= 0, got {opts.length}")
    check_temperature(parser, opts.temperature)
    from rnnlab.tasks import load_checkpoint

    model = load_checkpoint(opts.checkpoint, kinds=("CharLanguageModel",))
    print(model.generate(opts.prompt, opts.length, opts.temperature, seed=opts.seed))


def generate_surnames(args: list[str]) -> None:
    parser = OneLineParser(prog="rnnlab generate surname", description="Sample surnames of a language.")
    parser.add_argument("--language", required=True, help="one of the languages the model was trained on")
    parser.add_argument("-n", type=int, default=10, help="how many names (default: %(default)s)")
    parser.add_argument("--max-length", type=int, default=None, help="characters at most (default: the model's)")
    opts = sampling_options(parser, "models/surname_gen/model.ckpt").parse_args(args)
    if opts.n < 1:
        parser.error(f"-n must be >= 1, got {opts.n}")
    check_temperature(parser, opts.temperature)
    if opts.max_length is not None and opts.max_length < 1:
        parser.error(f"--max-length must be >= 1, got {opts.max_length}")
    from rnnlab.tasks import load_checkpoint

    model = load_checkpoint(opts.checkpoint, task="surname_gen", kinds=("SurnameGenerator",))
    for name in model.generate(opts.language, opts.n, opts.temperature, seed=opts.seed, max_length=opts.max_length):
        print(name)


def predict(args: list[str]) -> None:
    parser = OneLineParser(prog="rnnlab predict", description="Classify one raw input with a trained model.")
    parser.add_argument("task", help=task_names("predict"))
    parser.add_argument("input", help="the text, the surname, or a CSV file of frames x 12 values (speaker)")
    parser.add_argument("--checkpoint", help="default: the pipeline's models/TASK/model.ckpt")
    parser.add_argument("--top-k", type=int, default=None, help="labels to print (default: the task's top_k)")
    opts = parser.parse_args(args)
    from rnnlab import tasks
    from rnnlab.serving.predict import classifiers
    from rnnlab.serving.predict import predict as classify

    if opts.task not in classifiers():
        parser.error(f"unknown task {opts.task!r}; choose one of {', '.join(classifiers())}")
    top_k = opts.top_k if opts.top_k is not None else tasks.get(opts.task).top_k
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
    from rnnlab.tasks import load_checkpoint

    model = load_checkpoint(opts.checkpoint, task="translate", kinds=("Seq2SeqTranslator",))
    print(model.translate(opts.sentence, opts.beam))


def transcribe(args: list[str]) -> None:
    parser = OneLineParser(prog="rnnlab transcribe",
                           description="Transcribe one recorded Mandarin syllable: its phones, zhuyin and pinyin.")
    parser.add_argument("file", help="the recording: wav, ogg or flac, at most 2 s (another rate is resampled, "
                                     "stereo mixed down)")
    parser.add_argument("--beam", type=int, default=None, help="beam width, 1 = greedy (default: the model's)")
    parser.add_argument("--checkpoint", default="models/speech/model.ckpt", help="default: the pipeline's model")
    opts = parser.parse_args(args)
    if opts.beam is not None and opts.beam < 1:
        parser.error(f"--beam must be >= 1, got {opts.beam}")
    from rnnlab.tasks import load_checkpoint
    from rnnlab.tasks.speech.serve import transcribe as run

    model = load_checkpoint(opts.checkpoint, task="speech", kinds=("CTCRecognizer", "WindowCTC"))
    out = run(model, opts.file, opts.file, opts.beam)
    for key in ("phones", "tone", "zhuyin", "pinyin"):
        print(f"{key:<11} {out[key] or '(not a syllable)'}")
    print(f"{'confidence':<11} {out['confidence']:.3f}")


def caption(args: list[str]) -> None:
    parser = OneLineParser(prog="rnnlab caption", description="Caption one image with the trained captioner.")
    parser.add_argument("image", help="a PNG or JPEG file; not 64x64: scaled to fit, grey, palette or no alpha: "
                                      "converted to RGBA")
    parser.add_argument("-n", type=int, default=3, help="captions to print, best first (default: %(default)s)")
    parser.add_argument("--beam", type=int, default=None, help="beam width, at least -n (default: the model's)")
    parser.add_argument("--checkpoint", default="models/caption/model.ckpt", help="default: the pipeline's model")
    opts = parser.parse_args(args)
    if opts.n < 1 or (opts.beam is not None and opts.beam < 1):
        parser.error(f"-n and --beam must be >= 1, got {opts.n} and {opts.beam}")
    from rnnlab.tasks import load_checkpoint
    from rnnlab.tasks.caption.serve import read_file

    image = read_file(opts.image)  # before the model loads: bad input fails fast
    model = load_checkpoint(opts.checkpoint, task="caption", kinds=("Captioner",))
    for text, probability in model.captions(image, opts.n, opts.beam):
        print(f"{probability:.3g} {text}")  # .3g: an unsure model's probabilities are tiny, not 0.000


def summarize(args: list[str]) -> None:
    parser = OneLineParser(prog="rnnlab summarize",
                           description="Summarize a package description in one line, as a Debian synopsis.")
    parser.add_argument("text", nargs="?", help="the description (or --file)")
    parser.add_argument("--file", help="read the description from this UTF-8 text file")
    parser.add_argument("--beam", type=int, default=None, help="beam width, 1 = greedy (default: the model's)")
    parser.add_argument("--checkpoint", default="models/summarize/model.ckpt", help="default: the pipeline's model")
    opts = parser.parse_args(args)
    if (opts.text is None) == (opts.file is None):
        parser.error("give the text or --file PATH, not both")
    if opts.beam is not None and opts.beam < 1:
        parser.error(f"--beam must be >= 1, got {opts.beam}")
    from rnnlab.tasks.summarize.serve import read_file, truncation_note
    from rnnlab.tasks.summarize.serve import summarize as run

    text = read_file(opts.file) if opts.file else opts.text
    if not text.strip():  # before loading the model: the error costs no time
        parser.error(f"empty text{' in ' + opts.file if opts.file else ''}: give a package description to summarize")
    from rnnlab.tasks import load_checkpoint

    model = load_checkpoint(opts.checkpoint, task="summarize", kinds=("PointerGenerator",))
    out = run(model, text, opts.beam)
    if out["truncated"]:
        print(truncation_note(out), file=sys.stderr)
    print(out["synopsis"])


def gradients(args: list[str]) -> None:
    parser = OneLineParser(prog="rnnlab gradients", description="The gradient lab's DVC stages.")
    parser.add_argument("experiment", choices=["adding", "exploding", "report"])
    parser.add_argument("cell", nargs="?", help="adding only: rnn | lstm | gru")
    parser.add_argument("--params", default="params.yaml")
    opts = parser.parse_args(args)
    if (opts.experiment == "adding") != (opts.cell is not None):
        parser.error("give a CELL for `adding` and only for it")
    from rnnlab.gradients import lab
    from rnnlab.gradients import report as gradient_report

    if opts.experiment == "adding":
        lab.run_adding(opts.cell, opts.params)
    elif opts.experiment == "exploding":
        lab.run_exploding(opts.params)
    else:
        gradient_report.run_report(opts.params)


def compare(args: list[str]) -> None:
    parser = OneLineParser(prog="rnnlab compare", description="Compare the MLflow runs of a task.")
    parser.add_argument("task", help=task_names())
    parser.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE",
                        help="keep runs with this tag, e.g. cell=lstm or role=model (repeatable)")
    parser.add_argument("--metric", help="sort by this metric (default: the task's test metric, `rnnlab tasks`)")
    parser.add_argument("--max-runs", type=int, default=20, help="rows in the table (default: %(default)s)")
    parser.add_argument("--plot", help="the PNG of val_loss curves (default: reports/compare_TASK.png)")
    parser.add_argument("--all", action="store_true", help="also failed, killed and running runs")
    opts = parser.parse_args(args)
    if opts.max_runs < 1:
        parser.error(f"--max-runs must be >= 1, got {opts.max_runs}")
    from rnnlab.serving.compare import run_compare

    run_compare(opts.task, opts.tag, opts.metric, opts.max_runs, opts.plot, opts.all)


def serve(args: list[str]) -> None:
    parser = OneLineParser(prog="rnnlab serve", description="Serve a registered model with MLflow's scoring server.")
    parser.add_argument("task", help=task_names("serve"))
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--alias", default="champion", help="the registered version to serve (default: %(default)s)")
    which.add_argument("--version", type=int, help="serve this version number instead of the alias")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: %(default)s, this machine only)")
    parser.add_argument("--port", type=int, default=5001, help="default: %(default)s")
    opts = parser.parse_args(args)
    if not 0 < opts.port < 65536:
        parser.error(f"--port must be 1-65535, got {opts.port}")
    from rnnlab.core.tracking import check_reachable, redact, tracking_uri
    from rnnlab.serving.registry import model_uri, serve_command

    check_reachable(tracking_uri())  # MLflow's client retries a server that does not answer for minutes
    uri = model_uri(opts.task, tracking_uri(), opts.alias, opts.version)
    command = serve_command(uri, opts.host, opts.port)
    print(f"serving {uri} from {redact(tracking_uri())} on http://{opts.host}:{opts.port}/invocations", flush=True)
    # the server replaces this process: signals (and a process-group kill) reach it directly
    # MLflow starts uvicorn by name: this environment's bin/ first, as when the venv is activated
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    os.execve(command[0], command, {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri(), "PATH": path})


def list_tasks(args: list[str]) -> None:
    """`rnnlab tasks`: one line per registered task; --json for scripts (.ci/pipeline)."""
    parser = OneLineParser(prog="rnnlab tasks", description="The registered tasks.")
    parser.add_argument("--json", action="store_true", help="a JSON list of the tasks' specs")
    opts = parser.parse_args(args)
    import json

    from rnnlab import tasks

    specs = [tasks.get(name) for name in tasks.names()]
    if opts.json:
        print(json.dumps([{k: v for k, v in vars(t).items() if k != "package"} for t in specs], indent=1))
        return
    for t in specs:
        metric = f"{t.metric} ({'higher' if t.higher_is_better else 'lower'} is better)"
        print(f"{t.name:<12} {t.shape:<16} {metric:<34} {t.summary}")


def fail(error: Exception) -> None:
    print(f"rnnlab: error: {error}", file=sys.stderr)
    sys.exit(2)


COMMANDS = {"generate": generate, "predict": predict, "translate": translate, "transcribe": transcribe,
            "caption": caption, "summarize": summarize, "gradients": gradients, "compare": compare, "serve": serve,
            "tasks": list_tasks}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return
    command, rest = argv[0], argv[1:]
    # the library's messages (progress, where files went) go through logging to stderr; results stay on stdout.
    # The Hydra commands (train, evaluate, register, seeds) configure logging as Hydra does (console and a log file).
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        if command in HYDRA_COMMANDS:
            run_hydra(command, rest)
        elif command in COMMANDS:
            COMMANDS[command](rest)
        elif command in ("pull", "preprocess"):
            parser = OneLineParser(prog=f"rnnlab {command}")
            parser.add_argument("task")
            parser.add_argument("--params", default="params.yaml")
            opts = parser.parse_args(rest)
            from rnnlab.pipeline import prepare as stages

            getattr(stages, command)(opts.task, opts.params)
        else:
            print(usage(), file=sys.stderr)
            fail(RnnlabError(f"unknown command {command!r}"))
    except RnnlabError as e:
        fail(e)


if __name__ == "__main__":
    main()
