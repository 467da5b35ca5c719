"""R2/T5: the decision value returned by policy checks: allowed, or refused with a machine code."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Decision:
    """R2/T5: the outcome of a policy check, naming the rule that decided it."""

    allowed: bool
    code: str | None  # machine code when refused, e.g. "trial_not_eligible"; None when allowed
    rule: str  # rule id that decided, e.g. "T5"
    reason: str  # short human sentence

    def __post_init__(self) -> None:
        if self.allowed != (self.code is None):
            raise ValueError("an allowed decision carries no code; a refused one must carry one")
        if not self.rule:
            raise ValueError("a decision must name the rule that decided it")
