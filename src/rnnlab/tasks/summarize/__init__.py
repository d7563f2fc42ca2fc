"""Text summarization (encoder-decoder with attention and a copy switch): a Debian package's long description ->
the one-line synopsis its maintainer wrote (Debian 12 bookworm `main`, issue 20).

data.py: the two Debian index files fetched by URL with their pinned sha256 (`debian_index`, the spec's own
fetch function), one pair per source package, the boilerplate filter, the split by source package, SentencePiece
on train only; the data module and the model (PointerGenerator, the translator's encoder-decoder with a
pointer-generator switch and its own beam search). evaluate.py: ROUGE-1/2/L and BLEU beside the lead baselines
(baselines.py), the copy statistics, the attention / copy figure and the samples. serve.py: text in, synopsis out
(`rnnlab summarize`, the pyfunc model).
"""

from rnnlab.tasks import Task, register

register(Task(
    name="summarize",
    shape="encoder-decoder",
    summary="a Debian package description -> its one-line synopsis",
    modules=("rnnlab.tasks.summarize.data:PointerGenerator",),
    metric="test_rougeL", higher_is_better=True, val_metric="val_ppl", val_higher_is_better=False,
    # the Debian archive's dists/ index files: no other task reads them, so the fetch function is the task's own
    fetch=".data:debian_index",
    baselines=("lead", "lead_10"),
    serve=".serve:Descriptions",
))
