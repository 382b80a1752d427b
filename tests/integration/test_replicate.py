"""replicate end to end on the filesystem backend, with real processes: the
writer app commits numbered transactions, walship replicate ships them, and
every restore must be exactly the source state after some transaction, with
nothing acknowledged lost on a graceful stop and at most the sync interval
(+1 s) lost when the replicator is killed."""
import glob
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import walship_test  # noqa: E402
from walship_test import WALSHIP, check_state, payload, run_tests, walship  # noqa: E402,F401

WRITER = os.path.join(os.path.dirname(__file__), "..", "lib", "writer_app.py")


def start_replicate(tmp, *args, name="replicate"):
    err = open(f"{tmp}/{name}.log", "a")
    return subprocess.Popen([WALSHIP, "-v", "replicate", *map(str, args)], stdout=subprocess.DEVNULL, stderr=err)


def start_writer(tmp, db, *args):
    return subprocess.Popen([sys.executable, WRITER, db, f"{tmp}/acks", *map(str, args)])


# This file's processes and waits are held to 30 s (walship_test's default: 60 s).
def stop(proc, sig=signal.SIGTERM, timeout=30):
    return walship_test.stop(proc, sig, timeout)


def wait_for(predicate, what, timeout=30):
    walship_test.wait_for(predicate, what, timeout)


def replica_has(replica, pattern):
    return lambda: bool(glob.glob(f"{replica}/{pattern}"))


def acks(tmp):
    """(n, monotonic_ns) of every commit the writer saw acknowledged."""
    if not os.path.exists(f"{tmp}/acks"):
        return []
    with open(f"{tmp}/acks") as f:
        return [tuple(map(int, line.split()[:2])) for line in f if line.count(" ") == 2]


