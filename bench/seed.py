"""Bulk data for the benchmarks, written straight into a migrated PostgreSQL database with set-based SQL
(INSERT ... SELECT generate_series), shaped exactly as the service's own code writes these rows.

Every function takes a psycopg (3) connection and the business time `now` (the sandbox clock's time in that
database). Ids are readable (`sub_bench_00000001`); the service never parses ids, it only compares them.
"""

from __future__ import annotations

import datetime as _dt

import psycopg

PLAN_ID = "plan_bench_monthly"
PLAN_CODE = "bench-monthly"
PLAN_NAME = "Bench, monthly"
PRICE = 999
CURRENCY = "usd"

# The columns of the rows seeded into these tables, in the order of the SELECTs below.
SUBSCRIPTION_COLUMNS = (
    "id, customer_id, plan_id, plan_code, interval, status, price_amount, currency, tax_amount, "
    "payment_method, anchor_at, period_index, current_period_start, current_period_end, "
    "cancel_at_period_end, canceled_at, ended_at, ended_reason, failed_attempts, next_retry_at, "
    "claimed_until, policy_version, created_at"
)
PAYMENT_COLUMNS = (
    "id, customer_id, subscription_id, purpose, period_index, period_start, period_end, price_amount, "
    "tax_amount, credit_applied, amount, currency, status, failure_code, refunded_amount, "
    "payment_method, gateway, gateway_payment_id, client_secret, idempotency_key, policy_version, "
    "created_at, updated_at"
)


def base_rows(conn: psycopg.Connection, now: _dt.datetime) -> None:
    """The sandbox clock (frozen at `now`) and the one plan every benchmark row refers to."""
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO sandbox_clock (id, now) VALUES (1, %s) ON CONFLICT (id) DO UPDATE SET now = EXCLUDED.now",
            (now,),
        )
        cur.execute(
            """INSERT INTO plans (id, code, name, tier, interval, amount, currency, trial_available, active,
                                  created_at, updated_at)
               VALUES (%s, %s, %s, 'subscription', 'month', %s, %s, true, true, %s, %s)
               ON CONFLICT (code) DO NOTHING""",
            (
                PLAN_ID,
                PLAN_CODE,
                PLAN_NAME,
                PRICE,
                CURRENCY,
                now - _dt.timedelta(days=400),
                now - _dt.timedelta(days=400),
            ),
        )
    conn.commit()


def customers(conn: psycopg.Connection, prefix: str, count: int, now: _dt.datetime, *, start: int = 1) -> None:
    """`count` active customers `cus_<prefix>_<n>` with external id `<prefix>-<n>` (a token's `sub`), an e-mail,
    a billing country and the sandbox gateway's customer id (as a first purchase leaves it)."""
    with conn.cursor() as cur:
        cur.execute(
            f"""INSERT INTO customers (id, external_id, email, name, country, marketing_opt_out, gateway_customer_id,
                                       status, created_at, updated_at)
                SELECT 'cus_{prefix}_' || lpad(i::text, 8, '0'), '{prefix}-' || i,
                       '{prefix}.' || i || '@bench.example', 'Bench Customer ' || i, 'US', false,
                       'cus_sandbox_cus_{prefix}_' || lpad(i::text, 8, '0'), 'active',
                       %(created)s, %(created)s
                FROM generate_series(%(start)s::int, %(stop)s::int) AS i""",
            {"start": start, "stop": start + count - 1, "created": now - _dt.timedelta(days=60)},
        )
    conn.commit()


