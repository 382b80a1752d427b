"""A stand-in for an app: commits numbered transactions to a WAL database and
records each one it saw acknowledged, so tests can tell exactly which commits
a restore must contain.

Transaction n inserts row n of table t (payload(n, size), a few pages with
--size) and sets meta.n = n in the same transaction, so a restored database
that is not exactly the state after some transaction n is detected.

  python3 writer_app.py DB ACK_LOG [--count N] [--size BYTES] [--delay SECONDS] [--rate TX_PER_S] [--exit-code C]

Continues after the highest row already in DB. Each acknowledged commit is
appended to ACK_LOG as "n monotonic_ns wall_ns". SIGTERM stops it cleanly
(exit 0) after the transaction in progress.
"""
import argparse
import os
import signal
import sqlite3
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from walship_test import payload  # noqa: E402

stop = False


def on_term(_sig, _frame):
    global stop
    stop = True


def init_db(path):
    db = sqlite3.connect(path, isolation_level=None, timeout=30)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, payload BLOB NOT NULL)")
    db.execute("CREATE TABLE IF NOT EXISTS meta(k INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
    db.execute("INSERT OR IGNORE INTO meta(k, n) VALUES(1, 0)")
    db.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("db")
    parser.add_argument("ack_log")
    parser.add_argument("--count", type=int, default=0, help="0: until SIGTERM")
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--rate", type=float, default=0.0, help="commits per second (0: as fast as it can)")
    parser.add_argument("--exit-code", type=int, default=0)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, on_term)
    init_db(args.db)
    db = sqlite3.connect(args.db, isolation_level=None, timeout=30)
    n = db.execute("SELECT n FROM meta WHERE k = 1").fetchone()[0]
    done = 0
    next_due = time.monotonic()
    with open(args.ack_log, "a", buffering=1) as log:
        while not stop and (args.count == 0 or done < args.count):
            n += 1
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO t(id, payload) VALUES(?, ?)", (n, payload(n, args.size)))
            db.execute("UPDATE meta SET n = ? WHERE k = 1", (n,))
            db.execute("COMMIT")
            log.write(f"{n} {time.monotonic_ns()} {time.time_ns()}\n")
            done += 1
            if args.delay:
                time.sleep(args.delay)
            if args.rate:
                # A steady schedule, not a pause after each commit: a slow
                # commit is caught up on, but never by more than a second.
                next_due = max(next_due + 1 / args.rate, time.monotonic() - 1)
                time.sleep(max(0.0, next_due - time.monotonic()))
    db.close()
    sys.exit(args.exit_code)


if __name__ == "__main__":
    main()
