"""A 200 MiB snapshot to s3rver through a multipart upload (parts sent four
at a time, each signed with its real SHA-256, which the server checks) and
back: the restored bytes equal the source, walship's memory stays bounded
by the parts in flight, and no multipart upload is left behind. Labelled
slow (tests/CMakeLists.txt): the ASan pass skips it."""
import os
import shutil
import sqlite3
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, os.path.join(HERE, "..", "s3"))
from walship_test import WALSHIP, checkpointed_bytes, run_tests, skip, walship  # noqa: E402
from s3_test_server import ACCESS_KEY_ID, SECRET_ACCESS_KEY, S3rver, require_s3rver  # noqa: E402

require_s3rver()

ENV = {"AWS_ACCESS_KEY_ID": ACCESS_KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY, "AWS_SESSION_TOKEN": "",
       "AWS_PROFILE": "", "AWS_ENDPOINT_URL": "", "AWS_ENDPOINT_URL_S3": "", "AWS_REGION": "",
       "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_CONFIG_FILE": "/nonexistent"}
MIB = 1 << 20


def max_rss_kib(args, env):
    """Runs walship under /usr/bin/time; returns (exit code, stdout, peak RSS in KiB)."""
    proc = subprocess.run(["/usr/bin/time", "-f", "maxrss=%M", WALSHIP, *args], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=900)
    rss = [line for line in proc.stderr.splitlines() if line.startswith("maxrss=")]
    assert proc.returncode == 0 and rss, f"walship {' '.join(args)}: {proc.returncode}\n{proc.stderr}"
    return proc.stdout, int(rss[-1].split("=")[1])


def test_200_mib_snapshot_goes_up_in_parts_and_restores_byte_for_byte(tmp):
    if not os.path.exists("/usr/bin/time"):
        skip("/usr/bin/time is not installed (scripts/setup installs it)")
    src = f"{tmp}/big.db"
    db = sqlite3.connect(src, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE blobs(id INTEGER PRIMARY KEY, b BLOB)")
    db.execute("BEGIN")
    for i in range(200):  # incompressible: the snapshot stays ~200 MiB
        db.execute("INSERT INTO blobs(b) VALUES(randomblob(?))", (MIB,))
    db.execute("COMMIT")
    db.close()
    with S3rver(f"{tmp}/s3") as server:
        url = f"s3://walship/big?endpoint={server.endpoint}"
        out, rss = max_rss_kib(["snapshot", src, url], ENV)
        assert "snapshot 0000000000000001" in out, out
        stats = server.stats()
        assert stats["multipart_uploads"] == 1 and stats["completed"] == 1, stats
        assert stats["parts"] >= 25 and stats["aborted"] == 0, stats  # 8 MiB parts
        print(f"snapshot: {stats}, peak RSS {rss // 1024} MiB")
        # 8 MiB parts, four in flight and one being read: far below the object's size
        # (AddressSanitizer's shadow memory and quarantine would blur the number).
        ldd = subprocess.run(["ldd", WALSHIP], capture_output=True, text=True).stdout
        if "libasan" not in ldd:
            assert rss < 128 * 1024, f"snapshot peaked at {rss} KiB"
        assert server.leftover_uploads() == [], server.leftover_uploads()
        walship("restore", url, "-o", f"{tmp}/out.db", env=ENV, check=0)
        with open(f"{tmp}/out.db", "rb") as f:
            assert f.read() == checkpointed_bytes(src)
    shutil.rmtree(f"{tmp}/s3", ignore_errors=True)


if __name__ == "__main__":
    run_tests([test_200_mib_snapshot_goes_up_in_parts_and_restores_byte_for_byte])
