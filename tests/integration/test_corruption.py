#!/usr/bin/env python3
"""Restore takes any valid path around bad replica objects, and verify names
them: a corrupt compacted file (L1/L2), a junk or copied object under the next
TXID's name (L0 delta, snapshot: nothing was written there, so the latest
restore goes around it) and a deleted first snapshot, on a real file://
replica with snapshots, L0, L1 and L2 files. When no path reaches the
replica's newest TXID (a missing delta, or one whose body is corrupt), the
latest restore exits 1 naming the gap, and --allow-older restores the newest
reachable point and says so."""

import atexit
import glob
import hashlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import walship_test  # noqa: E402
from walship_test import WALSHIP, run_tests, walship  # noqa: E402

_built = {}


def digest(path):
    """The rows of table t, hashed, after an integrity check."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok", path
        h = hashlib.sha256()
        for i, v in db.execute("SELECT id, v FROM t ORDER BY id"):
            h.update(str(i).encode() + bytes(v))
        return h.hexdigest()
    finally:
        db.close()


def pristine():
    """Builds the replica once: (dir holding app.db and replica/, source digest)."""
    if _built:
        return _built["dir"], _built["digest"]
    tmp = tempfile.mkdtemp(prefix="walship-corruption-")
    atexit.register(shutil.rmtree, tmp, True)
    db = f"{tmp}/app.db"
    conn = sqlite3.connect(db, isolation_level=None, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB NOT NULL)")
    with open(f"{tmp}/walship.toml", "w") as f:
        f.write(f"""
[defaults]
sync-interval = "100ms"
snapshot-interval = "2s"
l1-span = "1s"
l2-span = "2s"

