#!/bin/sh
# Creates the secret files that docker-compose.yml mounts into the containers.
#
# Usage: docker/init-secrets.sh [DIR]   (default: $PUPIL_RECORDS_SECRETS_DIR,
# else docker/secrets beside this script). Existing files are kept, so running
# it again never changes a password or the master key.
#
# Compose mounts each file into the containers with its host owner and mode,
# and the services run as other users (uid 10001, and uid 999 in the postgres
# image). So the password files get mode 0444, and the folder gets mode 0700
# to keep other host users out.
#
# The master key (base64 of 32 random bytes) must not be readable by others:
# the records service refuses to start in production mode if it is. So it gets
# mode 0400 and must belong to the services' user, 10001:10001. Set
# PUPIL_RECORDS_KEY_OWNER=UID:GID for another owner, e.g. the host uid that
# container uid 10001 maps to under user namespace remapping. Only root can
# give a file to another user: run as root, the script does it, and otherwise
# it prints the command to run and exits with status 1.
#
# The archive follower's token file starts empty, so that compose finds every
# secret file; `pupil-records token issue` fills it (docs/deployment.md).
set -eu

script_dir=$(cd "$(dirname "$0")" && pwd)
secrets_dir=${1:-${PUPIL_RECORDS_SECRETS_DIR:-$script_dir/secrets}}
key_owner=${PUPIL_RECORDS_KEY_OWNER:-10001:10001}

if ! printf '%s\n' "$key_owner" | grep -Eqx '[0-9]+:[0-9]+'; then
    echo "init-secrets: PUPIL_RECORDS_KEY_OWNER=$key_owner is invalid;" \
        "give a numeric UID:GID, e.g. 10001:10001" >&2
    exit 2
fi

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

key_file="$secrets_dir/master_key"
if [ -e "$key_file" ]; then
    echo "kept $key_file"
else
    # 32 bytes encode to 43 base64 characters and one "=" of padding.
    key=$(head -c 32 /dev/urandom | base64)
    if ! printf '%s\n' "$key" | grep -Eqx '[A-Za-z0-9+/]{43}='; then
        echo "init-secrets: could not generate the master key" >&2
        exit 1
    fi
    # The key is written in full under a temporary name first. `ln` fails when
    # the file exists, so a key that appeared meanwhile is never replaced.
    temporary=$(mktemp "$secrets_dir/.master_key.XXXXXX")
    trap 'rm -f "$temporary"' EXIT
    printf '%s\n' "$key" >"$temporary"
    chmod 0400 "$temporary"
    if ln "$temporary" "$key_file" 2>/dev/null; then
        echo "created $key_file (back it up now: docs/deployment.md)"
    elif [ -e "$key_file" ]; then
        echo "kept $key_file"
    else
        echo "init-secrets: could not create $key_file" >&2
        exit 1
    fi
fi

key_file_owner=$(ls -ln "$key_file" | awk '{ print $3 ":" $4 }')
if [ "$key_file_owner" != "$key_owner" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "init-secrets: $key_file belongs to $key_file_owner, but the" \
            "records services read it as $key_owner; run:" >&2
        echo "    sudo chown $key_owner '$key_file' && sudo chmod 0400 '$key_file'" >&2
        exit 1
    fi
    chown "$key_owner" "$key_file"
    chmod 0400 "$key_file"
    echo "gave $key_file to $key_owner"
fi
