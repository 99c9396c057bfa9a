"""GRPO: group-normalised advantages, the clipped objective with and without the KL term on a
hand-computed batch, completion masks, and the pieces together raising a reward."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import MINIMAL, compile_text, import_generated

from expc.runtime.rlvr.grpo import (
    completion_mask,
    group_advantages,
    grpo_loss,
    token_logprobs,
)
from expc.runtime.sampling import generate


def test_advantages_are_normalised_within_each_group() -> None:
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 1.0]])
    advantages = group_advantages(rewards, eps=0.0 + 1e-12)
    # Row 1: mean 0.5, unbiased std sqrt(4 * 0.25 / 3).
    std = math.sqrt(1 / 3)
    expected_1 = [0.5 / std, -0.5 / std, -0.5 / std, 0.5 / std]
    # Row 3: mean 0.25, unbiased std sqrt((3 * 0.0625 + 0.5625) / 3) = 0.5.
    expected_3 = [-0.5, -0.5, -0.5, 1.5]
    torch.testing.assert_close(advantages[0], torch.tensor(expected_1))
    torch.testing.assert_close(advantages[1], torch.zeros(4))  # all equal: no signal
    torch.testing.assert_close(advantages[2], torch.tensor(expected_3))
    with pytest.raises(ValueError):
        group_advantages(torch.ones(4))


def test_completion_mask_ends_at_the_first_stop_token() -> None:
    completions = torch.tensor([[5, 10, 10, 10], [5, 6, 7, 8], [10, 10, 10, 10], [1, 10, 2, 10]])
    expected = [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 0, 0]]
    assert completion_mask(completions, 10).tolist() == expected
    assert completion_mask(completions, None).sum() == 16


# A hand-computed batch: two completions of three tokens, the second one two tokens long.
LOGP_OLD = torch.tensor([[-1.0, -1.0, -1.0], [-2.0, -2.0, -2.0]])
SHIFT = torch.tensor([[0.1, 0.5, 0.0], [-0.5, 0.1, 9.9]])  # log pi_theta - log pi_old
MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
ADVANTAGES = torch.tensor([1.0, -2.0])


def hand_objective() -> float:
    e = math.exp
    # Completion 1, A = +1: ratios e^0.1 (inside), e^0.5 (clipped to 1.2), 1.
    first = (e(0.1) + 1.2 + 1.0) / 3
    # Completion 2, A = -2: ratio e^-0.5 < 0.8, so min(rho A, 0.8 A) = -1.6; then e^0.1 * -2.
    second = (-1.6 + -2.0 * e(0.1)) / 2
    return (first + second) / 2


def test_clipped_objective_on_a_hand_computed_batch() -> None:
    parts = grpo_loss(LOGP_OLD + SHIFT, LOGP_OLD, ADVANTAGES, MASK, clip_eps=0.2)
    assert parts.loss.item() == pytest.approx(-hand_objective(), abs=1e-6)
    assert parts.clip_fraction == pytest.approx(2 / 5)  # e^0.5 and e^-0.5 of 5 real tokens
    assert parts.kl == 0.0
    ratios = [math.exp(0.1), math.exp(0.5), 1.0, math.exp(-0.5), math.exp(0.1)]
    assert parts.ratio == pytest.approx(sum(ratios) / 5, abs=1e-6)


def test_kl_penalty_is_the_k3_estimator() -> None:
    logp = LOGP_OLD + SHIFT
    parts = grpo_loss(
        logp, LOGP_OLD, ADVANTAGES, MASK, clip_eps=0.2, kl_beta=0.1, logp_ref=LOGP_OLD
    )

    def k3(shift: float) -> float:  # log(pi_ref / pi_theta) = -shift
        return math.exp(-shift) - (-shift) - 1

    kl_first = (k3(0.1) + k3(0.5) + k3(0.0)) / 3
    kl_second = (k3(-0.5) + k3(0.1)) / 2
    expected = -(hand_objective() - 0.1 * (kl_first + kl_second) / 2)
    assert parts.loss.item() == pytest.approx(expected, abs=1e-6)
    assert parts.kl == pytest.approx((3 * kl_first + 2 * kl_second) / 5, abs=1e-6)
    with pytest.raises(ValueError, match="reference"):
        grpo_loss(logp, LOGP_OLD, ADVANTAGES, MASK, kl_beta=0.1)


def test_gradient_is_the_policy_gradient_on_policy_and_zero_when_clipped() -> None:
    logp = LOGP_OLD.clone().requires_grad_(True)
    grpo_loss(logp, LOGP_OLD, ADVANTAGES, MASK).loss.backward()
    # At ratio 1: d(-J)/d logp_t = -A_i / (|o_i| * batch) on the completion's tokens.
    expected = torch.tensor([[-1 / 6, -1 / 6, -1 / 6], [2 / 4, 2 / 4, 0.0]])
    torch.testing.assert_close(logp.grad, expected)
    # A token already pushed past 1 + eps with A > 0 gets no gradient.
    logp = (LOGP_OLD + SHIFT).requires_grad_(True)
    grpo_loss(logp, LOGP_OLD, ADVANTAGES, MASK).loss.backward()
    assert logp.grad[0, 1] == 0 and logp.grad[0, 0] != 0
    assert logp.grad[1, 0] == 0  # ratio e^-0.5 < 1 - eps with A < 0: clipped too
    assert logp.grad[1, 2] == 0  # masked out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    model_module, _ = import_generated(compile_text(MINIMAL).files, tmp_path_factory.mktemp("g"))
    return model_module


def test_token_logprobs_are_the_sampling_distribution(tiny) -> None:
    torch.manual_seed(0)
    model = tiny.Transformer(tiny.ModelConfig())
    prompts = torch.randint(0, 256, (2, 3))
    completions = torch.randint(0, 256, (2, 4))
    logp = token_logprobs(model, prompts, completions, temperature=0.5)
    logits, _ = model(torch.cat((prompts, completions), dim=1))
    # The first completion token is predicted at the prompt's last position.
    expected = torch.log_softmax(logits[1, 2] / 0.5, dim=-1)[completions[1, 0]]
    assert logp.shape == (2, 4)
    assert logp[1, 0].item() == pytest.approx(expected.item(), abs=1e-5)


def test_the_pieces_make_a_working_grpo_loop(tiny) -> None:
    """Sampling, masks, group advantages, log-probabilities and the clipped loss, put
    together as the generated RLVRTraining.step does: the reward (first byte below 64, about a
    quarter at init) rises to nearly 1."""
    torch.manual_seed(0)
    policy = tiny.Transformer(tiny.ModelConfig())
    optimizer = torch.optim.Adam(policy.parameters(), lr=0.02)
    prompts = torch.randint(0, 256, (4, 3), generator=torch.Generator().manual_seed(1))
    prompts = prompts.repeat_interleave(8, dim=0)  # a group of 8 per prompt
    generator = torch.Generator().manual_seed(2)
    rewards_seen = []
    for _ in range(25):
        completions = generate(policy, prompts, 2, generator=generator)
        mask = completion_mask(completions, None)
        rewards = (completions[:, 0] < 64).float().view(4, 8)
        advantages = group_advantages(rewards).flatten()
        with torch.no_grad():
            logp_old = token_logprobs(policy, prompts, completions)
        for _ in range(2):
            logp = token_logprobs(policy, prompts, completions)
            loss = grpo_loss(logp, logp_old, advantages, mask).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        rewards_seen.append(rewards.mean().item())
    assert sum(rewards_seen[:3]) / 3 < 0.5
    assert sum(rewards_seen[-3:]) / 3 > 0.9
