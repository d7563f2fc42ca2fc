"""Surname generation (one-to-many): a language -> a surname, character by character, until the end symbol.
It reads the surname task's processed data, and its evaluation asks the surname classifier which language
each generated name is."""

from rnnlab.tasks import Task, register

register(Task(
    name="surname_gen",
    shape="one-to-many",
    summary="a language -> new surnames of it, character by character",
    modules=("rnnlab.shapes.one_to_many:SurnameGenerator",),
    metric="test_bpc", higher_is_better=False, val_metric="val_bpc", val_higher_is_better=False,
    fetch="pypi_wheel",
    serve=".serve:Names",
))
