"""The WAL stays bounded under a write flood: an app committing one-row
transactions as fast as it can (the bench writer's rows) never takes the
WAL past --truncate-pages by more than one sync interval's growth, while
every commit is still shipped.

One sync interval's growth is the app's own rate in this run: its commits a
second (counted by the writer) times the WAL bytes a commit appends
(measured on a database of its own without replicate). Labelled slow (under
the sanitizers walship ships too slowly for a flood to mean anything) and run
alone (RUN_SERIAL), so another test's load does not slow walship against the
app's rate."""
import os
import sqlite3
import subprocess
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
from walship_test import run_tests, walship  # noqa: E402

sys.path.insert(0, HERE)
from test_replicate import start_replicate, stop, wait_for  # noqa: E402

TRUNCATE_PAGES = 4000
PAGE = 4096
SYNC_INTERVAL_S = 1  # --sync-interval

# The bench writer (scripts/bench-replicate): one row of half random, half
# text a transaction, synchronous=NORMAL, until `seconds` pass or `count`
# commits; prints its commits.
WRITER = r"""
import os, sqlite3, sys, time
path, seconds, count, autocheckpoint = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
db = sqlite3.connect(path, isolation_level=None)
db.execute("PRAGMA synchronous=NORMAL")
db.execute(f"PRAGMA wal_autocheckpoint={autocheckpoint}")
text = b"walship benchmark row " * 24
end = time.monotonic() + seconds
n = 0
while time.monotonic() < end and (count == 0 or n < count):
    n += 1
    db.execute("INSERT INTO t(body) VALUES(?)", (os.urandom(512) + text[:512],))
print(n, flush=True)
if count:
    time.sleep(3600)  # keeps the WAL from the checkpoint of the last close
"""


def create(path):
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, body BLOB NOT NULL)")
    db.close()


def wal_bytes_per_commit(tmp, commits=20000):
    """WAL bytes the writer appends a commit, with nothing checkpointing."""
    db = f"{tmp}/alone.db"
    create(db)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, db, "600", str(commits), "0"],
                              stdout=subprocess.PIPE, text=True)
    assert int(writer.stdout.readline()) == commits
    size = os.path.getsize(f"{db}-wal")
    writer.kill()
    writer.wait()
    return size / commits


def test_the_wal_stays_bounded_under_a_write_flood(tmp):
    per_commit = wal_bytes_per_commit(tmp)
    db, replica = f"{tmp}/app.db", f"{tmp}/replica"
    create(db)
    rep = start_replicate(tmp, db, replica, "--truncate-pages", TRUNCATE_PAGES, "--checkpoint-pages", 1000,
                          "--sync-interval", "1s")
    wait_for(lambda: os.path.isdir(f"{replica}/snapshots") and os.listdir(f"{replica}/snapshots"),
             "the first snapshot")
    biggest = [0]
    done = threading.Event()

    def sample():  # the WAL file only shrinks when truncated: its largest size
        while not done.wait(0.005):
            try:
                biggest[0] = max(biggest[0], os.path.getsize(f"{db}-wal"))
            except FileNotFoundError:
                pass
    sampler = threading.Thread(target=sample)
    sampler.start()
    seconds = 8
    out = subprocess.run([sys.executable, "-c", WRITER, db, str(seconds), "0", "1000"], check=True,
                         capture_output=True, text=True).stdout
    done.set()
    sampler.join()
    biggest[0] = max(biggest[0], os.path.getsize(f"{db}-wal"))
    assert stop(rep) == 0
    commits = int(out)
    growth = commits / seconds * per_commit * SYNC_INTERVAL_S
    bound = TRUNCATE_PAGES * (PAGE + 24) + 32 + growth
    mib = 2**20
    assert biggest[0] <= bound, (f"the WAL reached {biggest[0] / mib:.1f} MiB: past --truncate-pages "
                                 f"({TRUNCATE_PAGES * PAGE / mib:.1f} MiB) plus one sync interval's growth "
                                 f"({growth / mib:.1f} MiB: {commits} commits in {seconds} s)")
    print(f"WAL at most {biggest[0] / mib:.1f} MiB, bound {bound / mib:.1f} MiB")
    walship("restore", replica, "-o", f"{tmp}/out.db", check=0)
    out_db = sqlite3.connect(f"file:{tmp}/out.db?mode=ro", uri=True)
    assert out_db.execute("SELECT count(*) FROM t").fetchone()[0] == commits
    out_db.close()


if __name__ == "__main__":
    run_tests([test_the_wal_stays_bounded_under_a_write_flood])
