"""Deliveries answered 410 on subscriptions no longer disabled are settled as ``skipped``.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-02

A delivery whose endpoint answered 410 is ``gone``: it disabled its subscription and was never
received. From this version re-enabling a subscription sends its ``gone`` deliveries again
(``resume: where_stopped``) or skips them (``now``), so none is left ``gone`` on a subscription
that runs. Earlier versions left them ``gone`` for good; on subscriptions re-enabled since,
they would be sent at the next re-enabling, months late and after the child's later events. So
they are settled now as a re-enabling from ``now`` would have settled them: ``skipped``, a dead
letter that stays listed and can be redriven. Those of subscriptions still disabled wait for
their re-enabling, as new ones do.

Downgrading leaves them ``skipped``: an earlier version lists and redrives them the same way.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        UPDATE event_delivery AS d
        SET status = 'skipped', updated_at = now(),
            last_error = 'answered 410 before its subscription was re-enabled; settled by migration 0023'
        FROM subscription AS s
        WHERE d.subscription_id = s.id AND d.status = 'gone' AND s.status <> 'disabled'
        """
    )


def downgrade() -> None:
    pass  # skipped dead letters mean the same to earlier versions