[[databases]]
path = "{db}"
replicas = ["file://{tmp}/replica"]
""")
    log = open(f"{tmp}/replicate.log", "a")
    rep = subprocess.Popen([WALSHIP, "replicate", "--config", f"{tmp}/walship.toml"], stdout=subprocess.DEVNULL,
                           stderr=log)
    n = 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(glob.glob(f"{tmp}/replica/deltas/L2/*.delta")) < 2:
        n += 1
        conn.execute("INSERT INTO t(id, v) VALUES(?, randomblob(400))", (n,))
        time.sleep(0.03)
    conn.close()
    assert walship_test.stop(rep, signal.SIGTERM, 30) == 0
    for kind in ("snapshots", "deltas/L0", "deltas/L1", "deltas/L2"):
        assert glob.glob(f"{tmp}/replica/{kind}/*"), f"no {kind} objects"
    assert len(glob.glob(f"{tmp}/replica/snapshots/*.snap")) >= 2
    _built.update(dir=tmp, digest=digest(db))
    return tmp, _built["digest"]


def copy_replica(tmp):
    src, _ = pristine()
    shutil.copytree(f"{src}/replica", f"{tmp}/replica")
    return f"{tmp}/replica"


def newest_txid(replica):
    out = walship("ls", f"file://{replica}", check=0).out
    return int(out.splitlines()[1].split()[0], 16)


def restore(replica, out, *args, check=0):
    if os.path.exists(out):
        os.unlink(out)
    return walship("restore", f"file://{replica}", "-o", out, *args, check=check)


def flip(path):
    data = bytearray(open(path, "rb").read())
    for i in range(80, len(data), 37):
        data[i] ^= 0x5A
    open(path, "wb").write(bytes(data))


def check_latest_and_verify(tmp, replica, bad_key, claims_newer=False):
    """The latest restore equals the source, names `bad_key` on stderr when it
    had to skip it, and verify exits 3 naming it. When `bad_key` names a TXID
    after the source's (`claims_newer`), the replica's newest is unreachable:
    the latest restore exits 1 naming it, and --allow-older restores the source
    saying it is not the newest."""
    _, source = pristine()
    args = []
    if claims_newer:
        r = restore(replica, f"{tmp}/latest.db", check=None)
        walship_test.expect_one_error_line(r, 1, rf"is not reachable: {bad_key} is broken; .*--allow-older")
        assert not os.path.exists(f"{tmp}/latest.db"), r
        args = ["--allow-older"]
    r = restore(replica, f"{tmp}/latest.db", *args)
    assert digest(f"{tmp}/latest.db") == source, r
    assert ("not the replica's newest" in r.out) == claims_newer, r
    v = walship("verify", f"file://{replica}", check=3)
    assert bad_key in v.out + v.err, v
    return r


def test_corrupt_compacted_files_are_skipped(tmp):
    replica = copy_replica(tmp)
    src, _ = pristine()
    compacted = sorted(glob.glob(f"{replica}/deltas/L1/*.delta") + glob.glob(f"{replica}/deltas/L2/*.delta"))
    for path in compacted:
        flip(path)
    # Every point a compacted file ends at restores through the L0 deltas, as
    # it does from the untouched replica.
    skipped = 0
    for path in glob.glob(f"{replica}/deltas/L1/*.delta"):
        end = os.path.basename(path).split("-")[1].split(".")[0]
        restore(f"{src}/replica", f"{tmp}/good.db", "--txid", end)
        r = restore(replica, f"{tmp}/bad.db", "--txid", end)
        assert digest(f"{tmp}/bad.db") == digest(f"{tmp}/good.db"), r
        if "skipping a bad replica object" in r.err:
            skipped += 1
            assert "deltas/L" in r.err.split("skipping a bad replica object")[1].splitlines()[0], r
    assert skipped > 0, "no restore went through a corrupt compacted file"
    check_latest_and_verify(tmp, replica, os.path.relpath(compacted[0], replica))


def test_junk_next_l0_delta_is_skipped(tmp):
    replica = copy_replica(tmp)
    key = f"deltas/L0/{newest_txid(replica) + 1:016x}.delta"
    with open(f"{replica}/{key}", "wb") as f:
        f.write(os.urandom(300))
    r = check_latest_and_verify(tmp, replica, key)
    assert key in r.err, r


def test_copied_delta_under_next_l0_name_is_skipped(tmp):
    replica = copy_replica(tmp)
    key = f"deltas/L0/{newest_txid(replica) + 1:016x}.delta"
    shutil.copy(sorted(glob.glob(f"{replica}/deltas/L0/*.delta"))[-1], f"{replica}/{key}")
    r = check_latest_and_verify(tmp, replica, key)
    assert key in r.err, r


def test_junk_next_snapshot_is_skipped(tmp):
    replica = copy_replica(tmp)
    key = f"snapshots/{newest_txid(replica) + 1:016x}.snap"
    with open(f"{replica}/{key}", "wb") as f:
        f.write(os.urandom(300))
    r = check_latest_and_verify(tmp, replica, key)
    assert key in r.err, r


def test_copied_snapshot_under_next_name_is_skipped(tmp):
    replica = copy_replica(tmp)
    key = f"snapshots/{newest_txid(replica) + 1:016x}.snap"
    shutil.copy(sorted(glob.glob(f"{replica}/snapshots/*.snap"))[0], f"{replica}/{key}")
    r = check_latest_and_verify(tmp, replica, key)
    assert key in r.err, r


def test_deleted_first_snapshot_is_one_named_problem(tmp):
    replica = copy_replica(tmp)
    first = sorted(glob.glob(f"{replica}/snapshots/*.snap"))[0]
    os.unlink(first)
    key = os.path.relpath(first, replica)
    check_latest_and_verify(tmp, replica, key)
    v = walship("verify", f"file://{replica}", check=3)
    assert v.out.count("\nbroken ") + v.out.count("\nmissing ") == 1, v
    assert f"{key} (missing)" in v.out and "snapshot" in v.out, v


def deltas_replica(tmp):
    """A replica of one snapshot then one L0 delta per commit (no compaction),
    and its pristine copy: (replica dir, pristine copy dir, L0 keys)."""
    db = f"{tmp}/d.db"
    conn = sqlite3.connect(db, isolation_level=None, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB NOT NULL)")
    with open(f"{tmp}/deltas.toml", "w") as f:
        f.write(f"""
