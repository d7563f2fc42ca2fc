"""A callback the kill tests add on the command line (+callbacks.kill=...): SIGKILL this process at a chosen
point, as an out-of-memory killer or a pulled plug would; nothing of the process gets to clean up."""

import os
import signal

from lightning.pytorch.callbacks import Callback


class KillAt(Callback):
    """during=train: before the training batch that would make optimizer step `step`; during=validation:
    inside the first validation that starts at or after `step`."""

    def __init__(self, step: int, during: str = "train"):
        self.step, self.during = step, during

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.during == "train" and trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if self.during == "validation" and not trainer.sanity_checking and trainer.global_step >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)
