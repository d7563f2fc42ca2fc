"""Text summarization (issue 20), the data side only: Debian package descriptions -> their one-line synopsis.

NOT REGISTERED YET: there is no model, so this package calls no `register()`; `rnnlab tasks`, the CLI, the DVC
stages (params.yaml's `tasks:` map) and every other layer do not know it. `rnnlab.tasks.discover()` imports
every package in this folder and keeps what registers itself, so a package that registers nothing is simply
not a task: listing, dispatch and the stage dependencies are unchanged.

What exists: `data.py` (fetch the two Debian index files by URL with their pinned sha256, one pair per source
package, the boilerplate filter and the word window, the split by a hash of the source package's name, a
SentencePiece model trained on train only) and `baselines.py` (the two lead baselines, ROUGE and BLEU).
Registering it needs the model, its evaluator and serve adapter, and a spec here, e.g.:

    register(Task(name="summarize", shape="encoder-decoder", summary="a package description -> its synopsis",
                  modules=(...,), metric="test_rougeL", higher_is_better=True, val_metric="val_ppl",
                  val_higher_is_better=False, fetch="debian_index", baselines=("lead", "lead_10")))

with `debian_index` moved from data.py into rnnlab.core.sources (whose functions a spec's `fetch` names).
"""
