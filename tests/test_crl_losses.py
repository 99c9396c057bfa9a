"""The CRL losses on tiny batches, against numbers worked out by hand or in numpy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from expc.runtime.crl import (
    actor_loss,
    alpha_loss,
    categorical_accuracy,
    critic_loss,
    energy,
    q_value,
    squash_log_std,
    tanh_gaussian_sample,
    target_entropy,
)

# phi(s_i, a_i) and psi(g_j) chosen so that the distances are whole numbers.
SA = torch.tensor([[0.0, 0.0], [3.0, 4.0], [1.0, 0.0]], dtype=torch.float64)
G = torch.tensor([[0.0, 0.0], [3.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
# |SA_i - G_j| by hand: row 0: 0, 3, 1; row 1: 5, 4, sqrt(20); row 2: 1, 2, 0.
HAND_LOGITS = -np.array([[0, 3, 1], [5, 4, math.sqrt(20)], [1, 2, 0]], dtype=np.float64)


def numpy_logsumexp(x: np.ndarray) -> np.ndarray:
    m = x.max(axis=1, keepdims=True)
    return (m + np.log(np.exp(x - m).sum(axis=1, keepdims=True)))[:, 0]


def test_energy_is_the_negative_l2_distance() -> None:
    assert np.allclose(energy(SA, G).numpy(), HAND_LOGITS)
    assert np.allclose(q_value(SA, G).numpy(), np.diag(HAND_LOGITS))


def test_critic_loss_on_a_hand_computed_2x2_batch() -> None:
    # logits [[0, -1], [-2, 0]]: row lse = log(1 + e^-1), log(e^-2 + 1).
    logits = torch.tensor([[0.0, -1.0], [-2.0, 0.0]], dtype=torch.float64)
    lse = [math.log(1 + math.exp(-1)), math.log(1 + math.exp(-2))]
    infonce = (lse[0] + lse[1]) / 2  # diagonal logits are 0
    penalty = 0.1 * ((lse[0] + 1e-6) ** 2 + (lse[1] + 1e-6) ** 2) / 2
    loss, mean_lse = critic_loss(logits)
    assert loss.item() == pytest.approx(infonce + penalty, rel=1e-12)
    assert mean_lse.item() == pytest.approx(infonce, rel=1e-12)
    loss0, _ = critic_loss(logits, logsumexp_penalty=0.0)
    assert loss0.item() == pytest.approx(infonce, rel=1e-12)


def test_critic_loss_matches_numpy_on_a_random_batch() -> None:
    rng = np.random.default_rng(0)
    sa, g = rng.normal(size=(6, 4)), rng.normal(size=(6, 4))
    logits = -np.sqrt(((sa[:, None, :] - g[None, :, :]) ** 2).sum(-1))
    lse = numpy_logsumexp(logits)
    expected = -np.mean(np.diag(logits) - lse) + 0.1 * np.mean(numpy_logsumexp(logits + 1e-6) ** 2)
    loss, _ = critic_loss(energy(torch.tensor(sa), torch.tensor(g)))
    assert loss.item() == pytest.approx(expected, rel=1e-10)


def test_critic_gradient_pulls_positives_together() -> None:
    """One gradient step on the representations raises the diagonal's share of each row."""
    sa = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5]], requires_grad=True)
    g = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.4, 0.6]], requires_grad=True)
    before, _ = critic_loss(energy(sa, g))
    before.backward()
    with torch.no_grad():
        sa -= 0.1 * sa.grad
        g -= 0.1 * g.grad
    after, _ = critic_loss(energy(sa, g))
    assert after < before
    assert torch.isfinite(sa.grad).all()


def test_categorical_accuracy() -> None:
    assert categorical_accuracy(torch.tensor(HAND_LOGITS)).item() == 1.0  # each row's max is i
    wrong_row_1 = torch.tensor([[0.0, -3.0, -1.0], [-5.0, -6.0, -4.5], [-1.0, -2.0, 0.0]])
    assert categorical_accuracy(wrong_row_1).item() == pytest.approx(2 / 3)
    assert categorical_accuracy(torch.eye(5)).item() == 1.0
    assert categorical_accuracy(-torch.eye(5)).item() == 0.0


