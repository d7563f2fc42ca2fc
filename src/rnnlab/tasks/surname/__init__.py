"""Surname -> language (many-to-one): characters -> one of 14 languages."""

from rnnlab.tasks import Task, register

register(Task(
    name="surname",
    shape="many-to-one",
    summary="surname -> its language (14)",
    modules=("rnnlab.shapes.many_to_one:SequenceClassifier", "rnnlab.shapes.one_to_one:BagClassifier"),
    metric="test_accuracy", higher_is_better=True, val_metric="val_acc", val_higher_is_better=True,
    evaluate="rnnlab.evaluation.classify:score",
    fetch="pypi_wheel",
    baselines=("bag", "majority"),
    serve=".serve:Surnames",
    top_k=3,
))
