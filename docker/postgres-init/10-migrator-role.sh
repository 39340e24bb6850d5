#!/bin/sh
# Runs once, when the postgres container initialises an empty data directory: the migrator
# connects as its own role, not as the superuser. The role owns the control-plane database (so
# it can create its tables and run Alembic there) and nothing else: no SUPERUSER, CREATEDB or
# CREATEROLE. Passwords come from the environment, never from this file.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v role="$MIGRATOR_DB_USER" -v password="$MIGRATOR_DB_PASSWORD" -v db="$POSTGRES_DB" <<'SQL'
CREATE ROLE :"role" LOGIN PASSWORD :'password' NOSUPERUSER NOCREATEDB NOCREATEROLE;
ALTER DATABASE :"db" OWNER TO :"role";
SQL
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v role="$MIGRATOR_DB_USER" <<'SQL'
ALTER SCHEMA public OWNER TO :"role";
SQL
