"""The database (models, engine, migrations), the blob stores and the latest state per student."""
