"""Image captioning (one-to-many): an emoji image -> its Unicode name. The data and the baselines only, so far.

Not registered: a task is registered (rnnlab.tasks.register) with the LightningModules its checkpoints hold and
the test metric they are ranked by, and this one has no model yet. Until it has, `rnnlab.tasks.discover` imports
this package and finds nothing in it, so no layer (the CLI, the DVC stages, params.yaml's `tasks:` map) knows
the task; data.py and baselines.py are used directly (tests/test_caption_data.py, docs/tasks/captioning.md).
"""
