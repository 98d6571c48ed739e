"""locations: lesson hours, time zone, remote-lesson mode periods

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-23 06:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("locations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lesson_hours", sa.Text(), server_default="", nullable=False))
        batch_op.add_column(
            sa.Column(
                "timezone", sa.String(length=64), server_default="Europe/Amsterdam", nullable=False
            )
        )

    op.create_table(
        "remote_modes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("location_id", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("until", sa.DateTime(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("started_by", sa.String(length=256), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.Column("ended_by", sa.String(length=256), nullable=True),
        sa.Column("end_note", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(["location_id"], ["locations.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("remote_modes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_remote_modes_location_id"), ["location_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("remote_modes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_remote_modes_location_id"))
    op.drop_table("remote_modes")
    with op.batch_alter_table("locations", schema=None) as batch_op:
        batch_op.drop_column("timezone")
        batch_op.drop_column("lesson_hours")
