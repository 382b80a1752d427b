"""Snapshots of a live 200 MiB database while another process keeps
committing: each snapshot is exactly the source as of one committed
transaction (no torn transaction), and restores to it pass integrity_check."""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from walship_test import check_rows, create_db, run_tests, walship  # noqa: E402

INITIAL_ROWS = 200_000  # about 200 MiB with 1000-byte payloads

WRITER = r"""
import os, sqlite3, sys
sys.path.insert(0, sys.argv[3])
from walship_test import payload
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
n = int(sys.argv[2])
while not os.path.exists(sys.argv[1] + ".stop"):
    n += 1
    db.execute("BEGIN IMMEDIATE")
    db.execute("INSERT INTO t(id, payload) VALUES(?, ?)", (n, payload(n)))
    db.execute("UPDATE meta SET last = ?", (n,))
    db.execute("COMMIT")
print(n)
"""


def test_three_snapshots_of_a_busy_database(tmp):
    src = f"{tmp}/live.db"
    create_db(src, rows=INITIAL_ROWS)
    import sqlite3
    db = sqlite3.connect(src, isolation_level=None)
    db.execute("CREATE TABLE meta(last INTEGER)")
    db.execute("INSERT INTO meta VALUES(?)", (INITIAL_ROWS,))
    db.close()
    assert os.path.getsize(src) > 200 * 1000 * 1000

    lib = os.path.join(os.path.dirname(__file__), "..", "lib")
    writer = subprocess.Popen([sys.executable, "-c", WRITER, src, str(INITIAL_ROWS), lib], stdout=subprocess.PIPE,
                              text=True)
    url = f"file://{tmp}/replica"
    try:
        time.sleep(0.5)
        for _ in range(3):
            walship("snapshot", src, url, check=0)
            time.sleep(0.3)
    finally:
        open(src + ".stop", "w").close()
        last_written = int(writer.communicate(timeout=60)[0])
    assert writer.returncode == 0

    previous = INITIAL_ROWS
    for txid in (1, 2, 3):
        out = f"{tmp}/restored-{txid}.db"
        walship("restore", url, "-o", out, "--txid", str(txid), check=0)
        rdb = sqlite3.connect(out)
        (last,) = rdb.execute("SELECT last FROM meta").fetchone()
        rdb.close()
        check_rows(out, last)  # rows 1..last exactly, each with its content: no torn transaction
        assert previous <= last <= last_written, (previous, last, last_written)
        previous = last
        os.remove(out)
    assert previous > INITIAL_ROWS, "the writer committed nothing during the snapshots"


if __name__ == "__main__":
    run_tests([test_three_snapshots_of_a_busy_database])
