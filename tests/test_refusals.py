"""R2/T2/T5: a refused policy decision becomes the domain error of its code in one place (`app.errors.refuse_unless`),
which every service uses (refunds, credits, trials)."""

import json

import pytest

from app.customers.rules import require_standing
from app.errors import (
    CurrencyMismatch,
    DomainError,
    Forbidden,
    RefundExceedsPayment,
    TrialNotAvailable,
    TrialNotEligible,
    ValidationFailed,
    problem,
    refuse_unless,
)
from policies import CustomerAction, Decision, credit_currency_decision, credit_decision, refund_decision


def _raised(decision: Decision, *args, **kwargs) -> DomainError:
    with pytest.raises(DomainError) as caught:
        refuse_unless(decision, *args, **kwargs)
    return caught.value


def test_an_allowed_decision_passes():
    assert refuse_unless(Decision(True, None, "R2", "fine")) is None


@pytest.mark.parametrize(
    ("decision", "error"),
    [
        (refund_decision("customer", 1000, 0, 100, "why"), Forbidden),
        (refund_decision("ops", 1000, 900, 200, "why"), RefundExceedsPayment),
        (credit_decision("ops", 100, " "), ValidationFailed),  # reason_required: no error of its own
        (credit_decision("ops", 0, "why"), ValidationFailed),  # invalid_amount
        (credit_currency_decision("eur", "usd"), CurrencyMismatch),
        (Decision(False, "trial_not_available", "T2", "no trial"), TrialNotAvailable),
        (Decision(False, "trial_not_eligible", "T5", "had one"), TrialNotEligible),
    ],
)
def test_a_refusal_raises_the_error_of_its_code_with_its_rule_and_reason(decision, error):
    raised = _raised(decision)
    assert type(raised) is error
    assert raised.code == (decision.code if error is not ValidationFailed else "validation_error")
    assert raised.detail == decision.reason
    assert raised.extra == {"rule": decision.rule}


def test_a_refusal_carries_the_detail_and_extra_given():
    raised = _raised(refund_decision("ops", 1000, 900, 200, "why"), "only 100 usd left", refundable=100)
    assert type(raised) is RefundExceedsPayment
    assert raised.detail == "only 100 usd left"
    assert raised.extra == {"rule": "R2", "refundable": 100}


@pytest.mark.parametrize(
    ("action", "status"),
    [
        (CustomerAction.BUY, "suspended"),
        (CustomerAction.START_TRIAL, "terminated"),
        (CustomerAction.GRANT_CREDIT, "terminated"),
        (CustomerAction.CHANGE_STANDING, "erased"),
        (CustomerAction.CORRECT_DETAILS, "erased"),
    ],
)
def test_R3_D3_a_standing_refusal_answers_as_it_always_did_without_a_rule_member(action, status):
    with pytest.raises(DomainError) as raised:
        require_standing(action, status)
    _, body = problem(raised.value.code, raised.value.detail, **raised.value.extra)
    assert "rule" not in json.loads(body)
