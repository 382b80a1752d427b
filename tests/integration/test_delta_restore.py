"""restore --delta, for a node back with a stale copy: when PATH is a point
of the replica, only the deltas from there are fetched and applied onto a
copy of its pages; the result is byte for byte a full restore's, and
anything else (a copy that is no point, a bad delta, an older target) is a
full restore that says why."""
import glob
import os
import random
import re
import shutil
import sqlite3
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
from walship_test import expect_one_error_line, run_tests, walship  # noqa: E402

sys.path.insert(0, HERE)
from test_replicate import start_replicate, stop, wait_for  # noqa: E402

ROW = 1000  # bytes of random data a row: about 4 to a 4 KiB page


def read(path):
    with open(path, "rb") as f:
        return f.read()


def connect(path):
    db = sqlite3.connect(path, isolation_level=None, timeout=30)
    db.execute("PRAGMA journal_mode=WAL")
    return db


def create(path, rows):
    db = connect(path)
    db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB NOT NULL)")
    db.execute("BEGIN")
    db.executemany("INSERT INTO t(v) VALUES(randomblob(?))", [(ROW,)] * rows)
    db.execute("COMMIT")
    db.close()


def change(path, rng, updates=0, inserts=0, deletes=0, vacuum=False):
    """One transaction of random updates, inserts and deletes (then VACUUM)."""
    db = connect(path)
    ids = [r[0] for r in db.execute("SELECT id FROM t")]
    db.execute("BEGIN")
    for i in rng.sample(ids, min(updates, len(ids))):
        db.execute("UPDATE t SET v = randomblob(?) WHERE id = ?", (ROW, i))
    for i in rng.sample(ids, min(deletes, len(ids))):
        db.execute("DELETE FROM t WHERE id = ?", (i,))
    db.executemany("INSERT INTO t(v) VALUES(randomblob(?))", [(ROW,)] * inserts)
    db.execute("COMMIT")
    if vacuum:
        db.execute("VACUUM")
    db.close()


def restore(*args, check=None):
    return walship("restore", *args, check=check)


def fetched(result):
    """Bytes the restore fetched, from its "restored" log line."""
    found = re.search(r'msg="restored" .* bytes=(\d+)', result.err)
    assert found, result
    return int(found.group(1))


def read_state(db):
    """The bytes a restore of db's current state gives: a checkpointed copy."""
    c = sqlite3.connect(db, isolation_level=None, timeout=30)
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.close()
    return read(db)


def first_snapshot(replica):
    wait_for(lambda: glob.glob(f"{replica}/snapshots/*.snap"), "the first snapshot")
    return os.path.basename(glob.glob(f"{replica}/snapshots/*.snap")[0]).split(".")[0]


def stale_node(tmp, rows=4000, seed=1, **changes):
    """A replica whose first point a node kept a copy of (stale.db, restored
    from it), and that then moved on by `changes`. Returns (stale, replica,
    full): full is a full restore of the newest point."""
    db, replica, stale, full = f"{tmp}/app.db", f"{tmp}/replica", f"{tmp}/stale.db", f"{tmp}/full.db"
    create(db, rows)
    rep = start_replicate(tmp, db, replica, "--sync-interval", "100ms")
    restore("--txid", first_snapshot(replica), replica, "-o", stale, check=0)
    change(db, random.Random(seed), **changes)
    assert stop(rep) == 0  # ships every commit
    restore(replica, "-o", full, check=0)
    assert read(full) == read_state(db)
    return stale, replica, full


def test_a_stale_copy_with_one_percent_changed_fetches_only_the_deltas(tmp):
    stale, replica, full = stale_node(tmp, rows=8000, updates=20)
    full_bytes = fetched(restore("--force", replica, "-o", f"{tmp}/again.db", check=0))
    r = restore("--delta", "--force", replica, "-o", stale, check=0)
    assert re.search(r"reused the local pages of TXID 0000000000000001, fetched", r.out), r
    assert read(stale) == read(full)
    assert fetched(r) < full_bytes * 0.05, f"{fetched(r)} of {full_bytes} bytes: {r}"
    assert not os.path.exists(f"{stale}-wal"), "a stale WAL would corrupt the result"
    db = sqlite3.connect(f"file:{stale}?mode=ro", uri=True)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()


