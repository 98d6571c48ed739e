"""Alembic environment: runs on the connection Klasblik hands over (see db.upgrade_database)."""

from alembic import context

from klasblik.server.storage.models import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `klasblik db upgrade`, which supplies a connection")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