def active_subscriptions(
    conn: psycopg.Connection, prefix: str, count: int, anchor: _dt.datetime, policy_version: str
) -> None:
    """One active monthly subscription per customer `cus_<prefix>_<n>`, first period anchored at `anchor`
    (period 0: [anchor, anchor + 1 month)), with the succeeded purchase payment and the sandbox charge behind it."""
    with conn.cursor() as cur:
        params = {
            "n": count,
            "anchor": anchor,
            "pv": policy_version,
            "plan": PLAN_ID,
            "code": PLAN_CODE,
            "price": PRICE,
            "cur": CURRENCY,
        }
        cur.execute(
            f"""INSERT INTO subscriptions ({SUBSCRIPTION_COLUMNS})
                SELECT 'sub_{prefix}_' || lpad(i::text, 8, '0'), 'cus_{prefix}_' || lpad(i::text, 8, '0'),
                       %(plan)s, %(code)s, 'month', 'active', %(price)s, %(cur)s, 0, 'pm_card_visa',
                       %(anchor)s, 0, %(anchor)s, %(anchor)s::timestamptz + interval '1 month', false, NULL, NULL,
                       NULL, 0, NULL, NULL, %(pv)s, %(anchor)s
                FROM generate_series(1, %(n)s::int) AS i""",
            params,
        )
        cur.execute(
            f"""INSERT INTO payments ({PAYMENT_COLUMNS})
                SELECT 'pay_{prefix}_' || lpad(i::text, 8, '0'), 'cus_{prefix}_' || lpad(i::text, 8, '0'),
                       'sub_{prefix}_' || lpad(i::text, 8, '0'), 'purchase', 0, %(anchor)s,
                       %(anchor)s::timestamptz + interval '1 month', %(price)s, 0, 0, %(price)s, %(cur)s,
                       'succeeded', NULL, 0, 'pm_card_visa', 'sandbox', 'pi_sandbox_{prefix}_' || i, NULL,
                       'sub_{prefix}_' || lpad(i::text, 8, '0') || ':period-0:attempt-1', %(pv)s,
                       %(anchor)s, %(anchor)s
                FROM generate_series(1, %(n)s::int) AS i""",
            params,
        )
        cur.execute(
            f"""INSERT INTO sandbox_charges (idempotency_key, payment_intent_id, amount, currency, payment_method,
                                             status, decline_code, refunded_amount, created_at)
                SELECT 'sub_{prefix}_' || lpad(i::text, 8, '0') || ':period-0:attempt-1', 'pi_sandbox_{prefix}_' || i,
                       %(price)s, %(cur)s, 'pm_card_visa', 'succeeded', NULL, 0, %(anchor)s
                FROM generate_series(1, %(n)s::int) AS i""",
            params,
        )
    conn.commit()


# C3 (issue 16): the plan a share of the renewing subscriptions has a pending period-end change to.
CHANGE_PLAN_ID = "plan_bench_plus_monthly"
CHANGE_PLAN_CODE = "bench-plus-monthly"
CHANGE_PRICE = 1499


def pending_plan_changes(
    conn: psycopg.Connection, prefix: str, count: int, every: int, asked_at: _dt.datetime, policy_version: str
) -> int:
    """C3: a pending change at the period end, to `CHANGE_PLAN_CODE` at its price (locked, B3), for every `every`-th
    active subscription `sub_<prefix>_<n>` of `active_subscriptions` (n = every, 2 * every, ...), shaped as
    `app.plan_changes.service.change` writes it (effective at the current period end). Returns how many."""
    with conn.cursor() as cur:
        cur.execute(
            """INSERT INTO plans (id, code, name, tier, interval, amount, currency, trial_available, active,
                                  created_at, updated_at)
               VALUES (%s, %s, 'Bench plus, monthly', 'subscription', 'month', %s, %s, true, true, %s, %s)
               ON CONFLICT (code) DO NOTHING""",
            (CHANGE_PLAN_ID, CHANGE_PLAN_CODE, CHANGE_PRICE, CURRENCY, asked_at, asked_at),
        )
        cur.execute(
            f"""INSERT INTO plan_changes (id, subscription_id, customer_id, kind, status, plan_id, plan_code,
                                          interval, price_amount, currency, asked_at, effective_at, expires_at,
                                          payment_id, decided_at, asked_by, policy_version)
                SELECT 'pchg_{prefix}_' || lpad(i::text, 8, '0'), s.id, s.customer_id, 'period_end', 'pending',
                       %(plan)s, %(code)s, 'month', %(price)s, %(cur)s, %(asked)s, s.current_period_end, NULL,
                       NULL, NULL, '{prefix}-' || i, %(pv)s
                FROM generate_series(%(every)s::int, %(n)s::int, %(every)s::int) AS i
                JOIN subscriptions s ON s.id = 'sub_{prefix}_' || lpad(i::text, 8, '0')""",
            {
                "plan": CHANGE_PLAN_ID,
                "code": CHANGE_PLAN_CODE,
                "price": CHANGE_PRICE,
                "cur": CURRENCY,
                "asked": asked_at,
                "pv": policy_version,
                "every": every,
                "n": count,
            },
        )
        made = cur.rowcount
    conn.commit()
    return made


