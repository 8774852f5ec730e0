#!/bin/bash
# Creates the login roles and databases of the records and archive services.
#
# The postgres image runs the scripts in /docker-entrypoint-initdb.d once, when
# its data volume is still empty. Each service gets its own role and database,
# and PUBLIC loses the right to connect, so neither service can open the
# other's database. The passwords come from the same secret files that the
# services use. Each file contains one line. The services read only the first
# line, and this script rejects a file with more.
set -euo pipefail

secrets_dir="${PUPIL_RECORDS_SECRETS_DIR:-/run/secrets}"

read_secret() {
    local file="$1" value
    if [[ ! -r "$file" ]]; then
        echo "create-service-databases: cannot read the secret file $file" >&2
        return 1
    fi
    # $(<file) drops every trailing line feed; then drop one carriage return.
    value="$(<"$file")"
    value="${value%$'\r'}"
    if [[ -z "$value" ]]; then
        echo "create-service-databases: the secret file $file is empty" >&2
        return 1
    fi
    if [[ "$value" == *$'\n'* || "$value" == *$'\r'* ]]; then
        echo "create-service-databases: the secret file $file must hold a single line" >&2
        return 1
    fi
    printf '%s' "$value"
}

# psql reads the passwords with \getenv (psql 15 and later), so they never
# appear on a command line that other processes could list.
RECORDS_ROLE_PASSWORD="$(read_secret "$secrets_dir/records_db_password")"
ARCHIVE_ROLE_PASSWORD="$(read_secret "$secrets_dir/archive_db_password")"
export RECORDS_ROLE_PASSWORD ARCHIVE_ROLE_PASSWORD

psql --no-psqlrc --set ON_ERROR_STOP=1 \
    --username "${POSTGRES_USER:-postgres}" \
    --dbname "${POSTGRES_DB:-postgres}" <<'SQL'
\getenv records_password RECORDS_ROLE_PASSWORD
\getenv archive_password ARCHIVE_ROLE_PASSWORD
CREATE ROLE records LOGIN PASSWORD :'records_password';
CREATE ROLE archive LOGIN PASSWORD :'archive_password';
CREATE DATABASE records OWNER records;
CREATE DATABASE archive OWNER archive;
REVOKE ALL ON DATABASE records FROM PUBLIC;
REVOKE ALL ON DATABASE archive FROM PUBLIC;
SQL

unset RECORDS_ROLE_PASSWORD ARCHIVE_ROLE_PASSWORD
echo "create-service-databases: created the roles and databases records and archive"
