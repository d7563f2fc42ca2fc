"""A callback the tracking-server fault test adds on the command line (+callbacks.kill_server=...): at optimizer
step `step`, SIGKILL the team stack's MLflow server (its whole process group, as a crash or an OOM kill would)."""

import os
import signal
from pathlib import Path

from lightning.pytorch.callbacks import Callback


class KillServerAt(Callback):
    def __init__(self, step: int, pidfile: str):
        self.step, self.pidfile, self.done = step, Path(pidfile), False

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if not self.done and trainer.global_step == self.step:
            os.killpg(int(self.pidfile.read_text()), signal.SIGKILL)
            self.done = True
