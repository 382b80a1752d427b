"""A stand-in for an app: commits numbered transactions to a WAL database and
records each one it saw acknowledged, so tests can tell exactly which commits
a restore must contain.

Transaction n inserts row n of table t (payload(n, size), a few pages with
--size) and sets meta.n = n in the same transaction, so a restored database
that is not exactly the state after some transaction n is detected.

  python3 writer_app.py DB ACK_LOG [--count N] [--size BYTES] [--delay SECONDS] [--rate TX_PER_S] [--exit-code C]
                        [--durable-ack SOCKET]

Continues after the highest row already in DB. Each acknowledged commit is
appended to ACK_LOG as "n monotonic_ns wall_ns". SIGTERM stops it cleanly
(exit 0) after the transaction in progress.

With --durable-ack SOCKET (replicate's control socket, DB-walship/control.sock)
a commit is acknowledged only once walship says it is durable: a thread sends
`sync` on the socket and, on `ok`, acknowledges every commit made before it
sent it (one sync covers all the commits since the last; the app goes on
committing at --rate meanwhile), logging "n ack_monotonic_ns ack_wall_ns
commit_monotonic_ns". Any other answer (timeout, fenced, error, no socket) is
reported on stderr as `writer_app: sync answered '...'` and the commits stay
unacknowledged for the next sync; after `fenced` (another writer has the
replica) it acknowledges nothing more. On SIGTERM, the commits made are
synced once more (for at most 10 s) before it exits.
"""
import argparse
import os
import signal
import socket
import sqlite3
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from walship_test import payload  # noqa: E402

stop = False


def on_term(_sig, _frame):
    global stop
    stop = True


def sync(path):
    """One `sync` on replicate's control socket: its answer line ('ok', 'timeout ...',
    'fenced ...', 'error ...'), or what kept it from answering."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(30)
        s.connect(path)
        s.sendall(b"sync\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        return data.decode(errors="replace").strip() or "(closed without an answer)"
    except OSError as e:
        return f"(socket: {e})"
    finally:
        s.close()


class DurableAcks:
    """Acknowledges commits once a `sync` sent after them answered ok."""

    def __init__(self, path, log):
        self.path, self.log = path, log
        self.pending = []  # (n, commit monotonic_ns) not acknowledged yet
        self.cond = threading.Condition()
        self.stopping = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def committed(self, n, commit_ns):
        with self.cond:
            self.pending.append((n, commit_ns))
            self.cond.notify()

    def run(self):
        while True:
            with self.cond:
                while not self.pending and not self.stopping:
                    self.cond.wait()
                if not self.pending:
                    return
                batch = list(self.pending)  # every commit made before the sync is sent
            answer = sync(self.path)
            if answer != "ok":
                print(f"writer_app: sync answered {answer!r}; {len(batch)} commits stay unacknowledged",
                      file=sys.stderr, flush=True)
                if answer.startswith("fenced"):
                    return  # no later sync can make them durable: nothing more is acknowledged
                with self.cond:
                    if self.stopping:
                        return
                time.sleep(0.05)
                continue
            now, wall = time.monotonic_ns(), time.time_ns()
            self.log.write("".join(f"{n} {now} {wall} {t}\n" for n, t in batch))
            with self.cond:
                del self.pending[:len(batch)]

    def finish(self, timeout):
        """Waits up to `timeout` s for the commits made to be acknowledged."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.thread.is_alive():
            with self.cond:
                if not self.pending:
                    break
            time.sleep(0.01)
        with self.cond:
            self.stopping = True
            self.cond.notify()


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
    parser.add_argument("--durable-ack", metavar="SOCKET", help="acknowledge only what `sync` on SOCKET made durable")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, on_term)
    init_db(args.db)
    db = sqlite3.connect(args.db, isolation_level=None, timeout=30)
    n = db.execute("SELECT n FROM meta WHERE k = 1").fetchone()[0]
    done = 0
    next_due = time.monotonic()
    with open(args.ack_log, "a", buffering=1) as log:
        durable = DurableAcks(args.durable_ack, log) if args.durable_ack else None
        while not stop and (args.count == 0 or done < args.count):
            n += 1
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO t(id, payload) VALUES(?, ?)", (n, payload(n, args.size)))
            db.execute("UPDATE meta SET n = ? WHERE k = 1", (n,))
            db.execute("COMMIT")
            if durable:
                durable.committed(n, time.monotonic_ns())
            else:
                log.write(f"{n} {time.monotonic_ns()} {time.time_ns()}\n")
            done += 1
            if args.delay:
                time.sleep(args.delay)
            if args.rate:
                # A steady schedule, not a pause after each commit: a slow
                # commit is caught up on, but never by more than a second.
                next_due = max(next_due + 1 / args.rate, time.monotonic() - 1)
                time.sleep(max(0.0, next_due - time.monotonic()))
        if durable:
            durable.finish(10)
            durable.thread.join(timeout=35)
    db.close()
    sys.exit(args.exit_code)


if __name__ == "__main__":
    main()
