#!/bin/sh
# Creates the database password files that docker-compose.yml reads as secrets.
#
# Usage: docker/init-secrets.sh [DIR]   (default: $PUPIL_RECORDS_SECRETS_DIR,
# else docker/secrets beside this script). Existing files are kept, so running
# it again changes nothing. Compose mounts each file into the containers with
# its host owner and mode, and the services run as other users (uid 10001, and
# uid 999 in the postgres image). So the files get mode 0444, and the folder
# gets mode 0700 to keep other host users out.
# The archive follower's token file starts empty, so that compose finds every
# secret file; `pupil-records token issue` fills it (docs/deployment.md).
set -eu

script_dir=$(cd "$(dirname "$0")" && pwd)
secrets_dir=${1:-${PUPIL_RECORDS_SECRETS_DIR:-$script_dir/secrets}}

umask 077
mkdir -p "$secrets_dir"
chmod 0700 "$secrets_dir"

for name in postgres_password records_db_password archive_db_password; do
    file="$secrets_dir/$name"
    if [ -e "$file" ]; then
        echo "kept $file"
        continue
    fi
    # 40 characters from [A-Za-z0-9]: about 238 bits, and nothing to quote.
    password=$(LC_ALL=C tr -dc 'A-Za-z0-9' </dev/urandom | head -c 40)
    if [ "${#password}" -ne 40 ]; then
        echo "init-secrets: could not read random bytes from /dev/urandom" >&2
        exit 1
    fi
    printf '%s\n' "$password" >"$file"
    chmod 0444 "$file"
    echo "created $file"
done

token_file="$secrets_dir/archive_feed_token"
if [ -e "$token_file" ]; then
    echo "kept $token_file"
else
    : >"$token_file"
    chmod 0644 "$token_file"
    echo "created $token_file (empty: issue the follower's token into it)"
fi
