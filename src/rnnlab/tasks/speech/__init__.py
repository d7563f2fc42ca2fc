"""Speech recognition (many-to-many, unaligned: CTC): recorded Mandarin syllables -> their phones and tone."""

from rnnlab.tasks import Task, register

register(Task(
    name="speech",
    shape="unaligned",
    summary="a recorded Mandarin syllable -> its phones and tone (CTC)",
    modules=("rnnlab.shapes.unaligned:CTCRecognizer", "rnnlab.shapes.unaligned:WindowCTC"),
    metric="test_per", higher_is_better=False, val_metric="val_per", val_higher_is_better=False,
    fetch="debian_package",
    baselines=("window",),
    serve=".serve:Recordings",
))