def incomplete_purchases(
    conn: psycopg.Connection, prefix: str, count: int, now: _dt.datetime, wall: _dt.datetime, policy_version: str
) -> list[tuple[str, str]]:
    """`count` purchases made with pm_card_authenticationRequired, as `purchase` leaves them: an incomplete
    subscription, its pending purchase payment carrying the PaymentIntent id and client secret, the sandbox
    gateway's `requires_action` charge and the `subscription.requested` audit event. Returns
    (payment intent id, payment idempotency key) per purchase, for the `payment_intent.succeeded` events."""
    customers(conn, prefix, count, now)
    params = {
        "n": count,
        "now": now,
        "wall": wall,
        "pv": policy_version,
        "plan": PLAN_ID,
        "code": PLAN_CODE,
        "price": PRICE,
        "cur": CURRENCY,
    }
    sub = f"'sub_{prefix}_' || lpad(i::text, 8, '0')"
    cus = f"'cus_{prefix}_' || lpad(i::text, 8, '0')"
    intent = f"'pi_sandbox_{prefix}_' || lpad(i::text, 8, '0')"
    with conn.cursor() as cur:
        cur.execute(
            f"""INSERT INTO subscriptions ({SUBSCRIPTION_COLUMNS})
                SELECT {sub}, {cus}, %(plan)s, %(code)s, 'month', 'incomplete', %(price)s, %(cur)s, 0,
                       'pm_card_authenticationRequired', NULL, 0, NULL, NULL, false, NULL, NULL, NULL, 0, NULL, NULL,
                       %(pv)s, %(now)s
                FROM generate_series(1, %(n)s::int) AS i""",
            params,
        )
        cur.execute(
            f"""INSERT INTO payments ({PAYMENT_COLUMNS})
                SELECT 'pay_{prefix}_' || lpad(i::text, 8, '0'), {cus}, {sub}, 'purchase', 0, NULL, NULL,
                       %(price)s, 0, 0, %(price)s, %(cur)s, 'pending', NULL, 0, 'pm_card_authenticationRequired',
                       'sandbox', {intent}, {intent} || '_secret_sandbox', {sub} || ':period-0:attempt-1', %(pv)s,
                       %(now)s, %(now)s
                FROM generate_series(1, %(n)s::int) AS i""",
            params,
        )
        cur.execute(
            f"""INSERT INTO sandbox_charges (idempotency_key, payment_intent_id, amount, currency, payment_method,
                                             status, decline_code, refunded_amount, created_at)
                SELECT {sub} || ':period-0:attempt-1', {intent}, %(price)s, %(cur)s, 'pm_card_authenticationRequired',
                       'requires_action', NULL, 0, %(wall)s
                FROM generate_series(1, %(n)s::int) AS i""",
            params,
        )
        cur.execute(
            f"""INSERT INTO audit_events (id, occurred_at, actor, actor_role, action, customer_id, subject_type,
                                          subject_id, reason, data, policy_version)
                SELECT 'evt_{prefix}_' || lpad(i::text, 8, '0'), %(now)s, '{prefix}-' || i, 'customer',
                       'subscription.requested', {cus}, 'subscription', {sub}, NULL,
                       json_build_object('plan', %(code)s::text, 'price', %(price)s::int, 'tax', 0),
                       %(pv)s
                FROM generate_series(1, %(n)s::int) AS i""",
            params,
        )
        cur.execute(f"SELECT {intent}, {sub} || ':period-0:attempt-1' FROM generate_series(1, %(n)s::int) AS i", params)
        rows = [(a, b) for a, b in cur.fetchall()]
    conn.commit()
    return rows


