"""The stacked twin critic: each member is an ordinary MLP, independent of the others."""

import torch

from spar_rectify.networks import EnsembleMLP


def member(ens: EnsembleMLP, j: int, x: torch.Tensor) -> torch.Tensor:
    """Member j evaluated by hand: relu(x W + b) layer by layer, linear output."""
    last = len(ens.weights) - 1
    for i, (w, b) in enumerate(zip(ens.weights, ens.biases)):
        x = x @ w[j] + b[j]
        x = torch.relu(x) if i < last else x
    return x


def test_members_match_hand_computed_mlps_for_shared_and_per_member_inputs():
    torch.manual_seed(0)
    ens = EnsembleMLP(3, 5, 2, (7, 4))
    x = torch.randn(6, 5)
    out = ens(x)
    assert out.shape == (3, 6, 2)
    for j in range(3):
        torch.testing.assert_close(out[j], member(ens, j, x))
    xs = torch.randn(3, 6, 5)  # one input batch per member
    out = ens(xs)
    for j in range(3):
        torch.testing.assert_close(out[j], member(ens, j, xs[j]))


def test_members_are_independent_in_the_backward_pass():
    torch.manual_seed(0)
    ens = EnsembleMLP(2, 4, 1, (8,))
    ens(torch.randn(10, 4))[1].sum().backward()  # a loss on member 1 only
    for p in [*ens.weights, *ens.biases]:
        assert torch.all(p.grad[0] == 0) and torch.any(p.grad[1] != 0)


def test_members_start_different():
    ens = EnsembleMLP(2, 4, 1, (8,))
    assert not torch.equal(ens.weights[0][0], ens.weights[0][1])
