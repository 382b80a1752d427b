"""What only a person can fix stops replicate's first start with one line
that says what to do, instead of retrying forever: a malformed database, a
database in a read-only folder, a database this user cannot read, a replica
folder it cannot create (exit 2 for the database's, exit 1 for the
replica's, as `ls` and `restore`). The messages are golden: they name the
path and the fix, never an internal PRAGMA. Wrong S3 keys are
test_s3_faults.py's (it needs s3rver); a transient error still retries
(test_s3_faults.py's outage).

Permissions are tested as the user nobody when the suite runs as root (root
reads and writes through any mode bits)."""
import contextlib
import os
import sqlite3
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from walship_test import WALSHIP, Result, run_tests  # noqa: E402

NOBODY = 65534


def as_app_user(tmp):
    """The command prefix that runs walship as a user mode bits apply to, and
    makes `tmp` reachable by that user."""
    if os.geteuid() != 0:
        return []
    os.chmod(tmp, 0o755)
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]


def give(path):
    """Hands `path` to the user as_app_user() runs as."""
    if os.geteuid() == 0:
        os.chown(path, NOBODY, NOBODY)


@contextlib.contextmanager
def mode(path, bits):
    """`path` with mode `bits` for the block, 0o755 after (so it can be removed)."""
    os.chmod(path, bits)
    try:
        yield
    finally:
        os.chmod(path, 0o755)


def make_db(path):
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE t(x)")
    db.execute("INSERT INTO t VALUES (1)")
    db.close()  # the last connection: the WAL and -shm go away


def replicate(tmp, db, url):
    """A first start, bounded: before, these retried forever."""
    proc = subprocess.run([*as_app_user(tmp), WALSHIP, "replicate", db, url], capture_output=True, text=True,
                          timeout=60)
    return Result(proc)


def expect_line(result, code, line):
    assert result.code == code, f"expected exit {code}: {result!r}"
    lines = [x for x in result.err.splitlines() if x.startswith("walship:")]
    assert lines == [line], f"expected exactly {line!r}: {result!r}"
    assert "PRAGMA" not in result.err, result


def start_fails(tmp, db, line):
    """replicate DB to a file replica exits 2 with exactly `line`."""
    expect_line(replicate(tmp, db, f"file://{tmp}/replica"), 2, line)


def test_a_malformed_database(tmp):
    db = f"{tmp}/app.db"
    make_db(db)
    with open(db, "r+b") as f:  # page 1's b-tree header: the SQLite header stays valid
        f.seek(100)
        f.write(b"\xff" * 64)
    give(tmp)
    give(db)
    start_fails(tmp, db,
                f"walship: database '{db}' is malformed (database disk image is malformed): repair it, or restore "
                f"it from its replica with 'walship restore'")


def test_a_database_in_a_read_only_folder(tmp):
    folder = f"{tmp}/data"
    os.mkdir(folder)
    db = f"{folder}/app.db"
    make_db(db)
    give(folder)
    give(db)
    with mode(folder, 0o555):
        start_fails(tmp, db,
                    f"walship: the folder of database '{db}' is read-only for this user: a WAL database needs to "
                    f"create '{db}-shm' there; make the folder writable, or run replicate as the app's user")


def test_a_database_this_user_cannot_read(tmp):
    db = f"{tmp}/app.db"
    make_db(db)
    give(tmp)
    # Root's and private (run as a user: no access at all).
    with mode(db, 0o600 if os.geteuid() == 0 else 0):
        start_fails(tmp, db,
                    f"walship: database '{db}' is not readable by this user (Permission denied): run as the "
                    f"app's user, or give this one access")


def test_a_replica_folder_it_cannot_create(tmp):
    db = f"{tmp}/app.db"
    make_db(db)
    give(tmp)
    give(db)
    replicas = f"{tmp}/replicas"
    os.mkdir(replicas)
    with mode(replicas, 0o555):  # the app's user cannot create anything in it
        r = replicate(tmp, db, f"file://{replicas}/app")
        assert r.code == 1, r
        lines = [x for x in r.err.splitlines() if x.startswith("walship:")]
        assert len(lines) == 1 and f"'{replicas}/app" in lines[0] and "Permission denied" in lines[0], r


if __name__ == "__main__":
    run_tests([test_a_malformed_database, test_a_database_in_a_read_only_folder,
               test_a_database_this_user_cannot_read, test_a_replica_folder_it_cannot_create])