# The trial table of the sweep benchmark. `due` trials need work now: the first half its `trial_expiring` notice
# (T4: notice time passed, trial still running), the second half its expiry (T3: ended, notice sent long ago).
# Every other trial needs nothing: mostly trials that ended long ago (expired, a few forfeited by a purchase), and
# about a tenth still running with their notice either not yet due or already sent.
TRIALS_SQL = """
INSERT INTO trials (id, customer_id, plan_id, plan_code, status, started_at, ends_at, notice_at, notice_sent_at,
                    ended_at, policy_version)
SELECT id, customer_id, %(plan)s, %(code)s, status, started_at, started_at + interval '30 days',
       started_at + interval '23 days', notice_sent_at, ended_at, %(pv)s
FROM (
    SELECT 'trl_s_' || lpad(i::text, 8, '0') AS id, 'cus_s_' || lpad(i::text, 8, '0') AS customer_id, s.*
    FROM generate_series(1, %(n)s::int) AS i
    CROSS JOIN LATERAL (
        SELECT
            CASE WHEN i <= %(due)s THEN 'active'
                 WHEN i %% 20 IN (0, 1, 2) THEN 'active'
                 WHEN i %% 20 = 3 THEN 'forfeited'
                 ELSE 'expired' END AS status,
            st AS started_at,
            CASE WHEN i <= %(due)s / 2 THEN NULL
                 WHEN i <= %(due)s THEN st + interval '23 days'
                 WHEN i %% 20 IN (0, 1) THEN NULL
                 WHEN i %% 20 = 3 THEN NULL
                 ELSE st + interval '23 days' END AS notice_sent_at,
            CASE WHEN i <= %(due)s OR i %% 20 IN (0, 1, 2) THEN NULL
                 WHEN i %% 20 = 3 THEN st + interval '10 days'
                 ELSE st + interval '30 days' END AS ended_at
        FROM (SELECT
            CASE WHEN i <= %(due)s / 2 THEN %(now)s::timestamptz - interval '25 days' - (i * interval '1 second')
                 WHEN i <= %(due)s THEN %(now)s::timestamptz - interval '31 days' - (i * interval '1 second')
                 WHEN i %% 20 IN (0, 1) THEN %(now)s::timestamptz - ((i %% 22) * interval '1 day') - interval '1 hour'
                 WHEN i %% 20 = 2 THEN %(now)s::timestamptz - ((24 + i %% 5) * interval '1 day') - interval '1 hour'
                 ELSE %(now)s::timestamptz - interval '31 days' - ((i %% 900) * interval '1 day') END AS st
        ) AS t
    ) AS s
) AS rows
"""


