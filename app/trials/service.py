"""Trial use cases: start (T1, T2, T4, T5, T7) and the person marks that keep one trial per person."""

from __future__ import annotations

import datetime as _dt

from sqlalchemy.ext.asyncio import AsyncConnection

from app.access.service import access_changed
from app.audit.service import changed, record
from app.auth import Principal
from app.context import AppContext
from app.customers import repository as customer_repo
from app.customers.repository import CustomerRow
from app.customers.rules import require_standing
from app.errors import TrialNotEligible, refuse_unless
from app.ids import new_id
from app.notices import templates
from app.notices.service import NewNotice, create_notices
from app.plans import repository as plan_repo
from app.trials import repository
from app.trials.identity import person_identities
from app.trials.repository import TrialRow
from app.trials.schemas import TrialCreate, to_api
from app.uow import UnitOfWork
from policies import (
    AccessFacts,
    CustomerAction,
    PersonHistory,
    TrialStatus,
    trial_eligibility,
    trial_notice_days_left,
    trial_terms,
)


def identities_of(ctx: AppContext, customer: CustomerRow) -> list[str]:
    return person_identities(ctx.settings.identity_key, customer.id, [customer.email])


async def mark_person(conn: AsyncConnection, identities: list[str], kind: str, now: _dt.datetime) -> bool:
    """T5: remember that this person had a trial or a paid subscription. False if any identity was marked
    already (by an earlier trial or purchase, or by a concurrent request that committed first)."""
    return await repository.add_marks(conn, identities, kind, now)


async def start_trial(uow: UnitOfWork, principal: Principal, body: TrialCreate) -> TrialRow:
    """T2: a trial starts when the person activates it, with no payment method."""
    conn, ctx, now = uow.conn, uow.ctx, uow.now
    customer = await customer_repo.get_visible(conn, principal, body.customer_id, for_update=True)
    require_standing(CustomerAction.START_TRIAL, customer.status)
    plan = await plan_repo.get_by_code(conn, body.plan, active_only=True)
    policy = ctx.policies.at(now)  # T7: the offer in force when the trial starts
    identities = identities_of(ctx, customer)
    marks = await repository.mark_kinds(conn, identities)
    decision = trial_eligibility(
        PersonHistory(had_trial="trial" in marks, had_paid_subscription="paid" in marks), plan.trial_available
    )
    refuse_unless(decision)
    if not await mark_person(conn, identities, "trial", now):
        # T5 under concurrency: another request for the same person committed its trial first.
        raise TrialNotEligible("this person has already had a free trial", rule="T5")

    terms = trial_terms(now, policy)
    trial_id = new_id("trl")
    trial = {
        "id": trial_id,
        "customer_id": customer.id,
        "plan_id": plan.id,
        "plan_code": plan.code,
        "status": TrialStatus.ACTIVE,
        "started_at": terms.started_at,
        "ends_at": terms.ends_at,
        "notice_at": terms.notice_at,
        "notice_sent_at": None,
        "ended_at": None,
        "policy_version": terms.policy_version,
    }
    await repository.insert_trial(conn, trial)
    days_left = trial_notice_days_left(terms.notice_at, terms.ends_at, now, already_sent=False)
    # T2/T5: the customer is active and has never paid (no subscription): the trial is their access now.
    events = [
        ("trial.started", to_api(changed(trial))),
        access_changed(
            AccessFacts(
                customer_status=customer.status,
                trial_status=TrialStatus.ACTIVE,
                trial_ends_at=terms.ends_at,
                trial_plan=plan.code,
            ),
            now,
        ),
    ]
    if days_left is not None:
        events.append(("trial.expiring", to_api(changed(trial))))
    await record(
        conn,
        principal,
        "trial.started",
        now,
        subject_type="trial",
        subject_id=trial_id,
        customer_id=customer.id,
        policy_version=policy.version,
        data={"plan": plan.code, "ends_at": terms.ends_at.isoformat()},
        events=events,
    )
    if days_left is not None:
        # T4: a trial shorter than the notice window gets its notice when it starts.
        subject, text = templates.trial_expiring(plan.name, terms.ends_at, days_left)
        await create_notices(
            conn,
            [NewNotice(customer.id, "trial_expiring", f"trial_expiring:{trial_id}", subject, text)],
            now,
            ctx.system_clock.wall(),
        )
        await repository.mark_notice_sent(conn, [trial_id], now)
    return await repository.get_visible(conn, principal, trial_id)
