"""Microsoft 365 sign-in and roster sync: pending logins, location's School Data Sync id

Revision ID: 0002
Revises: 0003 (written on 0001; placed after 0003 when main brought that revision)
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pending_logins",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("flow", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("pending_logins", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_pending_logins_expires_at"), ["expires_at"])
    with op.batch_alter_table("locations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("m365_id", sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint("uq_locations_m365_id", ["m365_id"])


def downgrade() -> None:
    with op.batch_alter_table("locations", schema=None) as batch_op:
        batch_op.drop_constraint("uq_locations_m365_id", type_="unique")
        batch_op.drop_column("m365_id")
    with op.batch_alter_table("pending_logins", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pending_logins_expires_at"))
    op.drop_table("pending_logins")
