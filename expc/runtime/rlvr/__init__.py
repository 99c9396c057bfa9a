"""RLVR (Yue et al.): verifiable tasks, pass@k, GRPO, and the pretrain / RL / evaluation pieces
that generated code for `specs/rlvr_passk.exp` uses."""

from expc.runtime.rlvr.grpo import (
    LossParts,
    completion_mask,
    group_advantages,
    grpo_loss,
    token_logprobs,
)
from expc.runtime.rlvr.passk import (
    coverage,
    crossover_k,
    pass_at_k,
    pass_at_k_curve,
    powers_of_two,
)
from expc.runtime.rlvr.report import passk_summary, write_passk
from expc.runtime.rlvr.stages import (
    count_correct,
    demonstration_batch,
    demonstration_text,
    demonstration_tokens,
    masked_next_token_loss,
    reward,
    solution_batch,
)
from expc.runtime.rlvr.tasks import (
    STOP_TOKEN,
    ArithmeticTask,
    Problem,
    decode,
    encode,
    extract_answer,
    verify,
    worked_solution,
)

__all__ = [
    "STOP_TOKEN",
    "ArithmeticTask",
    "LossParts",
    "Problem",
    "completion_mask",
    "count_correct",
    "coverage",
    "crossover_k",
    "decode",
    "demonstration_batch",
    "demonstration_text",
    "demonstration_tokens",
    "solution_batch",
    "encode",
    "extract_answer",
    "group_advantages",
    "grpo_loss",
    "masked_next_token_loss",
    "pass_at_k",
    "pass_at_k_curve",
    "passk_summary",
    "powers_of_two",
    "reward",
    "token_logprobs",
    "verify",
    "worked_solution",
    "write_passk",
]
