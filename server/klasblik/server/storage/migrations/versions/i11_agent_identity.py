"""agent identity: each school's policy, registered device keys, Google address mapping

Existing schools keep today's behaviour (``token``: the enrollment token alone, tiles
marked unverified) until IT switches them; schools added later follow the
``agent_identity`` setting (``verified`` unless set otherwise).

Revision ID: i11_agent_identity
Revises: i14a
"""

import sqlalchemy as sa
from alembic import op

revision = "i11_agent_identity"
down_revision = "i14a"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("schools", sa.Column("agent_identity", sa.String(16), nullable=True))
    op.execute("UPDATE schools SET agent_identity = 'token'")
    op.create_table(
        "agent_devices",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "student_id",
            sa.Integer,
            sa.ForeignKey("students.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("device_id", sa.String(128), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("public_key", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("last_proven_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("student_id", "key_hash"),
        sqlite_autoincrement=True,  # ids are never reused (see i14_no_id_reuse)
    )
    op.create_index("ix_agent_devices_student_id", "agent_devices", ["student_id"])
    op.create_table(
        "google_accounts",
        sa.Column("email", sa.String(256), primary_key=True),
        sa.Column(
            "student_id",
            sa.Integer,
            sa.ForeignKey("students.id", ondelete="CASCADE"),
            nullable=False,
        ),
    )
    op.create_index("ix_google_accounts_student_id", "google_accounts", ["student_id"])


def downgrade() -> None:
    op.drop_index("ix_google_accounts_student_id", table_name="google_accounts")
    op.drop_table("google_accounts")
    op.drop_index("ix_agent_devices_student_id", table_name="agent_devices")
    op.drop_table("agent_devices")
    op.drop_column("schools", "agent_identity")