def init_db(path):
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, payload BLOB NOT NULL)")
    db.execute("CREATE TABLE meta(k INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
    db.execute("INSERT INTO meta(k, n) VALUES(1, 0)")
    db.close()


def write(path, count, size=1000):
    """Commits `count` more numbered transactions in this process."""
    db = sqlite3.connect(path, isolation_level=None, timeout=30)
    n = db.execute("SELECT n FROM meta WHERE k = 1").fetchone()[0]
    for _ in range(count):
        n += 1
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO t(id, payload) VALUES(?, ?)", (n, payload(n, size)))
        db.execute("UPDATE meta SET n = ? WHERE k = 1", (n,))
        db.execute("COMMIT")
    db.close()
    return n


def source_n(path):
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute("SELECT n FROM meta WHERE k = 1").fetchone()[0]
    finally:
        db.close()


def restore(tmp, replica, out, *args):
    if os.path.exists(out):
        os.unlink(out)
    return walship("restore", replica, "-o", out, *args, check=0)


def snapshots(replica):
    return sorted(os.listdir(f"{replica}/snapshots"))


# ---------------------------------------------------------------------------


def test_graceful_stop_ships_every_acknowledged_commit(tmp):
    db, replica = f"{tmp}/app.db", f"{tmp}/replica"
    init_db(db)
    rep = start_replicate(tmp, db, replica)
    wait_for(replica_has(replica, "snapshots/*.snap"), "the initial snapshot")
    for burst in range(3):
        n = write(db, 200)
        # SIGTERM right after the burst: nothing may be missing.
        assert stop(rep) == 0
        restore(tmp, replica, f"{tmp}/out.db")
        assert check_state(f"{tmp}/out.db") == n, f"burst {burst}: restore lacks commits"
        # The next run must have caught the signals before it is stopped (a
        # SIGTERM that comes before main() kills any process).
        started = replicating_lines(tmp)
        rep = start_replicate(tmp, db, replica)
        wait_for(lambda: replicating_lines(tmp) > started, "the next replicate to start replicating")
    assert stop(rep) == 0
    assert snapshots(replica) == ["0000000000000001.snap"], snapshots(replica)


def test_restored_bytes_equal_the_checkpointed_source(tmp):
    db, replica = f"{tmp}/app.db", f"{tmp}/replica"
    init_db(db)
    write(db, 50, size=5000)
    rep = start_replicate(tmp, db, replica, "--sync-interval", "100ms")
    wait_for(replica_has(replica, "snapshots/*.snap"), "the initial snapshot")
    write(db, 300, size=3000)
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("DELETE FROM t WHERE id % 3 = 0")  # shrinks and frees pages
    conn.execute("UPDATE meta SET n = -1")
    conn.execute("VACUUM")
    conn.close()
    assert stop(rep) == 0
    restore(tmp, replica, f"{tmp}/out.db")
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    with open(db, "rb") as a, open(f"{tmp}/out.db", "rb") as b:
        assert a.read() == b.read(), "restored bytes differ from the source"


def test_every_txid_restores_to_a_whole_transaction(tmp):
    db, replica = f"{tmp}/app.db", f"{tmp}/replica"
    init_db(db)
    rep = start_replicate(tmp, db, replica, "--sync-interval", "200ms")
    wait_for(replica_has(replica, "snapshots/*.snap"), "the initial snapshot")
    expected = []
    for _ in range(5):
        expected.append(write(db, 40))
        time.sleep(0.6)
    assert stop(rep) == 0
    r = walship("ls", replica, "--json", check=0)
    import json
    points = json.loads(r.out)
    txids = sorted(p["txid"] for p in (points["points"] if isinstance(points, dict) else points))
    assert len(txids) >= 6, r.out
    seen = []
    for txid in txids:
        restore(tmp, replica, f"{tmp}/out.db", "--txid", txid)
        seen.append(check_state(f"{tmp}/out.db"))
    assert seen == sorted(seen), seen
    for n in expected:
        assert n in seen, f"the state after burst ending at {n} is not a restore point: {seen}"


def replicating_lines(tmp):
    """How many replicate runs logged that they started replicating."""
    with open(f"{tmp}/replicate.log") as f:
        return f.read().count('msg="replicating"')


def test_kill_9_of_the_replicator_loses_at_most_the_sync_interval(tmp):
    db, replica = f"{tmp}/app.db", f"{tmp}/replica"
    init_db(db)
    writer = start_writer(tmp, db, "--size", "3000")
    try:
        rep = start_replicate(tmp, db, replica)
        wait_for(replica_has(replica, "snapshots/*.snap"), "the initial snapshot")
        rng = random.Random(1234)
        last_kill = 0
        started = 0
        for _ in range(20):
            time.sleep(rng.uniform(0.3, 1.8))
            rep.kill()
            rep.wait()
            last_kill = time.monotonic_ns()
            time.sleep(rng.uniform(0.0, 0.3))
            started = replicating_lines(tmp)
            rep = start_replicate(tmp, db, replica)
        # The bound is the steady state's: the last replicate first catches up
        # with what the app wrote while none ran (a rehash when the app's
        # checkpoint restarted the WAL meanwhile, which takes long on a slow or
        # loaded machine), then it is killed 2.5-3.5 s later.
        try:
            wait_for(lambda: replicating_lines(tmp) > started, "the last replicate to start replicating", timeout=180)
        except AssertionError as e:
            state = "running" if rep.poll() is None else f"exited {rep.returncode}"
            with open(f"{tmp}/replicate.log") as f:
                raise AssertionError(f"{e} (it is {state}); its log ends:\n{f.read()[-4000:]}") from None
        time.sleep(rng.uniform(2.5, 3.5))
        rep.kill()
        rep.wait()
        last_kill = time.monotonic_ns()
    finally:
        stop(writer)  # never left running (it would hold the test's output open)
    restore(tmp, replica, f"{tmp}/out.db")
    n = check_state(f"{tmp}/out.db", size=3000)
    # Sync interval (1 s) + 1 s.
    must_have = [a for a, t in acks(tmp) if t < last_kill - 2_000_000_000]
    assert must_have, "the writer acknowledged nothing"
    assert n >= max(must_have), f"restore ends at {n}, but {max(must_have)} was acknowledged > 2 s before the kill"
    assert n <= source_n(db)


def test_kill_9_of_the_writer_mid_transaction_never_ships_it(tmp):
    db, replica = f"{tmp}/app.db", f"{tmp}/replica"
    init_db(db)
    rep = start_replicate(tmp, db, replica, "--sync-interval", "100ms")
    wait_for(replica_has(replica, "snapshots/*.snap"), "the initial snapshot")
    rng = random.Random(99)
    for _ in range(20):
        writer = start_writer(tmp, db, "--size", "20000")  # several pages a transaction
        time.sleep(rng.uniform(0.1, 0.6))
        writer.kill()
        writer.wait()
    assert stop(rep) == 0
    restore(tmp, replica, f"{tmp}/out.db")
    n = check_state(f"{tmp}/out.db", size=20000)
    # Graceful stop: every acknowledged commit is there. A transaction whose
    # commit frame was written when the writer died, but which SQLite had not
    # yet counted, may or may not be (SQLite itself counts it only after every
    # connection closed and the WAL is recovered); never half of one.
    acked = max(a for a, _ in acks(tmp))
    assert acked <= n <= source_n(db), f"restore ends at {n}: acknowledged {acked}, source {source_n(db)}"


def test_continuity_after_a_truncate_checkpoint_while_stopped(tmp):
    db, replica = f"{tmp}/app.db", f"{tmp}/replica"
    init_db(db)
    rep = start_replicate(tmp, db, replica)
    wait_for(replica_has(replica, "snapshots/*.snap"), "the initial snapshot")
    write(db, 100)
    assert stop(rep) == 0
    write(db, 100)
    conn = sqlite3.connect(db, isolation_level=None)
    assert conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0
    conn.close()
    n = write(db, 100)
    rep = start_replicate(tmp, db, replica)
    time.sleep(1)
    assert stop(rep) == 0
    restore(tmp, replica, f"{tmp}/out.db")
    assert check_state(f"{tmp}/out.db") == n
    # The pages that changed were shipped as a delta: no new snapshot.
    assert snapshots(replica) == ["0000000000000001.snap"], snapshots(replica)
    with open(f"{tmp}/replicate.log") as f:
        assert "rehashing" in f.read()


def test_an_app_checkpoint_holding_the_lock_never_costs_continuity(tmp):
    """The app runs RESTART checkpoints, which hold SQLite's checkpoint lock
    while they wait for walship's read transaction: walship's own checkpoint
    is then locked out, and must postpone, never give up on the WAL (a
    TRUNCATE behind its back costs a rehash of the whole database)."""
    db, replica = f"{tmp}/app.db", f"{tmp}/replica"
    init_db(db)
    rep = start_replicate(tmp, db, replica, "--sync-interval", "50ms", "--checkpoint-pages", "20")
    wait_for(replica_has(replica, "snapshots/*.snap"), "the initial snapshot")
    checkpointer = subprocess.Popen([sys.executable, "-c", f"""
import sqlite3, time
db = sqlite3.connect({db!r}, isolation_level=None, timeout=0.3)
end = time.monotonic() + 6
while time.monotonic() < end:
    db.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
"""])
    n = 0
    while checkpointer.poll() is None:
        n = write(db, 20)
    assert checkpointer.wait() == 0
    time.sleep(0.5)
    assert stop(rep) == 0
    with open(f"{tmp}/replicate.log") as f:
        log = f.read()
    assert "checkpoint" in log, log
    for bad in ("rehash", "continuity was lost", "TRUNCATE"):
        assert bad not in log, f"{bad!r} in the replicate log:\n{log}"
    restore(tmp, replica, f"{tmp}/out.db")
    assert check_state(f"{tmp}/out.db") == n


def test_restart_resumes_without_rehashing(tmp):
    db, replica = f"{tmp}/app.db", f"{tmp}/replica"
    init_db(db)
    rep = start_replicate(tmp, db, replica)
    wait_for(replica_has(replica, "snapshots/*.snap"), "the initial snapshot")
    # The app keeps its connection open, so nobody checkpoints on close.
    app = sqlite3.connect(db, isolation_level=None)
    app.execute("SELECT 1 FROM meta").fetchall()
    write(db, 20)
    assert stop(rep) == 0
    n = write(db, 20)  # fewer pages than the app's autocheckpoint: the WAL keeps them
    open(f"{tmp}/replicate.log", "w").close()
    rep = start_replicate(tmp, db, replica)
    time.sleep(1)
    assert stop(rep) == 0
    with open(f"{tmp}/replicate.log") as f:
        log = f.read()
    assert "rehashing" not in log and "snapshot written" not in log, log
    app.close()
    restore(tmp, replica, f"{tmp}/out.db")
    assert check_state(f"{tmp}/out.db") == n


def test_database_restored_underneath_continues_the_txid_sequence(tmp):
    db, replica = f"{tmp}/app.db", f"{tmp}/replica"
    init_db(db)
    rep = start_replicate(tmp, db, replica, "--sync-interval", "100ms")
    wait_for(replica_has(replica, "snapshots/*.snap"), "the initial snapshot")
    write(db, 50)
    time.sleep(0.5)
    # Someone restores an older copy over the live path (a new file).
    walship("restore", replica, "-o", db, "--txid", "1", "--force", check=0)
    n = write(db, 30)
    time.sleep(1)
    assert stop(rep) == 0
    restore(tmp, replica, f"{tmp}/out.db")
    assert check_state(f"{tmp}/out.db") == n == 30
    assert snapshots(replica) == ["0000000000000001.snap"], snapshots(replica)


def test_exec_runs_the_app_and_exits_with_its_code(tmp):
    db, replica = f"{tmp}/app.db", f"{tmp}/replica"
    init_db(db)
    r = walship("replicate", "--exec", f"{sys.executable} {WRITER} {db} {tmp}/acks --count 300 --exit-code 3", db,
                replica, timeout=120)
    assert r.code == 3, r
    restore(tmp, replica, f"{tmp}/out.db")
    assert check_state(f"{tmp}/out.db") == 300


def test_exec_forwards_sigterm_and_ships_after_the_app_exits(tmp):
    db, replica = f"{tmp}/app.db", f"{tmp}/replica"
    init_db(db)
    rep = start_replicate(tmp, "--exec", f"{sys.executable} {WRITER} {db} {tmp}/acks", db, replica)
    wait_for(lambda: len(acks(tmp)) > 500, "the app to commit")
    assert stop(rep) == 0  # the app stops cleanly on SIGTERM
    restore(tmp, replica, f"{tmp}/out.db")
    assert check_state(f"{tmp}/out.db") == max(a for a, _ in acks(tmp)) == source_n(db)


def test_exec_waits_for_the_app_to_create_the_database(tmp):
    """The first start on a fresh node: no database yet. walship waits for
    the app to create it and replicates it from its first transaction."""
    db, replica = f"{tmp}/app.db", f"{tmp}/replica"
    r = walship("replicate", "--exec", f"{sys.executable} {WRITER} {db} {tmp}/acks --count 200", db, replica,
                timeout=120)
    assert r.code == 0, r
    assert "waiting for the database to be created" in r.err and "the database was created" in r.err, r
    restore(tmp, replica, f"{tmp}/out.db")
    assert check_state(f"{tmp}/out.db") == 200


def test_wait_replicates_a_database_created_later(tmp):
    """A sidecar started before the app: --wait, a rollback-journal database
    first (a warning, still waiting), then the app switches it to WAL."""
    db, replica = f"{tmp}/app.db", f"{tmp}/replica"
    rep = start_replicate(tmp, "--wait", db, replica)
    time.sleep(0.5)
    assert rep.poll() is None, "replicate --wait exited on a missing database"
    plain = sqlite3.connect(db, isolation_level=None)
    plain.execute("CREATE TABLE early(x)")
    plain.close()
    wait_for(lambda: "not in WAL mode" in open(f"{tmp}/replicate.log").read(), "the not-in-WAL-mode warning")
    assert not os.path.exists(replica)
    init_db(db)
    write(db, 50)
    wait_for(replica_has(replica, "snapshots/*.snap"), "the first snapshot")
    assert stop(rep) == 0
    restore(tmp, replica, f"{tmp}/out.db")
    assert check_state(f"{tmp}/out.db") == 50
    r = walship("replicate", f"{tmp}/other.db", f"{tmp}/replica2", timeout=60)
    assert r.code == 2 and "does not exist" in r.err, r


def test_hundred_databases_in_one_process(tmp):
    os.mkdir(f"{tmp}/data")
    lines = ["[defaults]", 'sync-interval = "500ms"']
    for i in range(100):
        init_db(f"{tmp}/data/db{i}.db")
        lines += ["[[databases]]", f'path = "{tmp}/data/db{i}.db"', f'replicas = ["file://{tmp}/replicas/db{i}"]']
    with open(f"{tmp}/walship.toml", "w") as f:
        f.write("\n".join(lines) + "\n")
    rep = start_replicate(tmp, "--config", f"{tmp}/walship.toml")
    wait_for(lambda: len(glob.glob(f"{tmp}/replicas/*/snapshots/*.snap")) == 100, "100 initial snapshots", 120)
    for i in range(100):
        write(f"{tmp}/data/db{i}.db", i + 1)
    assert stop(rep, timeout=60) == 0
    for i in range(100):
        restore(tmp, f"{tmp}/replicas/db{i}", f"{tmp}/out.db")
        assert check_state(f"{tmp}/out.db") == i + 1


def test_directory_mode_picks_up_new_databases(tmp):
    os.mkdir(f"{tmp}/data")
    init_db(f"{tmp}/data/a.db")
    rep = start_replicate(tmp, "--dir", f"{tmp}/data", f"file://{tmp}/replicas")
    wait_for(replica_has(f"{tmp}/replicas/a.db", "snapshots/*.snap"), "a.db's snapshot")
    write(f"{tmp}/data/a.db", 10)
    init_db(f"{tmp}/data/b.db")
    write(f"{tmp}/data/b.db", 20)
    wait_for(replica_has(f"{tmp}/replicas/b.db", "snapshots/*.snap"), "b.db's snapshot")
    assert stop(rep) == 0
    restore(tmp, f"{tmp}/replicas/a.db", f"{tmp}/out.db")
    assert check_state(f"{tmp}/out.db") == 10
    restore(tmp, f"{tmp}/replicas/b.db", f"{tmp}/out.db")
    assert check_state(f"{tmp}/out.db") == 20


def test_compaction_levels_and_restore_from_them(tmp):
    db, replica = f"{tmp}/app.db", f"{tmp}/replica"
    init_db(db)
    with open(f"{tmp}/walship.toml", "w") as f:
        f.write(f"""
[defaults]
sync-interval = "100ms"
l1-span = "1s"
l2-span = "2s"
l3-span = "4s"

[[databases]]
path = "{db}"
replicas = ["file://{replica}"]
""")
    rep = start_replicate(tmp, "--config", f"{tmp}/walship.toml")
    wait_for(replica_has(replica, "snapshots/*.snap"), "the initial snapshot")
    deadline = time.monotonic() + 9
    while time.monotonic() < deadline:
        write(db, 5)
        time.sleep(0.05)
    wait_for(replica_has(replica, "deltas/L3/*.delta"), "an L3 file", 15)
    assert stop(rep) == 0
    for level in ("L1", "L2", "L3"):
        assert glob.glob(f"{replica}/deltas/{level}/*.delta"), f"no {level} files"
    r = restore(tmp, replica, f"{tmp}/out.db")
    assert check_state(f"{tmp}/out.db") == source_n(db)
    l0 = len(glob.glob(f"{replica}/deltas/L0/*.delta"))
    objects = int(r.out.split(" from ")[1].split()[0])
    assert objects < l0 / 2, f"restore read {objects} objects for {l0} L0 deltas: {r.out}"
    # A compacted file's end is a restore point too.
    l1 = sorted(glob.glob(f"{replica}/deltas/L1/*.delta"))[0]
    txid = os.path.basename(l1).split("-")[1].split(".")[0]
    restore(tmp, replica, f"{tmp}/out.db", "--txid", txid)
    check_state(f"{tmp}/out.db")


if __name__ == "__main__":
    run_tests([
        test_graceful_stop_ships_every_acknowledged_commit,
        test_restored_bytes_equal_the_checkpointed_source,
        test_every_txid_restores_to_a_whole_transaction,
        test_kill_9_of_the_replicator_loses_at_most_the_sync_interval,
        test_kill_9_of_the_writer_mid_transaction_never_ships_it,
        test_continuity_after_a_truncate_checkpoint_while_stopped,
        test_restart_resumes_without_rehashing,
        test_an_app_checkpoint_holding_the_lock_never_costs_continuity,
        test_database_restored_underneath_continues_the_txid_sequence,
        test_exec_runs_the_app_and_exits_with_its_code,
        test_exec_forwards_sigterm_and_ships_after_the_app_exits,
        test_exec_waits_for_the_app_to_create_the_database,
        test_wait_replicates_a_database_created_later,
        test_hundred_databases_in_one_process,
        test_directory_mode_picks_up_new_databases,
        test_compaction_levels_and_restore_from_them,
    ])
