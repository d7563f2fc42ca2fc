"""Character-level language model on Shakespeare (many-to-many, aligned): each character predicts the next."""

from rnnlab.tasks import Task, register

register(Task(
    name="charlm",
    shape="many-to-many",
    summary="Shakespeare, character by character -> the next character",
    modules=("rnnlab.shapes.many_to_many:CharLanguageModel",),
    metric="test_bpc", higher_is_better=False, val_metric="val_bpc", val_higher_is_better=False,
    fetch="pypi_sdist",
    baselines=("kn_ngram",),
    serve=".serve:Prompts",
))
