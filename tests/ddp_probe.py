"""A callback tests/test_ddp.py adds on the command line: after the first optimizer step each DDP process
writes a checksum of its parameters to $RNNLAB_PROBE_DIR/rank<N>.json."""

import json
import os
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback


class ParamProbe(Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == 1:
            flat = torch.cat([p.detach().flatten().double() for p in pl_module.parameters()])
            out = Path(os.environ["RNNLAB_PROBE_DIR"]) / f"rank{trainer.global_rank}.json"
            out.write_text(json.dumps({"world_size": trainer.world_size, "sum": flat.sum().item(),
                                       "norm": flat.norm().item(), "first": flat[:8].tolist()}))
