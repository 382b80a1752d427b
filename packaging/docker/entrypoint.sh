#!/bin/sh
# Restore on every start, then run the app under walship:
#
#   walship-entrypoint APP [ARG...]
#
# 1. Restores $WALSHIP_DB from $WALSHIP_REPLICA (restore --fast-forward
#    --delta): on a fresh disk; on an old disk whose database is an older
#    point of the replica (a node that comes back after another wrote on: it
#    starts from the old file's pages and fetches only the deltas since, and
#    the old file is kept as $WALSHIP_DB.walship-old); not when the database is already the
#    newest (a restart on the same volume) or there is no replica yet (the
#    very first start). A database holding writes the replica never got while
#    another node wrote on stops the start with exit 4: an operator decides.
# 2. Runs `walship replicate --exec "APP ARG..."`: replication starts first
#    (on the very first start, as soon as the app creates the database),
#    signals go to the app, and after the app exits walship ships what is
#    committed and exits with the app's code.
#
# Environment: WALSHIP_DB, WALSHIP_REPLICA (required), WALSHIP_REPLICATE_ARGS
# (extra replicate options, e.g. "--sync-interval 1s"), plus the replica's
# credentials (AWS_*, GOOGLE_APPLICATION_CREDENTIALS, ...).
set -eu

: "${WALSHIP_DB:?set WALSHIP_DB to the database path}"
: "${WALSHIP_REPLICA:?set WALSHIP_REPLICA to the replica URL}"
[ $# -gt 0 ] || { echo "walship-entrypoint: give the app's command as arguments" >&2; exit 2; }

mkdir -p "$(dirname "$WALSHIP_DB")"
walship restore --if-replica-exists --fast-forward --delta "$WALSHIP_REPLICA" -o "$WALSHIP_DB"

# walship splits --exec like a shell: quote every argument.
app=""
for arg in "$@"; do
  quoted=$(printf '%s' "$arg" | sed "s/'/'\\\\''/g")
  app="$app '$quoted'"
done
# shellcheck disable=SC2086 # WALSHIP_REPLICATE_ARGS is a list of options
exec walship replicate ${WALSHIP_REPLICATE_ARGS:-} --exec "$app" "$WALSHIP_DB" "$WALSHIP_REPLICA"
