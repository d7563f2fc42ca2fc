import pytest
import torch

from rnnlab.gradients.synthetic import adding_problem


@pytest.mark.parametrize("steps", [2, 25, 101])
def test_adding_target_is_the_sum_of_the_marked_values(steps):
    x, y = adding_problem(500, steps, seed=3)
    assert x.shape == (500, steps, 2) and y.shape == (500,)
    markers = x[..., 1]
    assert torch.equal(markers.sum(1), torch.full((500,), 2.0))
    half = steps // 2
    assert torch.equal(markers[:, :half].sum(1), torch.ones(500))  # one marker in each half
    torch.testing.assert_close(y, (x[..., 0] * markers).sum(1))


def test_adding_is_seeded_and_the_trivial_baseline_is_one_sixth():
    x1, y1 = adding_problem(20000, 50, seed=0)
    x2, y2 = adding_problem(20000, 50, seed=0)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert float(((y1 - 1.0) ** 2).mean()) == pytest.approx(1 / 6, abs=0.01)
    with pytest.raises(ValueError, match="at least 2 steps"):
        adding_problem(10, 1)