def test_gradients_are_finite_at_zero_distance() -> None:
    sa = torch.zeros(2, 3, requires_grad=True)
    g = torch.zeros(2, 3, requires_grad=True)
    (critic_loss(energy(sa, g))[0] + q_value(sa, g).sum()).backward()
    assert torch.isfinite(sa.grad).all() and torch.isfinite(g.grad).all()


def test_squash_log_std_range() -> None:
    raw = torch.tensor([-1e6, 0.0, 1e6])
    assert torch.allclose(squash_log_std(raw), torch.tensor([-5.0, -1.5, 2.0]))


def test_tanh_gaussian_log_prob_matches_numpy() -> None:
    mean = torch.tensor([[0.3, -1.0], [0.0, 2.0]], dtype=torch.float64)
    log_std = torch.tensor([[-1.0, 0.5], [0.0, -2.0]], dtype=torch.float64)
    noise = torch.tensor([[0.7, -0.2], [-1.5, 0.1]], dtype=torch.float64)
    action, log_prob = tanh_gaussian_sample(mean, log_std, noise)
    m, s, n = mean.numpy(), np.exp(log_std.numpy()), noise.numpy()
    x = m + s * n
    gauss = -0.5 * n**2 - np.log(s) - 0.5 * np.log(2 * np.pi)
    expected = (gauss - np.log(1 - np.tanh(x) ** 2 + 1e-6)).sum(axis=1)
    assert np.allclose(action.numpy(), np.tanh(x))
    assert np.allclose(log_prob.numpy(), expected)


def test_tanh_gaussian_density_integrates_to_one() -> None:
    """exp(log pi(a)) over a in (-1, 1) integrates to ~1: the change of variables is right
    (the 1e-6 in the correction shifts it by far less than the tolerance here)."""
    a = torch.linspace(-0.999999, 0.999999, 400_001, dtype=torch.float64)
    x = torch.atanh(a)
    mean, log_std = torch.tensor(0.4, dtype=torch.float64), torch.tensor(-0.3, dtype=torch.float64)
    noise = (x - mean) / log_std.exp()
    _, log_prob = tanh_gaussian_sample(
        mean.expand(len(a), 1), log_std.expand(len(a), 1), noise[:, None]
    )
    mass = torch.trapezoid(log_prob.exp(), a).item()
    assert mass == pytest.approx(1.0, abs=1e-3)


def test_actor_loss_value_and_gradients() -> None:
    log_prob = torch.tensor([-1.0, 0.5], requires_grad=True)
    q = torch.tensor([-2.0, -4.0], requires_grad=True)
    log_alpha = torch.tensor(math.log(0.5), requires_grad=True)
    loss = actor_loss(log_prob, q, log_alpha)
    assert loss.item() == pytest.approx(((0.5 * -1.0 + 2.0) + (0.5 * 0.5 + 4.0)) / 2)
    loss.backward()
    assert log_alpha.grad is None  # the temperature is a constant for the actor
    assert torch.allclose(log_prob.grad, torch.tensor([0.25, 0.25]))
    assert torch.allclose(q.grad, torch.tensor([-0.5, -0.5]))


def test_alpha_loss_moves_alpha_towards_the_target_entropy() -> None:
    target = target_entropy(action_dim=2)
    assert target == -1.0
    log_alpha = torch.tensor(0.0, requires_grad=True)
    log_prob = torch.tensor([2.0, 4.0], requires_grad=True)  # entropy -3 < target -1
    loss = alpha_loss(log_alpha, log_prob, target)
    # alpha * mean(-log pi - target) = 1 * mean(-2 + 1, -4 + 1) = -2
    assert loss.item() == pytest.approx(-2.0)
    loss.backward()
    assert log_prob.grad is None or torch.all(log_prob.grad == 0)
    assert log_alpha.grad.item() == pytest.approx(-2.0)  # d/dlog_alpha = alpha * (-2)
    # Gradient descent raises alpha when the entropy is too low, lowers it when too high.
    assert (log_alpha - 0.1 * log_alpha.grad).item() > 0
    high_entropy = torch.tensor([-3.0, -5.0])
    assert alpha_loss(torch.tensor(0.0, requires_grad=True), high_entropy, target).item() > 0