def test_random_changes_shrinking_and_growing_give_a_full_restores_bytes(tmp):
    for seed, changes in enumerate([dict(updates=300, inserts=50),
                                    dict(deletes=2500, vacuum=True),      # shrunk
                                    dict(inserts=3000, updates=10),       # grown
                                    dict(deletes=1000, inserts=400, updates=200, vacuum=True)]):
        case = f"{tmp}/case{seed}"
        os.mkdir(case)
        stale, replica, full = stale_node(case, rows=3000, seed=seed, **changes)
        r = restore("--delta", "--force", replica, "-o", stale, check=0)
        assert "reused the local pages" in r.out, (changes, r)
        assert read(stale) == read(full), changes


def test_a_stale_copy_with_its_wal_is_read_through_it(tmp):
    """The stale copy's last commit is still in its WAL (a copy of a live
    node's disk): it is part of the point the copy holds."""
    db, replica, stale = f"{tmp}/app.db", f"{tmp}/replica", f"{tmp}/stale.db"
    create(db, 2000)
    rep = start_replicate(tmp, db, replica, "--sync-interval", "100ms")
    first_snapshot(replica)
    holder = connect(db)  # keeps the WAL from being checkpointed away at close
    change(db, random.Random(3), updates=30)
    wait_for(lambda: glob.glob(f"{replica}/deltas/L0/*.delta"), "the first delta")
    shutil.copy(db, stale)
    shutil.copy(db + "-wal", stale + "-wal")
    assert os.path.getsize(stale + "-wal") > 0, "the copy has no WAL content to read"
    change(db, random.Random(4), updates=30)
    holder.close()
    assert stop(rep) == 0
    restore(replica, "-o", f"{tmp}/full.db", check=0)
    r = restore("--delta", "--force", replica, "-o", stale, check=0)
    assert "reused the local pages of TXID" in r.out, r
    assert read(stale) == read(f"{tmp}/full.db")
    assert not os.path.exists(stale + "-wal") and not os.path.exists(stale + "-shm")


def test_a_copy_that_is_no_point_is_restored_in_full(tmp):
    stale, replica, full = stale_node(tmp, rows=1000, updates=10)
    change(stale, random.Random(9), updates=1)  # a write the replica never got
    r = restore("--delta", "--force", replica, "-o", stale, check=0)
    assert "in full: the local database is no point of the replica" in r.out, r
    assert read(stale) == read(full)


def test_a_copy_that_is_not_a_database_is_replaced_in_full(tmp):
    stale, replica, full = stale_node(tmp, rows=300, updates=3)
    with open(stale, "wb") as f:
        f.write(b"not a database" * 100)
    r = restore("--delta", "--force", replica, "-o", stale, check=0)
    assert f"in full: the local database cannot be read ('{stale}'" in r.out, r
    assert "is not a SQLite database" in r.out, r
    assert read(stale) == read(full)


def test_junk_in_the_replica_is_passed_over_while_placing_the_copy(tmp):
    """Placing a copy that is no point reads every object's header; junk
    under a delta's name (which the latest restore goes around) is passed
    over with a warning, not an error."""
    stale, replica, full = stale_node(tmp, rows=300, updates=3)
    with open(f"{replica}/deltas/L0/00000000000000ff.delta", "wb") as f:
        f.write(b"junk" * 100)
    change(stale, random.Random(9), updates=1)
    r = restore("--delta", "--force", replica, "-o", stale, check=0)
    assert "passing over a bad replica object while placing the local database" in r.err, r
    assert "in full: the local database is no point of the replica" in r.out, r
    assert read(stale) == read(full)


