"""Image captioning (one-to-many): a 64x64 emoji image -> its Unicode name ("woman biking: medium-dark skin tone").

The images come from two npm packages and the names from a Debian package, so each entry of params.yaml's
tasks.caption.data.source.packages names its own source function (`fetch`: npm_tarball or debian_package), and the
spec's fetch is the task's own dispatcher. The model and its data module are in data.py (see the note there)."""

from rnnlab.tasks import Task, register

register(Task(
    name="caption",
    shape="one-to-many",
    summary="a 64x64 emoji image -> its Unicode name (CNN + attention decoder)",
    modules=("rnnlab.tasks.caption.data:Captioner",),
    metric="test_full_bleu", higher_is_better=True, val_metric="val_bleu", val_higher_is_better=True,
    fetch=".data:fetch_package",
    baselines=("constant", "nearest"),
    serve=".serve:Images",
))
