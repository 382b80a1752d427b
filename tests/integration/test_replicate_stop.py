"""A stop never hangs (issue 17, item 0): walship replicate --dir over 1 and
200 WAL databases, idle after their first snapshot, and the same with a few
commits left unshipped when the signal comes: SIGTERM makes it ship what is
committed and exit 0, and every commit is then in the replica. 1000
databases take about a minute here (their first snapshots): set
WALSHIP_STOP_DBS="1,200,1000" (or more, within the descriptor limit) to
run them too."""
import glob
import os
import resource
import sqlite3
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from walship_test import WALSHIP, run_tests, skip, stop, wait_for, walship  # noqa: E402

# Descriptors a replicated database holds (two SQLite connections with their
# -wal and -shm, the WAL and index walship reads, ...), with room to spare.
FDS_PER_DB = 10


def counts():
    return [int(c) for c in os.environ.get("WALSHIP_STOP_DBS", "1,200").split(",")]


def make_dbs(data, count):
    os.makedirs(data)
    for i in range(count):
        db = sqlite3.connect(f"{data}/db{i:04}.db", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE t(n INTEGER PRIMARY KEY)")
        db.execute("INSERT INTO t VALUES(0)")
        db.close()


def commit(path, n):
    db = sqlite3.connect(path, isolation_level=None, timeout=30)
    db.execute("INSERT INTO t VALUES(?)", (n,))
    db.close()


def log_text(path):
    with open(path) as f:
        return f.read()


def restored_max(tmp, replica):
    out = f"{tmp}/out.db"
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(out + suffix):
            os.unlink(out + suffix)
    walship("restore", replica, "-o", out, check=0)
    db = sqlite3.connect(f"file:{out}?mode=ro", uri=True)
    try:
        return db.execute("SELECT max(n) FROM t").fetchone()[0]
    finally:
        db.close()


def run_and_stop(tmp, count, busy):
    """Replicates `count` databases, stops, and checks every commit shipped."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < count * FDS_PER_DB + 100:
        skip(f"{count} databases need about {count * FDS_PER_DB} descriptors; the limit here is {hard}")
    base = f"{tmp}/{count}-{'busy' if busy else 'idle'}"
    data, replicas, log = f"{base}/data", f"{base}/replicas", f"{base}/replicate.log"
    make_dbs(data, count)
    with open(log, "a") as err:
        rep = subprocess.Popen([WALSHIP, "replicate", "--dir", data, f"file://{replicas}", "--sync-interval", "1h"],
                               stdout=subprocess.DEVNULL, stderr=err)
    try:
        wait_for(lambda: len(glob.glob(f"{replicas}/*/snapshots/*.snap")) == count,
                 f"{count} initial snapshots", timeout=600)
        wait_for(lambda: "replicate started" in log_text(log), "replicate to start")
        # With a sync interval of an hour, these are shipped by the stop only.
        written = list(range(0, count, max(1, count // 20))) if busy else []
        for i in written:
            commit(f"{data}/db{i:04}.db", 1)
        began = time.monotonic()
        code = stop(rep, timeout=120)
        took = time.monotonic() - began
    finally:
        if rep.poll() is None:
            rep.kill()
            rep.wait()
    assert code == 0, (code, log_text(log)[-3000:])
    assert "stopped: everything committed is shipped" in log_text(log), log_text(log)[-3000:]
    for i in written:
        assert restored_max(tmp, f"file://{replicas}/db{i:04}.db") == 1, f"db{i:04}.db's commit was not shipped"
    print(f"    {count} databases, {'busy' if busy else 'idle'}: stopped in {took:.1f} s")


def test_a_stop_over_many_idle_databases_exits(tmp):
    for count in counts():
        run_and_stop(tmp, count, busy=False)


def test_a_stop_over_many_databases_ships_what_is_committed(tmp):
    for count in counts():
        run_and_stop(tmp, count, busy=True)


if __name__ == "__main__":
    run_tests([test_a_stop_over_many_idle_databases_exits, test_a_stop_over_many_databases_ships_what_is_committed])
