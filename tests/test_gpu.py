"""The CUDA path (benchmarks/gpu_check.sh runs these on a GPU machine; without CUDA they are skipped)."""

import pytest
import torch
from torch import nn

from conftest import save_checkpoint, tiny_modules

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.mark.parametrize("cell", [nn.RNN, nn.LSTM, nn.GRU])
def test_cudnn_matches_the_cpu(cell):
    torch.manual_seed(0)
    cpu = cell(16, 32, num_layers=2, batch_first=True, bidirectional=True).double()
    gpu = cell(16, 32, num_layers=2, batch_first=True, bidirectional=True).double().cuda()
    gpu.load_state_dict(cpu.state_dict())
    x = torch.randn(4, 20, 16, dtype=torch.double)
    out_cpu, _ = cpu(x)
    out_gpu, _ = gpu(x.cuda())
    out_cpu.sum().backward()
    out_gpu.sum().backward()
    assert torch.allclose(out_cpu, out_gpu.cpu(), atol=1e-8)
    for a, b in zip(cpu.parameters(), gpu.parameters()):
        assert torch.allclose(a.grad, b.grad.cpu(), atol=1e-7)


def test_a_bf16_training_runs_on_the_gpu():
    from rnnlab.core.trainer import quiet_trainer
    from rnnlab.data.streams import StreamWindows

    model = tiny_modules()["charlm"]
    ids = torch.randint(1, len(model.vocab), (5000,)).numpy()
    loader = torch.utils.data.DataLoader(StreamWindows(ids, 8, 32), batch_size=None, pin_memory=True)
    before = [p.detach().clone() for p in model.parameters()]
    trainer = quiet_trainer(accelerator="gpu", devices=1, precision="bf16-mixed", max_steps=5, limit_val_batches=0)
    trainer.fit(model, train_dataloaders=loader)
    assert next(model.parameters()).is_cuda
    assert all(not torch.equal(b, a.detach().cpu()) for b, a in zip(before, model.parameters()))


def test_loaders_pin_memory_and_checkpoints_load_onto_the_gpu(tmp_path):
    from rnnlab.data.sampling import PIN_MEMORY
    from rnnlab.tasks import load_checkpoint

    assert PIN_MEMORY
    path = save_checkpoint(tiny_modules()["surname"], tmp_path / "surname.ckpt")
    assert next(load_checkpoint(path, task="surname").parameters()).is_cuda
