"""Sentiment of movie-review snippets (many-to-one): words -> negative | positive."""

from rnnlab.tasks import Task, register

register(Task(
    name="sentiment",
    shape="many-to-one",
    summary="movie-review snippet -> negative | positive",
    modules=("rnnlab.shapes.many_to_one:SequenceClassifier", "rnnlab.shapes.one_to_one:BagClassifier"),
    metric="test_accuracy", higher_is_better=True, val_metric="val_acc", val_higher_is_better=True,
    evaluate="rnnlab.evaluation.classify:score",
    fetch="pypi_sdist",
    baselines=("bag", "majority"),
    serve=".serve:Snippets",
    top_k=1,
))
