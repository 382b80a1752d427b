"""A stop never hangs (issue 17, item 0): walship replicate --dir over many WAL
databases, idle after their first snapshot, and the same with commits left
unshipped when the signal comes: SIGTERM makes it ship what is committed and
exit 0 within the default --shutdown-timeout (a spot node's notice is 30 s),
and every commit is then in the replica. 1 and 200 databases by default;
`many` (a CTest test of its own, left out of the sanitizer pass): 1000 and
3000. `descriptors` (a CTest test of its own, left out of the sanitizer
pass: their runtime needs descriptors of its own): under a descriptor limit
too low for the databases, it says so once and a stop still exits."""
import glob
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from walship_test import WALSHIP, run_tests, skip, stop, wait_for, walship  # noqa: E402

# Descriptors an idle replicated database holds: SQLite's connection with
# its -wal and -shm, the database descriptor SQLite keeps while another of
# its connections holds locks, walship's -shm, the control socket.
FDS_PER_DB = 6
# The default --shutdown-timeout (lib/config/option_defs.h), in seconds.
SHUTDOWN_TIMEOUT_S = 20
COUNTS = [1000, 3000] if sys.argv[1:] == ["many"] else [1, 200]


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
    # In /dev/shm when there is one: thousands of first snapshots do not wait
    # on the disk's fsyncs.
    base = tempfile.mkdtemp(prefix=f"walship-stop-{count}-", dir="/dev/shm" if os.path.isdir("/dev/shm") else tmp)
    try:
        run_and_stop_in(tmp, base, count, busy)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def run_and_stop_in(tmp, base, count, busy):
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
        written = range(count) if busy else []
        for i in written:
            commit(f"{data}/db{i:04}.db", 1)
        began = time.monotonic()
        try:
            code = stop(rep, timeout=SHUTDOWN_TIMEOUT_S)
        except AssertionError as e:
            raise AssertionError(f"{e}; its log ends:\n{log_text(log)[-3000:]}") from None
        took = time.monotonic() - began
    finally:
        if rep.poll() is None:
            rep.kill()
            rep.wait()
    assert code == 0, (code, log_text(log)[-3000:])
    assert "stopped: everything committed is shipped" in log_text(log), log_text(log)[-3000:]
    if busy:
        # Each database's commit is a delta, and a sample restores it.
        shipped = glob.glob(f"{replicas}/*/deltas/L0/*.delta")
        assert len(shipped) == count, f"{len(shipped)} of {count} databases' commits were shipped"
        for i in range(0, count, max(1, count // 10)):
            assert restored_max(tmp, f"file://{replicas}/db{i:04}.db") == 1, f"db{i:04}.db's commit was not shipped"
    print(f"    {count} databases, {'busy' if busy else 'idle'}: stopped in {took:.1f} s")


def test_a_stop_over_many_idle_databases_exits(tmp):
    for count in COUNTS:
        run_and_stop(tmp, count, busy=False)


def test_a_stop_over_many_databases_ships_what_is_committed(tmp):
    for count in COUNTS:
        run_and_stop(tmp, count, busy=True)


def test_out_of_descriptors_is_said_once_and_a_stop_still_exits(tmp):
    """Under a descriptor limit too low for its databases, replicate says so
    in one line naming the limit and what to do (not a "Too many open files"
    per database and retry), replicates the databases that fit, and SIGTERM
    still exits within the shutdown timeout, naming each database it could
    not ship (exit 1)."""
    count, limit = 60, 150
    data, replicas, log = f"{tmp}/data", f"{tmp}/replicas", f"{tmp}/replicate.log"
    make_dbs(data, count)
    with open(log, "a") as err:
        rep = subprocess.Popen([WALSHIP, "-v", "replicate", "--dir", data, f"file://{replicas}"],
                               stdout=subprocess.DEVNULL, stderr=err,
                               preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit)))
    try:
        wait_for(lambda: "out of file descriptors" in log_text(log), "the report of the limit")
        wait_for(lambda: glob.glob(f"{replicas}/*/snapshots/*.snap"), "the databases that fit to ship")
        time.sleep(3)  # a few rounds of retries
        code = stop(rep, timeout=SHUTDOWN_TIMEOUT_S)
    finally:
        if rep.poll() is None:
            rep.kill()
            rep.wait()
    text = log_text(log)
    said = [line for line in text.splitlines() if "out of file descriptors" in line]
    assert len(said) == 1 and f"limit={limit}" in said[0] and "LimitNOFILE=" in said[0], said
    retried = [line for line in text.splitlines() if "level=error" in line and "unable to replicate" in line]
    assert not [line for line in retried if "Too many open files" in line], retried[:3]
    assert "raised the file descriptor limit" not in text  # soft and hard were equal
    assert code == 1 and "stopped with errors" in text, (code, text[-2000:])
    unshipped = [line for line in text.splitlines() if "unable to ship before exiting" in line]
    shipped = len(glob.glob(f"{replicas}/*/snapshots/*.snap"))
    assert 0 < shipped < count and len(unshipped) >= count - shipped, (shipped, len(unshipped))


if __name__ == "__main__":
    if sys.argv[1:] == ["descriptors"]:
        run_tests([test_out_of_descriptors_is_said_once_and_a_stop_still_exits])
    else:
        run_tests([test_a_stop_over_many_idle_databases_exits, test_a_stop_over_many_databases_ships_what_is_committed])
