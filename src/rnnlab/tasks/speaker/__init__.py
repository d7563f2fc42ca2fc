"""Speaker identification on Japanese Vowels (many-to-one): 12 LPC cepstrum channels per frame -> one of 9 speakers."""

from rnnlab.tasks import Task, register

register(Task(
    name="speaker",
    shape="many-to-one",
    summary="utterance (frames x 12 LPC cepstra) -> one of 9 speakers",
    modules=("rnnlab.shapes.many_to_one:SequenceClassifier", "rnnlab.shapes.one_to_one:BagClassifier"),
    metric="test_accuracy", higher_is_better=True, val_metric="val_acc", val_higher_is_better=True,
    evaluate="rnnlab.evaluation.classify:score",
    fetch="pypi_wheel",
    baselines=("bag", "majority"),
    serve=".serve:Utterances",
    top_k=1,
))