def sweep_table(
    conn: psycopg.Connection,
    total: int,
    due: int,
    now: _dt.datetime,
    policy_version: str,
    second: psycopg.Connection | None = None,
) -> None:
    """`total` customers each with one trial, `due` of them due now (see TRIALS_SQL); then VACUUM ANALYZE, as
    autovacuum would have done on a table that grew over years.

    Loading a million rows is made fast the usual way: the plain (non-constraint) indexes of the two tables are
    dropped and rebuilt afterwards from their own definitions (pg_get_indexdef, so exactly the migrated schema),
    the per-row foreign-key triggers are skipped (the rows are consistent by construction; the constraints stay in
    place), and, given a `second` connection to the same database, customers and trials load in parallel."""
    with conn.cursor() as cur:
        cur.execute("""SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
                       FROM pg_index i
                       WHERE i.indrelid IN ('customers'::regclass, 'trials'::regclass)
                         AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)""")
        indexes = cur.fetchall()
        for name, _ in indexes:
            cur.execute(f'DROP INDEX "{name}"')
    conn.commit()

    def load_trials(c: psycopg.Connection) -> None:
        with c.cursor() as cur:
            cur.execute("SET session_replication_role = replica")
            cur.execute(
                TRIALS_SQL,
                {"n": total, "due": due, "now": now, "pv": policy_version, "plan": PLAN_ID, "code": PLAN_CODE},
            )
            cur.execute("SET session_replication_role = origin")
        c.commit()

    def load_customers(c: psycopg.Connection) -> None:
        with c.cursor() as cur:
            cur.execute("SET session_replication_role = replica")
            customers(c, "s", total, now)
            cur.execute("SET session_replication_role = origin")
        c.commit()

    if second is None:
        load_customers(conn)
        load_trials(conn)
    else:
        import threading

        failure: list[BaseException] = []

        def in_thread() -> None:
            try:
                load_trials(second)
            except BaseException as exc:
                failure.append(exc)

        thread = threading.Thread(target=in_thread)
        thread.start()
        load_customers(conn)
        thread.join()
        if failure:
            raise failure[0]
    with conn.cursor() as cur:
        cur.execute("SET maintenance_work_mem = '256MB'")
        for _, definition in indexes:
            cur.execute(definition)
        cur.execute("RESET maintenance_work_mem")
    conn.commit()
    vacuum(conn, "customers", "trials")


def due_trial_counts(conn: psycopg.Connection, now: _dt.datetime) -> tuple[int, int]:
    """(trials whose notice is due, trials whose expiry is due) at `now`."""
    with conn.cursor() as cur:
        cur.execute(
            """SELECT count(*) FILTER (WHERE notice_sent_at IS NULL AND notice_at <= %(now)s),
                              count(*) FILTER (WHERE ends_at <= %(now)s)
                       FROM trials WHERE status = 'active'""",
            {"now": now},
        )
        a, b = cur.fetchone()
    conn.commit()
    return a, b


def restore_due_trials(conn: psycopg.Connection, due: int) -> None:
    """Undo one sweep: the due trials become due again and their notices are removed (the audit log is
    append-only and keeps its events; they do not affect what is due)."""
    ids = "'trl_s_' || lpad(i::text, 8, '0')"
    with conn.cursor() as cur:
        cur.execute(
            f"UPDATE trials SET notice_sent_at = NULL WHERE id IN (SELECT {ids} FROM generate_series(1, %s::int) i)",
            (due // 2,),
        )
        cur.execute(
            f"""UPDATE trials SET status = 'active', ended_at = NULL
                        WHERE id IN (SELECT {ids} FROM generate_series(%s::int, %s::int) i)""",
            (due // 2 + 1, due),
        )
        cur.execute("DELETE FROM notices WHERE type IN ('trial_expiring', 'trial_expired')")
    conn.commit()
    vacuum(conn, "trials", "notices")


def vacuum(conn: psycopg.Connection, *tables: str) -> None:
    previous = conn.autocommit
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for table in tables:
                cur.execute(f"VACUUM ANALYZE {table}")
    finally:
        conn.autocommit = previous


def reset_cancellations(conn: psycopg.Connection, prefix: str, count: int) -> None:
    """The write benchmark's pool back to 'no cancellation scheduled', so the next round's first request on each
    subscription is a real cancel (and the one after a real resume)."""
    with conn.cursor() as cur:
        cur.execute(
            f"""UPDATE subscriptions SET cancel_at_period_end = false, canceled_at = NULL
                        WHERE id IN (SELECT 'sub_{prefix}_' || lpad(i::text, 8, '0') FROM generate_series(1, %s::int) i)
                          AND cancel_at_period_end""",
            (count,),
        )
    conn.commit()


def count(conn: psycopg.Connection, sql: str, params: dict | tuple | None = None) -> int:
    with conn.cursor() as cur:
        cur.execute(sql, params)
        value = cur.fetchone()[0]
    conn.commit()
    return int(value or 0)
