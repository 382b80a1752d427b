"""A database past 1 GiB holds SQLite's lock page (the page at byte offset
2^30), which is never read or stored: snapshot and restore must skip it and
still reproduce every other byte."""
import os
import sqlite3
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from walship_test import run_tests, walship  # noqa: E402


def test_database_past_the_lock_page(tmp):
    for page_size in (4096, 65536):
        src = f"{tmp}/big-{page_size}.db"
        db = sqlite3.connect(src, isolation_level=None)
        db.execute(f"PRAGMA page_size={page_size}")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB)")
        # zeroblob rows are cheap to write and compress; a few distinct rows
        # after the lock page prove the pages past it land where they belong.
        db.execute("BEGIN")
        for i in range(1100):
            db.execute("INSERT INTO t(b) VALUES(zeroblob(1 << 20))")
        for i in range(50):
            db.execute("INSERT INTO t(b) VALUES(randomblob(4000))")
        db.execute("COMMIT")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        expected = db.execute("SELECT sum(length(b)), count(*), "
                              "(SELECT group_concat(hex(substr(b, 1, 16))) FROM t WHERE id > 1100) FROM t").fetchone()
        db.close()
        assert os.path.getsize(src) > (1 << 30) + page_size
        url = f"file://{tmp}/replica-{page_size}"
        walship("snapshot", src, url, check=0)
        out = f"{tmp}/restored-{page_size}.db"
        walship("restore", url, "-o", out, check=0)
        rdb = sqlite3.connect(out)
        assert rdb.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        got = rdb.execute("SELECT sum(length(b)), count(*), "
                          "(SELECT group_concat(hex(substr(b, 1, 16))) FROM t WHERE id > 1100) FROM t").fetchone()
        rdb.close()
        assert got == expected
        lock_offset = 1 << 30
        with open(src, "rb") as a, open(out, "rb") as b:
            chunk = 1 << 24
            offset = 0
            while True:
                x, y = a.read(chunk), b.read(chunk)
                if not x and not y:
                    break
                if offset <= lock_offset < offset + chunk:
                    # The lock page's bytes are never used by SQLite; skip them.
                    start = lock_offset - offset
                    x = x[:start] + x[start + page_size:]
                    y = y[:start] + y[start + page_size:]
                assert x == y, f"page size {page_size}: bytes differ near offset {offset}"
                offset += chunk
        os.remove(src)
        os.remove(out)


if __name__ == "__main__":
    run_tests([test_database_past_the_lock_page])
