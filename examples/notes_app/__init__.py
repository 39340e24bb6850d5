"""notes_app: a small multi-tenant notes application that adopts dataset-migrator.

Each tenant is a dataset: a row of the application's own ``tenants`` table (the migrator reads
it through ``DATASET_SOURCE=query:...``) naming its vector provider and where its vector
database lives. The application keeps its relational schema under its own Alembic project
(``alembic.ini`` here, ``APP_ALEMBIC_CONFIG``), its vector schema as revisions on top of the
migrator's packaged ones (``vector_migrations/``, ``VECTOR_MIGRATIONS``), and refuses to write
to a tenant whose vector schema is behind (``service.add_note``).
"""

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
ALEMBIC_INI = PACKAGE_DIR / "alembic.ini"
VECTOR_MIGRATIONS = PACKAGE_DIR / "vector_migrations"

# The migrator reads tenants through this query (read-only, columns by name). Kept here so the
# tests, docker-compose.yml and the README use one text.
DATASET_SOURCE = "query:SELECT id, name, provider, vector_url AS url FROM tenants"