[defaults]
sync-interval = "50ms"
snapshot-interval = "1h"
compaction = false

[[databases]]
path = "{db}"
replicas = ["file://{tmp}/deltas"]
""")
    log = open(f"{tmp}/deltas.log", "a")
    rep = subprocess.Popen([WALSHIP, "replicate", "--config", f"{tmp}/deltas.toml"], stdout=subprocess.DEVNULL,
                           stderr=log)
    try:
        walship_test.wait_for(lambda: glob.glob(f"{tmp}/deltas/snapshots/*.snap"), "the first snapshot")
        for n in range(1, 5):
            before = len(glob.glob(f"{tmp}/deltas/deltas/L0/*.delta"))
            conn.execute("INSERT INTO t(id, v) VALUES(?, randomblob(400))", (n,))
            walship_test.wait_for(lambda: len(glob.glob(f"{tmp}/deltas/deltas/L0/*.delta")) > before,
                                  f"the delta of commit {n}")
    finally:
        conn.close()
        assert walship_test.stop(rep, signal.SIGTERM, 30) == 0
    assert len(glob.glob(f"{tmp}/deltas/snapshots/*.snap")) == 1
    shutil.copytree(f"{tmp}/deltas", f"{tmp}/deltas-pristine")
    l0 = sorted(os.path.relpath(p, f"{tmp}/deltas") for p in glob.glob(f"{tmp}/deltas/deltas/L0/*.delta"))
    assert len(l0) >= 4, l0
    return f"{tmp}/deltas", f"{tmp}/deltas-pristine", l0


def l0_txid(key):
    return int(os.path.basename(key).split(".")[0], 16)


def check_allow_older(tmp, replica, pristine_replica, reached, newest, dry_run_sees_it=True):
    """--allow-older restores `reached` (the same rows as restoring it from the
    pristine replica) and its stdout line says it is not the newest; so does
    --dry-run's, unless the gap is a corrupt body (a dry run reads headers only)."""
    hex_reached, hex_newest = f"{reached:016x}", f"{newest:016x}"
    r = restore(replica, f"{tmp}/older.db", "--allow-older")
    assert f"to TXID {hex_reached}" in r.out, r
    assert f"not the replica's newest: that is TXID {hex_newest}, which is not reachable" in r.out, r
    restore(pristine_replica, f"{tmp}/expected.db", "--txid", hex_reached)
    assert digest(f"{tmp}/older.db") == digest(f"{tmp}/expected.db")
    if dry_run_sees_it:
        n = walship("restore", "--dry-run", "--allow-older", f"file://{replica}", check=0)
        assert f"to TXID {hex_reached}" in n.out and "not the replica's newest" in n.out, n


def test_missing_delta_before_the_newest_fails_the_latest_restore(tmp):
    replica, pristine_replica, l0 = deltas_replica(tmp)
    gone, newest = l0[-2], l0_txid(l0[-1])
    os.unlink(f"{replica}/{gone}")
    r = restore(replica, f"{tmp}/latest.db", check=None)
    walship_test.expect_one_error_line(
        r, 1, rf"the newest TXID {newest:016x} of replica 'file://{replica}' is not reachable: no delta starts "
        rf"at TXID {l0_txid(gone):016x} \(missing\); the newest reachable is {l0_txid(gone) - 1:016x} .*"
        rf"pass --allow-older to restore it, or run walship verify file://{replica}$")
    assert not os.path.exists(f"{tmp}/latest.db")
    assert r.out == "", r
    check_allow_older(tmp, replica, pristine_replica, l0_txid(gone) - 1, newest)
    # An explicit target keeps its behaviour: an older point restores, the newest does not exist.
    assert restore(replica, f"{tmp}/t.db", "--txid", f"{l0_txid(gone) - 1:016x}").code == 0
    walship_test.expect_one_error_line(restore(replica, f"{tmp}/t.db", "--txid", f"{newest:016x}", check=None),
                                       1, "is not a restore point")
    walship_test.expect_one_error_line(
        restore(replica, f"{tmp}/t.db", "--allow-older", "--txid", "1", check=None), 2, "allow-older")