def test_an_older_target_is_restored_in_full(tmp):
    stale, replica, full = stale_node(tmp, rows=1000, updates=10)
    newest = f"{tmp}/newest.db"
    shutil.copy(full, newest)
    r = restore("--delta", "--force", "--txid", "1", replica, "-o", newest, check=0)
    assert "in full: the local database is past the point restored (at TXID 0000000000000002)" in r.out, r
    restore("--txid", "1", replica, "-o", f"{tmp}/one.db", check=0)
    assert read(newest) == read(f"{tmp}/one.db")


def test_the_newest_point_already_fetches_nothing(tmp):
    stale, replica, full = stale_node(tmp, rows=1000, updates=10)
    newest = f"{tmp}/newest.db"
    shutil.copy(full, newest)
    r = restore("--delta", "--force", replica, "-o", newest, check=0)
    assert "from 0 objects; reused the local pages of TXID 0000000000000002, fetched 0 B" in r.out, r
    assert read(newest) == read(full)


def test_a_bad_delta_on_the_way_means_a_full_restore(tmp):
    db, replica, stale, full = f"{tmp}/app.db", f"{tmp}/replica", f"{tmp}/stale.db", f"{tmp}/full.db"
    create(db, 1000)
    rep = start_replicate(tmp, db, replica, "--sync-interval", "100ms")
    restore("--txid", first_snapshot(replica), replica, "-o", stale, check=0)
    change(db, random.Random(6), updates=10)
    wait_for(lambda: glob.glob(f"{replica}/deltas/L0/*.delta"), "the delta")
    # replicate writes it at the delta's TXID: the full restore's way round the delta.
    walship("snapshot", db, replica, check=0)
    assert stop(rep) == 0
    assert len(glob.glob(f"{replica}/snapshots/*.snap")) == 2
    restore(replica, "-o", full, check=0)
    before = read(stale)
    (delta,) = glob.glob(f"{replica}/deltas/L0/*.delta")
    data = bytearray(read(delta))
    data[len(data) // 2] ^= 0x01
    with open(delta, "wb") as f:
        f.write(data)
    # The delta is smaller than the snapshot, so it is tried first.
    r = restore("--delta", "--force", replica, "-o", stale, check=0)
    assert "skipping a bad replica object" in r.err, r
    assert "in full: a delta from the local database's point is bad" in r.out, r
    assert read(stale) == read(full) != before


def test_a_merged_file_holding_the_point_is_applied_whole(tmp):
    """Compaction merged the L0 deltas around the stale copy's point into an
    L1 file, and those past the one right after the point are gone (as
    prune removes them): the replica knows the point (that delta's
    checksum-before) but no exact chain from it; the L1 file, which starts
    before the point, takes it forward."""
    db, replica = f"{tmp}/app.db", f"{tmp}/replica"
    create(db, 1000)
    with open(f"{tmp}/walship.toml", "w") as f:
        f.write(f"""
[defaults]
sync-interval = "100ms"
l1-span = "1s"

[[databases]]
path = "{db}"
replicas = ["file://{replica}"]
""")
    rep = start_replicate(tmp, "--config", f"{tmp}/walship.toml")
    wait_for(lambda: glob.glob(f"{replica}/snapshots/*.snap"), "the first snapshot")
    rng = random.Random(5)

    def l0_inside(l1):
        """The L0 deltas (path, first, last TXID) an L1 file merged."""
        first, last = (int(t, 16) for t in os.path.basename(l1).split(".")[0].split("-"))
        found = []
        for path in sorted(glob.glob(f"{replica}/deltas/L0/*.delta")):
            lo = int(os.path.basename(path).split(".")[0], 16)
            if first <= lo <= last:
                found.append((path, lo, int.from_bytes(read(path)[24:32], "big")))
        return found

    def merged_three():
        """An L1 file that merged three L0 deltas or more, or None."""
        for l1 in glob.glob(f"{replica}/deltas/L1/*.delta"):
            if len(l0_inside(l1)) >= 3:
                return l1
        change(db, rng, updates=3)
        time.sleep(0.1)
        return None
    wait_for(merged_three, "an L1 file of three L0 deltas")
    assert stop(rep) == 0
    inside = l0_inside(merged_three())
    point = inside[0][2]  # the end of the first: a restore point inside the L1 file
    for path, _, _ in inside[2:]:
        os.unlink(path)
    stale = f"{tmp}/stale.db"
    restore("--txid", f"{point:x}", replica, "-o", stale, check=0)
    restore(replica, "-o", f"{tmp}/full.db", check=0)
    r = restore("--delta", "--force", replica, "-o", stale, check=0)
    assert f"reused the local pages of TXID {point:016x}" in r.out, r
    assert read(stale) == read(f"{tmp}/full.db")


def test_fast_forward_delta_keeps_the_old_file(tmp):
    stale, replica, full = stale_node(tmp, rows=2000, updates=20)
    before = read(stale)
    r = walship("restore", "--fast-forward", "--delta", replica, "-o", stale, check=0)
    assert re.search(r"^fast-forwarded .*stale.db from TXID 0000000000000001 to TXID 0000000000000002 .*"
                     r"the old file is .*stale.db.walship-old; reused the local pages", r.out), r
    assert read(stale) == read(full) and read(stale + ".walship-old") == before
    assert not glob.glob(f"{stale}.walship-old-*"), "reading the old file left files beside it"


def test_dry_run_says_what_a_delta_restore_would_fetch(tmp):
    stale, replica, full = stale_node(tmp, rows=1000, updates=10)
    before = read(stale)
    r = restore("--delta", "--force", "--dry-run", replica, "-o", stale, check=0)
    assert re.search(r"would restore .*stale.db to TXID 0000000000000002 .*: 1 object, .* to fetch; "
                     r"reusing the local pages of TXID 0000000000000001$", r.out.strip()), r
    assert read(stale) == before
    assert [f for f in os.listdir(tmp) if f.startswith("stale")] == ["stale.db"], os.listdir(tmp)


def test_delta_needs_force_or_fast_forward(tmp):
    stale, replica, full = stale_node(tmp, rows=300, updates=3)
    before = read(stale)
    expect_one_error_line(restore("--delta", replica, "-o", stale), 2,
                          r"--delta starts from PATH's pages: pass --force too .* or --fast-forward")
    expect_one_error_line(restore("--delta", "--if-db-not-exists", "--force", replica, "-o", stale), 2,
                          r"--delta excludes --if-db-not-exists|--if-db-not-exists excludes --delta")
    assert read(stale) == before
    # No PATH: an ordinary restore.
    r = restore("--delta", "--force", replica, "-o", f"{tmp}/new.db", check=0)
    assert read(f"{tmp}/new.db") == read(full) and "reused" not in r.out, r


if __name__ == "__main__":
    run_tests([
        test_a_stale_copy_with_one_percent_changed_fetches_only_the_deltas,
        test_random_changes_shrinking_and_growing_give_a_full_restores_bytes,
        test_a_stale_copy_with_its_wal_is_read_through_it,
        test_a_copy_that_is_no_point_is_restored_in_full,
        test_a_copy_that_is_not_a_database_is_replaced_in_full,
        test_junk_in_the_replica_is_passed_over_while_placing_the_copy,
        test_an_older_target_is_restored_in_full,
        test_the_newest_point_already_fetches_nothing,
        test_a_bad_delta_on_the_way_means_a_full_restore,
        test_a_merged_file_holding_the_point_is_applied_whole,
        test_fast_forward_delta_keeps_the_old_file,
        test_dry_run_says_what_a_delta_restore_would_fetch,
        test_delta_needs_force_or_fast_forward,
    ])
