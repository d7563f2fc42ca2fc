"""English -> Spanish verse translation (encoder-decoder with attention): King James Version -> Reina-Valera 1909."""

from rnnlab.tasks import Task, register

register(Task(
    name="translate",
    shape="encoder-decoder",
    summary="an English verse -> Spanish (KJV -> Reina-Valera 1909)",
    modules=("rnnlab.shapes.seq2seq:Seq2SeqTranslator",),
    metric="test_bleu", higher_is_better=True, val_metric="val_ppl", val_higher_is_better=False,
    fetch="debian_package",
    baselines=("copy_source",),
    serve=".serve:Sentences",
))
