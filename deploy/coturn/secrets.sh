#!/bin/sh
# Puts the shared secrets into coturn's user database: one turn_secret row per file of the
# mounted Secret (TURN_SECRET_DIR: "secret", and during a rotation "previous"), for coturn's
# realm, replacing the rows there were. With use-auth-secret and no static-auth-secret, coturn
# reads these rows at each authentication (the "dynamic" secrets of `man turnserver`): a change is
# accepted from the next request on, by the same process, with relays under way untouched.
#   secrets.sh <sqlite database> <realm> <secret directory>
# Run by turn-entrypoint before turnserver starts, and by the reload sidecar at each check (reload.sh):
# files judged before (their names and contents, in <database>.judged) are not looked at again, so
# an unchanged Secret costs a hash and no write, and a bad file is logged once.
# Each secret is checked as signaling checks its file (32 to 4096 printable characters, surrounding
# whitespace aside); one that is not leaves the database as it was (exit 1). The secrets go to
# sqlite3 on its standard input, never on a command line, where ps shows them, and all rows change
# in one transaction: coturn never sees the realm without a secret. Never prints a secret.
set -eu
db=$1
realm=$2
dir=$3
judged="$db.judged"

# Names and contents: "previous" added or removed is a change too.
digest=$( (cd "$dir" 2>/dev/null && sha256sum -- * 2>/dev/null) | sha256sum | cut -d' ' -f1)
[ "$digest" != "$(cat "$judged" 2>/dev/null || true)" ] || exit 0
# Judged now, taken up or not: the same files are not judged twice.
printf '%s\n' "$digest" >"$judged"

sqlQuote() { printf '%s' "$1" | sed "s/'/''/g"; }
realmSql=$(sqlQuote "$realm")
# Write-ahead logging: coturn's reads see the last committed rows while they are rewritten, never
# "database is locked" (which it would take for no secret, refusing a credential).
sql="PRAGMA journal_mode=WAL;
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS turn_secret (realm varchar(127) default '', value varchar(256), primary key (realm,value));
DELETE FROM turn_secret WHERE realm='$realmSql';"
count=0
for file in "$dir"/*; do
  [ -f "$file" ] || continue
  value=$(sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//' "$file")
  # What is left after removing every printable character: nothing, for a valid secret (a newline inside is not).
  rest=$(printf '%s' "$value" | LC_ALL=C tr -d '!-~' | wc -c)
  length=$(printf '%s' "$value" | wc -c)
  if [ "$rest" -ne 0 ] || [ "$length" -lt 32 ] || [ "$length" -gt 4096 ]; then
    echo "secrets: $(basename "$file") holds no secret of 32 to 4096 printable characters: the shared secrets could not be taken up, those in use stay" >&2
    exit 1
  fi
  sql="$sql
INSERT OR IGNORE INTO turn_secret (realm, value) VALUES ('$realmSql', '$(sqlQuote "$value")');"
  count=$((count + 1))
done
[ "$count" -gt 0 ] || { echo "secrets: no secret in $dir: the shared secrets could not be taken up, those in use stay" >&2; exit 1; }
printf '.timeout 5000\n%s\nCOMMIT;\n' "$sql" | sqlite3 -bail "$db" >/dev/null
echo "secrets: shared secrets taken up, turnserver's database rewritten ($count for realm $realm)" >&2
