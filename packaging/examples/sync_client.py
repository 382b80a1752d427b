#!/usr/bin/env python3
"""Durable acknowledgements from an app, without running `walship sync`.

An app that must not tell its user "saved" before the data is off the
machine asks the `walship replicate` of its database whether everything it
has committed so far is in the replica. This file is the whole client, in
Python's standard library only: copy `sync()` into the app and call it
after the commits that matter (an order placed, every 10th commit...).

The protocol, on the Unix socket replicate listens on for each database
(DB-walship/control.sock beside the database unless replicate was given
--control-socket or a control-socket in walship.toml), one line each way,
then replicate closes the connection:

    client: "sync 5s\\n"          (or "sync\\n": replicate's default, 5 s)
    server: "ok\\n"               everything committed to the database when
                                 the request arrived is in every replica
            "timeout MESSAGE\\n"  not within the timeout (MESSAGE says why,
                                 e.g. the replica's last storage error)
            "fenced MESSAGE\\n"   another writer took the replica over: this
                                 node's commits from now on are not kept
            "error MESSAGE\\n"    anything else (replicate stopped first, a
                                 bad request, too many waiters)

The socket is mode 0600, owned by the database file's owner: run the app as
that user (or root). The protocol is docs/DESIGN.md, "Control socket".

As a command it behaves like `walship sync` (exit 0 durable, 1 not durable
or no replicate, 4 fenced, 2 usage error):

    python3 sync_client.py [--timeout SECONDS] [--control-socket PATH] DB
"""
import argparse
import socket
import sys
import time

# How much longer than the timeout we give replicate to answer: it answers
# "timeout ..." itself once the timeout is up, so a missing answer after
# this long means it is wedged or gone, never that the store is slow.
ANSWER_GRACE_SECONDS = 10.0


class NotDurable(Exception):
    """The commits were not acknowledged as durable. `kind` is the answer's
    first word ("timeout", "fenced" or "error"), or "unreachable" when no
    replicate could be asked; `message` is the rest, for a person."""

    def __init__(self, kind, message):
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


def socket_path_of(db_path):
    """Where replicate listens for `db_path` by default."""
    return db_path + "-walship/control.sock"


def sync(db_path, timeout=5.0, socket_path=None):
    """Returns once everything committed to `db_path` before the call is in
    every replica; raises NotDurable otherwise. `timeout` is in seconds.

    Call it after the commit, never inside a transaction: replicate waits
    for what was committed when the request arrived."""
    path = socket_path or socket_path_of(db_path)
    # The protocol's durations are "5s", "500ms", "2m": whole milliseconds.
    millis = max(1, int(round(timeout * 1000)))
    duration = f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis}ms"
    deadline = time.monotonic() + timeout + ANSWER_GRACE_SECONDS
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.settimeout(timeout + ANSWER_GRACE_SECONDS)
        _connect(conn, path, db_path, deadline)
        try:
            try:
                conn.sendall(f"sync {duration}\n".encode())
            except BrokenPipeError:
                pass  # replicate answered (a refusal) and closed first: read its answer
            answer = b""
            while not answer.endswith(b"\n"):
                chunk = conn.recv(4096)
                if not chunk:
                    break  # closed without a whole line: replicate stopped or was killed
                answer += chunk
        except socket.timeout:
            waited = timeout + ANSWER_GRACE_SECONDS
            raise NotDurable("error", f"the replicate of '{db_path}' did not answer within {waited:g} s")
        except OSError as e:
            raise NotDurable("error", f"the replicate of '{db_path}' went away before answering: {e.strerror or e}")
    finally:
        conn.close()
    line = answer.decode("utf-8", "replace").rstrip("\n")
    if not line:
        raise NotDurable("error", f"the replicate of '{db_path}' stopped before answering")
    kind, _, message = line.partition(" ")
    if kind == "ok":
        return
    if kind in ("timeout", "fenced", "error"):
        raise NotDurable(kind, message)
    raise NotDurable("error", f"unexpected answer {line!r}")


def _connect(conn, path, db_path, deadline):
    """Connects `conn` to replicate's socket at `path`, or raises NotDurable
    saying why no replicate could be asked."""
    while True:
        try:
            conn.connect(path)
            return
        except BlockingIOError:
            # The listen backlog is full (many clients at once): replicate
            # is accepting them, so try again shortly.
            if time.monotonic() > deadline:
                raise NotDurable("error", f"the replicate of '{db_path}' accepted no connection in time")
            time.sleep(0.01)
        except FileNotFoundError:
            raise NotDurable("unreachable", f"no replicate of '{db_path}' is running (no socket '{path}')")
        except ConnectionRefusedError:
            # The socket file a killed replicate left behind: nobody listens.
            raise NotDurable("unreachable", f"no replicate of '{db_path}' is running (nothing listens on '{path}')")
        except PermissionError:
            raise NotDurable("unreachable", f"'{path}' is not accessible to this user: run as the database's owner")
        except OSError as e:
            raise NotDurable("unreachable", f"unable to connect to '{path}': {e.strerror or e}")


def main():
    parser = argparse.ArgumentParser(description="Wait until DB's commits are in every replica (like walship sync).")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait (default 5)")
    parser.add_argument("--control-socket", help="replicate's socket (default DB-walship/control.sock)")
    parser.add_argument("db")
    args = parser.parse_args()  # exits 2 on a usage error
    if args.timeout <= 0:
        parser.error("--timeout must be more than 0")
    try:
        sync(args.db, args.timeout, args.control_socket)
    except NotDurable as e:
        print(f"sync_client: {args.db}: {e}", file=sys.stderr)
        sys.exit(4 if e.kind == "fenced" else 1)


if __name__ == "__main__":
    main()
