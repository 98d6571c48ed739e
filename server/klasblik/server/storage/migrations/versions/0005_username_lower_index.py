"""case-insensitive username indexes, so an agent connection does not scan the roster

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_students_username_lower", "students", [sa.text("lower(username)")])
    op.create_index("ix_staff_username_lower", "staff", [sa.text("lower(username)")])


def downgrade() -> None:
    op.drop_index("ix_staff_username_lower", table_name="staff")
    op.drop_index("ix_students_username_lower", table_name="students")