def test_corrupt_newest_delta_fails_the_latest_restore(tmp):
    replica, pristine_replica, l0 = deltas_replica(tmp)
    bad, newest = l0[-1], l0_txid(l0[-1])
    flip(f"{replica}/{bad}")
    r = restore(replica, f"{tmp}/latest.db", check=None)
    walship_test.expect_one_error_line(
        r, 1, rf"the newest TXID {newest:016x} of replica 'file://{replica}' is not reachable: {bad} is broken; "
        rf"the newest reachable is {newest - 1:016x} .*--allow-older")
    assert not os.path.exists(f"{tmp}/latest.db")
    check_allow_older(tmp, replica, pristine_replica, newest - 1, newest, dry_run_sees_it=False)


def test_serve_replica_starts_from_the_newest_reachable_point(tmp):
    """serve-replica's first restore takes the newest reachable point, with a
    warning, as it did before restore refused to go back in time."""
    replica, pristine_replica, l0 = deltas_replica(tmp)
    gone = l0[-2]
    os.unlink(f"{replica}/{gone}")
    follow = f"{tmp}/follow.db"
    err = open(f"{tmp}/serve.log", "w")
    serve = subprocess.Popen([WALSHIP, "serve-replica", f"file://{replica}", follow, "--poll-interval", "50ms"],
                             stdout=subprocess.DEVNULL, stderr=err)
    try:
        walship_test.wait_for(lambda: "the newest TXID is not reachable" in open(f"{tmp}/serve.log").read(),
                              "the follower's warning")
        walship_test.wait_for(lambda: os.path.exists(follow), "the follower's database")
    finally:
        assert walship_test.stop(serve, signal.SIGTERM, 30) == 0, open(f"{tmp}/serve.log").read()
    restore(pristine_replica, f"{tmp}/expected.db", "--txid", f"{l0_txid(gone) - 1:016x}")
    assert digest(follow) == digest(f"{tmp}/expected.db")


def follow(tmp, replica, path, until, what):
    """serve-replica follows `replica` into `path` until `until()`; returns its log."""
    err = open(f"{tmp}/serve.log", "w")
    serve = subprocess.Popen([WALSHIP, "serve-replica", f"file://{replica}", path, "--poll-interval", "50ms"],
                             stdout=subprocess.DEVNULL, stderr=err)
    try:
        walship_test.wait_for(until, what)
    except AssertionError:
        raise AssertionError(f"{what}: not reached; serve-replica's log:\n{open(f'{tmp}/serve.log').read()}")
    finally:
        assert walship_test.stop(serve, signal.SIGTERM, 30) == 0, open(f"{tmp}/serve.log").read()
    return open(f"{tmp}/serve.log").read()


def reaches(path, expected):
    return lambda: os.path.exists(path) and digest(path) == expected


def test_a_follower_goes_around_a_bad_delta_through_a_newer_snapshot(tmp):
    """A follower before a bad delta re-seeds from a snapshot past it and
    follows on (it stayed before the delta for ever)."""
    replica, pristine_replica, l0 = deltas_replica(tmp)
    walship("snapshot", f"{tmp}/d.db", f"file://{replica}", check=0)
    follow_db = f"{tmp}/follow.db"
    restore(replica, follow_db, "--txid", f"{l0_txid(l0[1]) - 1:016x}")
    flip(f"{replica}/{l0[1]}")
    restore(pristine_replica, f"{tmp}/expected.db")
    log = follow(tmp, replica, follow_db, reaches(follow_db, digest(f"{tmp}/expected.db")), "the newest point")
    assert f"skipping a bad replica object: following by another path\" db={follow_db} object={l0[1]}" in log, log
    assert "re-seeding from a snapshot" in log, log


