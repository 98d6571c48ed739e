"""privacy: no id reuse on SQLite (AUTOINCREMENT), audit entries carry their school, and
the do-not-view list (capture_blocks)

SQLite gives the id of a deleted last row to the next insert unless the table is declared
AUTOINCREMENT; a new student would then inherit the audit trail of a purged one. The tables
are rebuilt with AUTOINCREMENT (``upgrade_database`` turns foreign keys off for this, on
its own connection, and checks them afterwards). PostgreSQL sequences never go back, so
nothing changes there but the new column and table.

Revision ID: i14a
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "i14a"
down_revision = "0005"
branch_labels = None
depends_on = None

_TABLES = ("schools", "locations", "remote_modes", "staff", "students", "classes", "audit_log")


def upgrade() -> None:
    bind = op.get_bind()
    with op.batch_alter_table("audit_log") as batch_op:
        batch_op.add_column(sa.Column("school_id", sa.Integer(), nullable=True))
        batch_op.create_index("ix_audit_log_school_id", ["school_id"], unique=False)
    op.create_table(
        "capture_blocks",
        sa.Column("username", sa.String(length=256), nullable=False),
        sa.Column("school_id", sa.Integer(), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("set_by", sa.String(length=256), nullable=False),
        sa.Column("set_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["school_id"], ["schools.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("username"),
    )
    op.create_index("ix_capture_blocks_school_id", "capture_blocks", ["school_id"])
    if bind.dialect.name != "sqlite":
        return
    # Expression indexes are not reflected by the batch rebuild: drop and re-create them.
    op.drop_index("ix_students_username_lower", table_name="students")
    op.drop_index("ix_staff_username_lower", table_name="staff")
    for table in _TABLES:
        with op.batch_alter_table(
            table, recreate="always", table_kwargs={"sqlite_autoincrement": True}
        ):
            pass
    op.create_index("ix_students_username_lower", "students", [sa.text("lower(username)")])
    op.create_index("ix_staff_username_lower", "staff", [sa.text("lower(username)")])


def downgrade() -> None:
    op.drop_index("ix_capture_blocks_school_id", table_name="capture_blocks")
    op.drop_table("capture_blocks")
    with op.batch_alter_table("audit_log") as batch_op:
        batch_op.drop_index("ix_audit_log_school_id")
        batch_op.drop_column("school_id")
