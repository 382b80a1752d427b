"""snapshot -> ls -> restore round trips on the filesystem backend: restored
bytes equal the source, every restore point restores, and a failed or killed
restore never leaves anything at the output path."""
import glob
import json
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from walship_test import WALSHIP, check_rows, create_db, run_tests, walship  # noqa: E402


def checkpointed_bytes(path):
    """The database's bytes with every WAL frame checkpointed into the file."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    with open(path, "rb") as f:
        return f.read()


def leftovers(directory, name=""):
    return [p for p in os.listdir(directory) if "walship-tmp" in p and name in p]


def test_wal_database_restores_byte_identical(tmp):
    create_db(f"{tmp}/a.db", rows=2000)
    url = f"file://{tmp}/replica"
    r = walship("snapshot", f"{tmp}/a.db", url, check=0)
    assert "snapshot 0000000000000001" in r.out, r
    walship("restore", url, "-o", f"{tmp}/b.db", check=0)
    assert sorted(os.listdir(tmp)) == ["a.db", "a.db-shm", "a.db-wal", "b.db", "replica"], os.listdir(tmp)
    with open(f"{tmp}/b.db", "rb") as f:
        assert f.read() == checkpointed_bytes(f"{tmp}/a.db")
    check_rows(f"{tmp}/b.db", 2000)


def test_rollback_journal_database_round_trip(tmp):
    create_db(f"{tmp}/a.db", rows=500, wal=False)
    url = f"file://{tmp}/replica"
    walship("snapshot", f"{tmp}/a.db", url, check=0)
    walship("restore", url, "-o", f"{tmp}/b.db", check=0)
    with open(f"{tmp}/a.db", "rb") as a, open(f"{tmp}/b.db", "rb") as b:
        assert a.read() == b.read()


def test_every_page_size(tmp):
    for page_size in (512, 1024, 2048, 4096, 8192, 16384, 32768, 65536):
        src, out = f"{tmp}/p{page_size}.db", f"{tmp}/p{page_size}-restored.db"
        create_db(src, rows=300, page_size=page_size)
        url = f"file://{tmp}/replica-{page_size}"
        walship("snapshot", src, url, check=0)
        walship("restore", url, "-o", out, check=0)
        check_rows(out, 300)
        with open(out, "rb") as f:
            assert f.read() == checkpointed_bytes(src), f"page size {page_size}"


def test_snapshots_take_successive_txids_and_each_restores(tmp):
    url = f"file://{tmp}/replica"
    create_db(f"{tmp}/a.db", rows=10)
    walship("snapshot", f"{tmp}/a.db", url, check=0)
    time.sleep(0.05)
    # One reading of the clock: seconds and milliseconds from two readings
    # went back almost a second when a second began between them.
    now = time.time()
    between = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + ".%03dZ" % (now * 1000 % 1000)
    time.sleep(0.05)
    db = sqlite3.connect(f"{tmp}/a.db", isolation_level=None)
    db.execute("INSERT INTO t(id, payload) SELECT id + 10, payload FROM t")
    db.close()
    r = walship("snapshot", f"{tmp}/a.db", url, check=0)
    assert "snapshot 0000000000000002" in r.out, r

    points = json.loads(walship("ls", url, "--json", check=0).out)
    assert [p["txid"] for p in points] == ["0000000000000002", "0000000000000001"], points
    assert all(p["kind"] == "snapshot" and p["size"] > 0 for p in points), points
    table = walship("ls", url, check=0).out.splitlines()
    assert table[0].startswith("TXID") and table[1].startswith("0000000000000002"), table

    walship("restore", url, "-o", f"{tmp}/latest.db", check=0)
    walship("restore", url, "-o", f"{tmp}/one.db", "--txid", "1", check=0)
    walship("restore", url, "-o", f"{tmp}/at.db", "--timestamp", between, check=0)
    check_rows(f"{tmp}/one.db", 10)
    check_rows(f"{tmp}/at.db", 10)
    assert sqlite3.connect(f"{tmp}/latest.db").execute("SELECT count(*) FROM t").fetchone()[0] == 20


def test_force_replaces_and_removes_stale_wal(tmp):
    create_db(f"{tmp}/a.db", rows=50)
    url = f"file://{tmp}/replica"
    walship("snapshot", f"{tmp}/a.db", url, check=0)
    for suffix in ("", "-wal", "-shm"):
        with open(f"{tmp}/out.db{suffix}", "wb") as f:
            f.write(b"stale junk" * 100)
    r = walship("restore", "--force", url, "-o", f"{tmp}/out.db", check=0)
    assert "removed stale file" in r.err and "out.db-wal" in r.err, r
    assert not os.path.exists(f"{tmp}/out.db-wal") and not os.path.exists(f"{tmp}/out.db-shm")
    check_rows(f"{tmp}/out.db", 50)


def test_stale_wal_beside_a_missing_output_is_removed(tmp):
    create_db(f"{tmp}/a.db", rows=50)
    url = f"file://{tmp}/replica"
    walship("snapshot", f"{tmp}/a.db", url, check=0)
    with open(f"{tmp}/out.db-wal", "wb") as f:
        f.write(b"stale junk" * 100)
    walship("restore", url, "-o", f"{tmp}/out.db", check=0)
    assert not os.path.exists(f"{tmp}/out.db-wal")
    check_rows(f"{tmp}/out.db", 50)


def test_corrupt_snapshot_is_refused(tmp):
    create_db(f"{tmp}/a.db", rows=200)
    url = f"file://{tmp}/replica"
    walship("snapshot", f"{tmp}/a.db", url, check=0)
    (snap,) = glob.glob(f"{tmp}/replica/snapshots/*.snap")
    data = bytearray(open(snap, "rb").read())
    data[len(data) // 2] ^= 0x40
    open(snap, "wb").write(bytes(data))
    r = walship("restore", url, "-o", f"{tmp}/out.db", check=1)
    assert "0000000000000001.snap" in r.err and "corrupt" in r.err, r
    assert not os.path.exists(f"{tmp}/out.db") and leftovers(tmp) == []


def test_verify_chooses_the_check_beside_the_checksum(tmp):
    """The checksum proves a restore equals its source; --verify=quick and
    --verify (full) add SQLite's checks, which find what the source itself
    had wrong: here a table leaf whose free-block pointer runs off the page,
    shipped as it was. Each refuses it with one line, leaving nothing."""
    src = f"{tmp}/a.db"
    create_db(src, rows=300, wal=False)
    data = bytearray(open(src, "rb").read())
    page_size = int.from_bytes(data[16:18], "big")
    leaves = [n for n in range(1, len(data) // page_size) if data[n * page_size] == 0x0D]
    assert leaves, "no table leaf page"
    at = leaves[len(leaves) // 2] * page_size
    data[at + 1:at + 3] = (page_size - 2).to_bytes(2, "big")
    open(src, "wb").write(bytes(data))
    url = f"file://{tmp}/replica"
    walship("snapshot", src, url, check=0)
    walship("restore", url, "-o", f"{tmp}/checksum.db", check=0)
    walship("restore", "--verify=checksum", url, "-o", f"{tmp}/checksum2.db", check=0)
    with open(f"{tmp}/checksum.db", "rb") as f:
        assert f.read() == bytes(data)
    for flag, pragma in (("--verify=quick", "PRAGMA quick_check"), ("--verify", "PRAGMA integrity_check"),
                         ("--verify=full", "PRAGMA integrity_check")):
        r = walship("restore", flag, url, "-o", f"{tmp}/checked.db", check=1)
        lines = [line for line in r.err.splitlines() if line.startswith("walship:")]
        assert len(lines) == 1 and f"fails {pragma}" in lines[0], r
        assert not os.path.exists(f"{tmp}/checked.db") and leftovers(tmp) == [], (flag, os.listdir(tmp))
    r = walship("restore", "--verify=fast", url, "-o", f"{tmp}/x.db", check=2)
    assert "--verify" in r.err and "checksum" in r.err, r


def test_full_disk_during_restore_leaves_nothing(tmp):
    create_db(f"{tmp}/a.db", rows=3000)
    url = f"file://{tmp}/replica"
    walship("snapshot", f"{tmp}/a.db", url, check=0)

    def small_file_limit():
        # Writes past 1 MiB fail with EFBIG, as on a full disk.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    r = walship("restore", url, "-o", f"{tmp}/out.db", preexec_fn=small_file_limit)
    assert r.code == 1 and "unable to write" in r.err, r
    assert not os.path.exists(f"{tmp}/out.db") and leftovers(tmp) == []


def test_killed_restore_never_leaves_a_partial_database(tmp):
    # Big enough that the restore is still running when the signal lands.
    create_db(f"{tmp}/a.db", rows=60000)
    url = f"file://{tmp}/replica"
    walship("snapshot", f"{tmp}/a.db", url, check=0)
    for sig, delay in ((signal.SIGTERM, 0.05), (signal.SIGINT, 0.1), (signal.SIGKILL, 0.05), (signal.SIGTERM, 0.2)):
        out = f"{tmp}/out-{sig}-{delay}.db"
        proc = subprocess.Popen([WALSHIP, "restore", url, "-o", out], stderr=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(sig)
        proc.wait()
        if os.path.exists(out):
            # Renamed into place before the signal (which may still have
            # ended the process before it exited 0): then it is whole.
            check_rows(out, 60000)
        else:
            assert proc.returncode != 0, f"{sig}: exit 0 without a database"
        if sig != signal.SIGKILL:
            assert leftovers(tmp, os.path.basename(out)) == [], f"{sig}: temp files left behind: {leftovers(tmp)}"


if __name__ == "__main__":
    run_tests([v for k, v in sorted(globals().items()) if k.startswith("test_")])