def test_a_follower_goes_around_a_bad_delta_through_a_compacted_file(tmp):
    """A follower before a bad L0 delta that a compacted file spans applies
    the compacted file and follows on."""
    replica = copy_replica(tmp)
    l0 = sorted(int(os.path.basename(p).split(".")[0], 16) for p in glob.glob(f"{replica}/deltas/L0/*.delta"))
    for path in sorted(glob.glob(f"{replica}/deltas/L1/*.delta")):
        low, high = (int(x, 16) for x in os.path.basename(path).split(".")[0].split("-"))
        inside = [m for m in l0 if low <= m <= high]
        if len(inside) >= 2:
            break
    else:
        raise AssertionError("no L1 file spans two L0 deltas")
    point, bad = inside[1] - 1, f"deltas/L0/{inside[1]:016x}.delta"
    follow_db = f"{tmp}/follow.db"
    restore(replica, follow_db, "--txid", f"{point:016x}")
    flip(f"{replica}/{bad}")
    log = follow(tmp, replica, follow_db, reaches(follow_db, pristine()[1]), "the newest point")
    assert f"skipping a bad replica object: following by another path\" db={follow_db} object={bad}" in log, log
    assert "re-seeding" not in log, log


def test_a_stuck_follower_logs_its_error_once_a_minute(tmp):
    """A follower stopped before a delta that does not apply, with no way
    around it: /metrics counts each failure, and the log has one line per
    distinct error per minute (it had one per poll: 60-74 lines in 6 s at
    100ms)."""
    replica, _, l0 = deltas_replica(tmp)
    flip(f"{replica}/{l0[-2]}")
    follow, port = f"{tmp}/follow.db", walship_test.free_port()
    err = open(f"{tmp}/serve.log", "w")
    serve = subprocess.Popen([WALSHIP, "serve-replica", f"file://{replica}", follow, "--poll-interval", "50ms",
                              "--http", f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=err)

    def errors():
        try:
            status, text = walship_test.http_get(f"http://127.0.0.1:{port}/metrics")
        except OSError:
            return 0
        return walship_test.metric(text, "walship_follow_errors_total", db=follow) or 0

    try:
        walship_test.wait_for(lambda: errors() >= 6, "6 failed polls")
    finally:
        assert walship_test.stop(serve, signal.SIGTERM, 30) == 0, open(f"{tmp}/serve.log").read()
    log = open(f"{tmp}/serve.log").read().splitlines()
    # The bad delta is named once and not tried again; the gap it leaves is
    # logged once.
    skipped = [x for x in log if "skipping a bad replica object: following" in x]
    assert len(skipped) == 1 and f"{l0[-2]}': " in skipped[0], log
    lines = [x for x in log if "follow step failed" in x]
    assert len(lines) == 1 and "no good delta chains onto" in lines[0], lines


if __name__ == "__main__":
    run_tests([
        test_corrupt_compacted_files_are_skipped,
        test_junk_next_l0_delta_is_skipped,
        test_copied_delta_under_next_l0_name_is_skipped,
        test_junk_next_snapshot_is_skipped,
        test_copied_snapshot_under_next_name_is_skipped,
        test_deleted_first_snapshot_is_one_named_problem,
        test_missing_delta_before_the_newest_fails_the_latest_restore,
        test_corrupt_newest_delta_fails_the_latest_restore,
        test_serve_replica_starts_from_the_newest_reachable_point,
        test_a_follower_goes_around_a_bad_delta_through_a_newer_snapshot,
        test_a_follower_goes_around_a_bad_delta_through_a_compacted_file,
        test_a_stuck_follower_logs_its_error_once_a_minute,
    ])
