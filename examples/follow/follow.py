#!/usr/bin/env python3
"""Follows registry-api's route tables over its event stream.

    follow.py [ENV | --all] [-o FILE] [--registry URL] [--max-backoff SECONDS]

Follows one env (default $FOLLOW_ENV, else prod) or, with --all, every env.
Keeps the tables in memory, prints one line per event and, with -o, replaces
FILE atomically after each one with the table in the shape GET .../routes
answers. Reconnects with Last-Event-ID, so that a reconnect sends only what
changed. Runs until SIGTERM or Ctrl-C. Python 3.8+, standard library only.
"""

import argparse
import http.client
import json
import os
import random
import signal
import sys
import time
import urllib.error
import urllib.request


def events(resp, conn):
    """Yields (type, data, id) per event of a text/event-stream, parsed as
    the HTML standard says; a retry field sets conn["retry"] (seconds)."""
    etype, data, last_id, first = "", [], conn.get("id"), True
    for raw in resp:
        if raw.endswith(b"\n"):
            raw = raw[:-1]
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        text = raw.decode("utf-8", "replace")
        if first and text.startswith("\ufeff"):
            text = text[1:]  # a byte order mark may open the stream
        first = False
        for line in text.split("\r"):  # a lone CR ends a line too, once an LF ends the read
            if line == "":  # a blank line dispatches the event
                if data:
                    yield etype or "message", "\n".join(data), last_id
                etype, data = "", []
                continue
            if line.startswith(":"):
                continue  # a comment: the server's ping
            name, colon, value = line.partition(":")
            if colon and value.startswith(" "):
                value = value[1:]
            if name == "event":
                etype = value
            elif name == "data":
                data.append(value)
            elif name == "id" and "\0" not in value:
                last_id = value
            elif name == "retry" and value.isdigit():
                conn["retry"] = int(value) / 1000
    # An event cut off before its blank line is dropped, as the standard says.


class Tables:
    """The route tables the stream describes: env -> method -> route."""

    def __init__(self):
        self.envs = {}

    def snapshot(self, body):
        # One env's snapshot is {"env", "routes"}; every env's is {"envs": [...]}.
        tables = body["envs"] if "envs" in body else [body]
        self.envs = {t["env"]: {r["method"]: r for r in t["routes"]} for t in tables}

    def change(self, body):
        for c in body["envs"]:
            routes = self.envs.setdefault(c["env"], {})
            for r in c["added"] + c["changed"]:
                routes[r["method"]] = r
            for method in c["removed"]:
                routes.pop(method, None)

    def render(self, env):
        table = lambda e: {"env": e, "routes": [r for _, r in sorted(self.envs.get(e, {}).items())]}
        return table(env) if env else {"envs": [table(e) for e in sorted(self.envs)]}


def write_atomically(path, doc):
    tmp = "%s.part.%d" % (path, os.getpid())
    try:
        with open(tmp, "w") as f:
            json.dump(doc, f, separators=(",", ":"))
            f.write("\n")
        os.replace(tmp, path)  # a reader sees the old table or the new one
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)  # cut short: by SIGTERM, or a full disk


def log(*parts):
    print(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), *parts, file=sys.stderr, flush=True)


def follow(url, env, out, max_backoff):
    tables, conn, failures = Tables(), {"retry": 1.0, "id": None}, 0
    while True:
        headers = {"Accept": "text/event-stream"}
        if conn["id"]:
            headers["Last-Event-ID"] = conn["id"]  # the tag we hold, from any replica
        delay = None
        try:
            # No byte for 45 s (pings come every 15 s) means the connection is dead.
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=45) as resp:
                if not resp.headers.get("Content-Type", "").startswith("text/event-stream"):
                    raise ValueError("not an event stream: %s" % resp.headers.get("Content-Type"))
                failures = 0
                for etype, data, eid in events(resp, conn):
                    if etype == "reset":  # the replica drains, or we fell behind: reconnect
                        log("reset:", data)
                        break
                    if etype == "snapshot":
                        tables.snapshot(json.loads(data))
                        print("snapshot", eid, " ".join("%s:%d" % (e, len(r)) for e, r in sorted(tables.envs.items())), flush=True)
                    elif etype == "change":
                        body = json.loads(data)
                        tables.change(body)
                        for c in body["envs"]:
                            marks = ["+" + r["method"] for r in c["added"]] + ["~" + r["method"] for r in c["changed"]]
                            print("change", eid, c["env"], *(marks + ["-" + m for m in c["removed"]]), flush=True)
                    else:
                        continue
                    conn["id"] = eid  # only once the event is applied
                    if out:
                        write_atomically(out, tables.render(env))
                else:
                    log("stream ended")
        except urllib.error.HTTPError as e:
            failures += 1
            retry_after = e.headers.get("Retry-After", "")
            delay = int(retry_after) if retry_after.isdigit() else None  # 503 too_many_followers
            log("answered", e.code, e.reason)
        except (OSError, http.client.HTTPException, ValueError) as e:
            failures += 1
            log("no stream:", e)
        if delay is None and not failures:
            delay = conn["retry"]  # the server's, after a clean end
        elif delay is None:
            # Doubled per failure in a row up to the cap, with jitter so
            # that the followers a restart disconnected spread out.
            delay = min(conn["retry"] * 2 ** (failures - 1) * random.uniform(1, 1.25), max_backoff)
        if failures:
            log("reconnecting in %.1fs" % delay)
        time.sleep(delay)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("env", nargs="?", default=os.environ.get("FOLLOW_ENV", "prod"))
    p.add_argument("--all", action="store_true", help="follow every env")
    p.add_argument("-o", "--out", help="write the table to this file after each event")
    p.add_argument("--registry", default=os.environ.get("REGISTRY", "http://localhost:8080"))
    p.add_argument("--max-backoff", type=float, default=30, help="cap of the delay between failed attempts")
    a = p.parse_args()
    env = None if a.all else a.env
    url = a.registry.rstrip("/") + ("/v1/routes/events" if a.all else "/v1/envs/%s/routes/events" % a.env)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    log("following", url)
    try:
        follow(url, env, a.out, a.max_backoff)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
