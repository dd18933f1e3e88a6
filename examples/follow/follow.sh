#!/usr/bin/env bash
# Follows one env's route table with blocking queries and keeps it in a file.
#
#   follow.sh [env [file [reload-command]]]
#
#   env             the env to follow (default $FOLLOW_ENV, else prod)
#   file            where the table goes (default routes-<env>.json); it is
#                   replaced atomically, so a reader never sees half of it
#   reload-command  run with sh -c after each new table, e.g. 'nginx -s reload'
#
#   REGISTRY            registry-api's base URL (default http://localhost:8080)
#   FOLLOW_WAIT         seconds each query waits for a change (default 60)
#   FOLLOW_MAX_BACKOFF  cap of the delay between failed attempts (default 30)
#
# It runs until it gets SIGTERM or SIGINT. Needs bash, curl, awk and tr.
set -u

registry=${REGISTRY:-http://localhost:8080}
env=${1:-${FOLLOW_ENV:-prod}}
out=${2:-routes-$env.json}
reload=${3:-}
wait_s=${FOLLOW_WAIT:-60}
max_backoff=${FOLLOW_MAX_BACKOFF:-30}
url=$registry/v1/envs/$env/routes

# The body lands beside the file, so that the final mv is a rename.
part=$out.part.$$
hdrs=$(mktemp) || exit 1

log() { echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) follow $env: $*" >&2; }

stop() {
  # Every job, not one noted in a variable: the signal may come between
  # starting a job and noting it.
  kill $(jobs -p) 2>/dev/null
  rm -f "$part" "$hdrs" "$hdrs.code"
  log "stopped"
  exit 0
}
# Commands run in the background and are waited for, so that a signal is
# handled at once, not when a 60 s query or a sleep ends.
trap stop TERM INT

header() { awk -F': *' -v h="$1" 'tolower($1)==h {v=$2} END {print v}' "$hdrs" | tr -d '\r'; }

pause() { sleep "$1" & wait $!; }

tag=        # the tag of the table we hold; carried over to every replica
backoff=1
log "following $url into $out"
while :; do
  args=(-sS --compressed -o "$part" -D "$hdrs" -w '%{http_code}'
        --connect-timeout 5 --max-time $((wait_s + 30)) -H "Prefer: wait=$wait_s")
  [ -n "$tag" ] && args+=(-H "If-None-Match: $tag")
  : >"$hdrs"
  began=$SECONDS
  curl "${args[@]}" "$url" >"$hdrs.code" &
  wait $!; rc=$?
  code=$(cat "$hdrs.code" 2>/dev/null); rm -f "$hdrs.code"
  [ "$rc" -eq 0 ] || code=000   # no answer, or an answer cut short

  new=$(header etag)
  case $code in
    200)
      if [ -n "$new" ]; then
        mv -f "$part" "$out"
        tag=$new backoff=1
        log "routes changed, now $tag"
        if [ -n "$reload" ] && ! sh -c "$reload"; then
          log "reload command failed; the next change runs it again"
        fi
        continue
      fi
      log "answer without an ETag" ;;   # without one, the next query would not wait
    304)
      # No change within the wait. One that came back at once (a replica
      # draining, or something between us that ignores Prefer) is not
      # retried at once, so that nothing spins.
      backoff=1
      [ $((SECONDS - began)) -ge 1 ] || pause 1
      continue ;;
  esac

  # Anything else: keep the table we hold and try again later, when the
  # server says (Retry-After on 503 too_many_followers or 429), else after
  # a delay that doubles up to the cap, with jitter so that the gateways a
  # restart disconnected do not come back all at once.
  rm -f "$part"
  delay=$(header retry-after)
  case $delay in
    '' | *[!0-9]*)
      delay=$((backoff + RANDOM % (backoff / 2 + 1)))
      delay=$((delay > max_backoff ? max_backoff : delay))
      backoff=$((backoff * 2 > max_backoff ? max_backoff : backoff * 2)) ;;
  esac
  if [ "$code" = 000 ]; then
    log "no answer from $registry (curl exit $rc); retrying in ${delay}s"
  else
    log "answered $code; retrying in ${delay}s"
  fi
  pause "$delay"
done
