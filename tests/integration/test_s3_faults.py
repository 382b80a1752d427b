"""The s3:// backend through tests/s3_proxy/fault_proxy.py in front of
s3rver: a database replicated while it is written, with 500 InternalError,
503 SlowDown and connection resets mid-request and mid-answer injected at
random (from a fixed seed), then snapshot, ls and restore through the same
faults: nothing shipped is lost or corrupted (every restore passes
integrity_check and holds exactly the rows of the last commit). A stall
longer than the low-speed timeout is cut and retried; an outage longer
than one operation's retries is ridden out; a multipart upload
survives failed parts and a lost completion. 403 and 404 are final: one
request, no retry, one clear error line (replicate's first start too)."""
import json
import os
import random
import re
import sqlite3
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
from walship_test import WALSHIP, expect_one_error_line, run_tests, walship  # noqa: E402

sys.path.insert(0, HERE)
from test_replicate import check_state, init_db, payload, stop, wait_for, write  # noqa: E402

sys.path.insert(0, os.path.join(HERE, "..", "s3"))
from s3_test_server import ACCESS_KEY_ID, SECRET_ACCESS_KEY, S3rver, require_s3rver  # noqa: E402

PROXY = os.path.join(HERE, "..", "s3_proxy", "fault_proxy.py")
SEED = int(os.environ.get("WALSHIP_FAULT_SEED", "4242"))  # another seed explores other schedules
# walship's libcurl low-speed limit (backends/http) gives up on a transfer
# that moved no byte for this long; a stall must outlast it.
LOW_SPEED_SECONDS = 60

require_s3rver()


class Proxy:
    def __init__(self, tmp, upstream, stall_seconds=LOW_SPEED_SECONDS + 15):
        self.proc = subprocess.Popen([sys.executable, PROXY, "--upstream", upstream, "--seed", str(SEED),
                                      "--stall-seconds", str(stall_seconds), "--log", f"{tmp}/proxy.log"],
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        assert line.startswith("listening on "), line
        self.endpoint = f"http://{line.split()[-1]}"

    def control(self, path, method="POST"):
        req = urllib.request.Request(f"{self.endpoint}/_proxy/{path}", method=method,
                                     data=b"" if method == "POST" else None)
        with urllib.request.urlopen(req) as r:
            return json.load(r)

    def stats(self):
        return self.control("stats", "GET")

    def faults_at_random(self, rate, kinds="500,503,reset-request,reset-response"):
        self.control(f"random?rate={rate}&kinds={kinds}&seed={SEED}")

    def close(self):
        self.proc.terminate()
        self.proc.wait()


class Servers:
    def __init__(self, tmp, stall_seconds=LOW_SPEED_SECONDS + 15):
        self.s3rver = S3rver(f"{tmp}/s3rver")
        self.proxy = Proxy(tmp, self.s3rver.address, stall_seconds)

    def url(self, prefix="app", bucket="walship"):
        return f"s3://{bucket}/{prefix}?endpoint={self.proxy.endpoint}"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.proxy.close()
        self.s3rver.close()


def s3_env(secret=SECRET_ACCESS_KEY):
    """Only these credentials: nothing from the machine's own AWS setup."""
    return {"AWS_ACCESS_KEY_ID": ACCESS_KEY_ID, "AWS_SECRET_ACCESS_KEY": secret, "AWS_SESSION_TOKEN": "",
            "AWS_REGION": "us-east-1", "AWS_PROFILE": "", "AWS_ENDPOINT_URL": "", "AWS_ENDPOINT_URL_S3": "",
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_CONFIG_FILE": "/nonexistent"}


def s3(*args, check=0, env=None):
    return walship(*args, check=check, env={**s3_env(), **(env or {})})


def restore_and_check(tmp, url, expected, *args, size=1000):
    out = f"{tmp}/out.db"
    for path in (out, out + "-wal", out + "-shm"):
        if os.path.exists(path):
            os.unlink(path)
    s3("restore", url, "-o", out, *args)
    n = check_state(out, size=size)
    assert n == expected, f"restore{' ' + ' '.join(args) if args else ''} holds commit {n}, expected {expected}"


def test_replicate_snapshot_ls_restore_through_random_faults_lose_nothing(tmp):
    db = f"{tmp}/app.db"
    init_db(db)
    write(db, 20, size=3000)
    with Servers(tmp) as servers:
        url = servers.url()
        proxy = servers.proxy
        proxy.faults_at_random(0.15)
        log = open(f"{tmp}/replicate.log", "w")
        rep = subprocess.Popen([WALSHIP, "-v", "replicate", db, url, "--sync-interval", "100ms"],
                               stdout=subprocess.DEVNULL, stderr=log, env={**os.environ, **s3_env()})
        try:
            wait_for(lambda: any(e["method"] == "PUT" and ".snap" in e["target"] and e["status"] == 200
                                 for e in proxy.stats()["log"]), "the initial snapshot", timeout=60)
            # Each kind at least once on the deltas' PUTs, whatever the dice say.
            for kind in ("500", "503", "reset-request", "reset-response"):
                proxy.control(f"fail?kind={kind}&count=1&match=%5EPUT%20.*/deltas/")
            n = 0
            for _ in range(12):
                n = write(db, 25, size=3000)
                time.sleep(0.25)
            assert stop(rep, timeout=60) == 0, open(f"{tmp}/replicate.log").read()
        finally:
            if rep.poll() is None:
                rep.kill()
                rep.wait()
        stats = proxy.stats()
        for kind in ("500", "503", "reset-request", "reset-response"):
            assert stats["faults"].get(kind, 0) >= 1, f"no {kind} was injected: {stats['faults']}"
        # The faults never cost WAL continuity: no rehash, no TXID taken for
        # another writer's (a lost answer is recognised), and every TXID of
        # the run restores to a whole transaction.
        text = open(f"{tmp}/replicate.log").read()
        for bad in ("rehashing", "another process wrote", "fenced"):
            assert bad not in text, f"{bad!r} in the replicate log:\n{text}"
        txids = sorted(p["txid"] for p in json.loads(s3("ls", url, "--json").out))
        out = f"{tmp}/point.db"
        seen = []
        for txid in txids:
            for path in (out, out + "-wal", out + "-shm"):
                if os.path.exists(path):
                    os.unlink(path)
            s3("restore", url, "-o", out, "--txid", txid)
            seen.append(check_state(out, size=3000))
        assert seen == sorted(seen) and seen[-1] == n, seen

        # Every command still works through the same faults, and every
        # restore is exactly the last commit.
        restore_and_check(tmp, url, n, size=3000)
        restore_and_check(tmp, url, n, "--parallelism", "8", size=3000)
        # How many ships the faults left room for depends on the machine's
        # load; the listing must show the snapshot and at least one delta.
        points = json.loads(s3("ls", url, "--json").out)
        assert len(points) >= 2 and points[-1]["kind"] == "snapshot", points
        s3("snapshot", db, url)
        n = write(db, 30, size=3000)
        s3("snapshot", db, url)
        restore_and_check(tmp, url, n, size=3000)
        stats = proxy.stats()
        print(f"{stats['requests']} requests through the proxy, faults injected: {stats['faults']}")

        # And the replica is whole without the proxy too: straight from s3rver.
        proxy.faults_at_random(0)
        direct = f"s3://walship/app?endpoint=http://{servers.s3rver.address}"
        restore_and_check(tmp, direct, n, size=3000)


def test_an_outage_longer_than_the_retries_is_ridden_out(tmp):
    """Every request answered 503 for 12 s, far past one operation's retries:
    replicate keeps running, ships on its own once the store is back, and
    nothing is lost."""
    db = f"{tmp}/app.db"
    init_db(db)
    write(db, 20, size=3000)
    with Servers(tmp) as servers:
        url = servers.url()
        proxy = servers.proxy
        log = open(f"{tmp}/replicate.log", "w")
        rep = subprocess.Popen([WALSHIP, "-v", "replicate", db, url, "--sync-interval", "100ms"],
                               stdout=subprocess.DEVNULL, stderr=log, env={**os.environ, **s3_env()})
        try:
            wait_for(lambda: any(".snap" in e["target"] and e["status"] == 200 for e in proxy.stats()["log"]),
                     "the initial snapshot", timeout=60)
            proxy.control("fail?kind=503&count=1000000")
            n = 0
            for _ in range(12):
                n = write(db, 10, size=3000)
                time.sleep(1)
                assert rep.poll() is None, "replicate gave up during the outage"
            proxy.control("clear")
            n = write(db, 10, size=3000)
            wait_for(lambda: any("/deltas/" in e["target"] and e["method"] == "PUT" and e["status"] == 200
                                 for e in proxy.stats()["log"]), "a delta shipped after the outage", timeout=60)
            assert stop(rep, timeout=60) == 0, open(f"{tmp}/replicate.log").read()
        finally:
            if rep.poll() is None:
                rep.kill()
                rep.wait()
        restore_and_check(tmp, url, n, size=3000)


def test_a_stall_is_cut_by_the_low_speed_timeout_and_retried(tmp):
    db = f"{tmp}/app.db"
    init_db(db)
    write(db, 200, size=3000)
    with Servers(tmp) as servers:
        url = servers.url()
        proxy = servers.proxy
        # A PUT whose answer never comes, then a GET whose body stops half-way.
        proxy.control("fail?kind=stall&method=PUT&match=%5C.snap")
        started = time.monotonic()
        s3("snapshot", db, url)
        assert time.monotonic() - started < LOW_SPEED_SECONDS + 60
        proxy.control("fail?kind=stall&method=GET&match=%5C.snap")
        restore_and_check(tmp, url, 200, size=3000)
        assert proxy.stats()["faults"] == {"stall": 2}, proxy.stats()["faults"]


def writer_lock_ms(log_text):
    """Each locked checkpoint's writer_lock_ms in a -v log, sorted."""
    return sorted(int(m) for m in re.findall(r'msg="checkpoint.*?writer_lock_ms=(\d+)', log_text))


STALLS = 8


def test_a_stalled_store_never_holds_the_writer_lock(tmp):
    # Requests stall for 4 s at random (the answer comes late, then the
    # connection drops) while the app commits with a 2 s busy timeout
    # and walship checkpoints every 50 frames. Were walship to upload while it holds
    # SQLite's writer lock, a commit would wait out the stall and fail.
    db = f"{tmp}/app.db"
    init_db(db)
    with Servers(tmp, stall_seconds=4) as servers:
        url = servers.url()
        proxy = servers.proxy
        log = open(f"{tmp}/replicate.log", "w")
        rep = subprocess.Popen([WALSHIP, "-v", "replicate", db, url, "--sync-interval", "100ms",
                                "--checkpoint-pages", "50"],
                               stdout=subprocess.DEVNULL, stderr=log, env={**os.environ, **s3_env()})
        try:
            wait_for(lambda: "replicating" in open(f"{tmp}/replicate.log").read(), "replicate to start", 60)
            proxy.faults_at_random(0.3, kinds="stall")
            app = sqlite3.connect(db, isolation_level=None, timeout=2)
            n = app.execute("SELECT n FROM meta WHERE k = 1").fetchone()[0]
            deadline = time.monotonic() + 120
            while proxy.stats()["faults"].get("stall", 0) < STALLS:
                assert time.monotonic() < deadline, proxy.stats()
                n += 1
                try:
                    app.execute("BEGIN IMMEDIATE")
                    app.execute("INSERT INTO t(id, payload) VALUES(?, ?)", (n, payload(n, 3000)))
                    app.execute("UPDATE meta SET n = ? WHERE k = 1", (n,))
                    app.execute("COMMIT")
                except sqlite3.OperationalError as e:
                    raise AssertionError(f"commit {n}: {e}\n{open(f'{tmp}/replicate.log').read()[-3000:]}")
                time.sleep(0.01)
            app.close()
            proxy.faults_at_random(0)
            assert stop(rep, timeout=120) == 0, open(f"{tmp}/replicate.log").read()[-3000:]
        finally:
            if rep.poll() is None:
                rep.kill()
                rep.wait()
        text = open(f"{tmp}/replicate.log").read()
        locks = writer_lock_ms(text)
        assert locks, "no locked checkpoint ran: " + text[-3000:]
        print(f"{n} commits through {STALLS} stalled uploads; writer_lock_ms over {len(locks)} locked checkpoints: "
              f"p99 {locks[len(locks) * 99 // 100]}, max {locks[-1]}")
        restore_and_check(tmp, url, n, size=3000)


def test_a_multipart_snapshot_survives_failed_parts_and_a_lost_completion(tmp):
    """Above the multipart threshold: a part reset mid-body, a part answered
    500, then the CompleteMultipartUpload applied but its answer lost. The
    snapshot still succeeds, restores exactly, and no upload is left behind."""
    db = f"{tmp}/app.db"
    init_db(db)
    write(db, 100, size=3000)
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("CREATE TABLE noise(b BLOB)")
    for i in range(40):  # 40 MiB that does not compress: several parts
        conn.execute("INSERT INTO noise VALUES(?)", (random.Random(i).randbytes(1 << 20),))
    conn.close()
    with Servers(tmp) as servers:
        url = servers.url()
        proxy = servers.proxy
        proxy.control("fail?kind=reset-request&match=%5EPUT%20.*partNumber%3D2")
        proxy.control("fail?kind=500&match=%5EPUT%20.*partNumber%3D3")
        proxy.control("fail?kind=reset-response&match=%5EPOST%20.*uploadId%3D")
        s3("snapshot", db, url)
        assert proxy.stats()["faults"] == {"reset-request": 1, "500": 1, "reset-response": 1}, proxy.stats()
        assert servers.s3rver.leftover_uploads() == []
        restore_and_check(tmp, url, 100, size=3000)


def requests_to(proxy, pattern):
    return [e for e in proxy.stats()["log"] if re.search(pattern, f"{e['method']} {e['target']}")]


def test_403_and_404_are_not_retried(tmp):
    db = f"{tmp}/app.db"
    init_db(db)
    write(db, 50)
    with Servers(tmp) as servers:
        url = servers.url()
        proxy = servers.proxy
        s3("snapshot", db, url)

        # A wrong secret: s3rver answers 403 SignatureDoesNotMatch, once.
        proxy.control("clear")
        r = walship("ls", url, env=s3_env(secret="not-the-secret-xyzzy"))
        expect_one_error_line(r, 1, r"(?i)signature|denied|403|credentials")
        assert "xyzzy" not in r.err, r  # the secret never appears
        assert proxy.stats()["requests"] == 1, proxy.stats()["log"]

        # replicate's first start with that secret: the same one line and
        # exit 1, not retries forever (once started, it would retry: keys
        # get rotated).
        proxy.control("clear")
        r = walship("replicate", db, url, env=s3_env(secret="not-the-secret-xyzzy"), timeout=60)
        expect_one_error_line(r, 1, r"(?i)signature|denied|403|credentials")
        assert "xyzzy" not in r.err, r

        # 403 AccessDenied on the GET of a snapshot during a restore: once.
        proxy.control("clear")
        proxy.control("fail?kind=403&count=100&method=GET&match=%5C.snap")
        r = walship("restore", url, "-o", f"{tmp}/out.db", env=s3_env())
        assert r.code == 1, r
        assert len(requests_to(proxy, r"^GET .*\.snap")) == 1, proxy.stats()["log"]
        assert not os.path.exists(f"{tmp}/out.db"), "a failed restore left a file at the output path"

        # 404 for an object the listing named (it vanished): once, then a clear failure.
        proxy.control("clear")
        proxy.control("fail?kind=404&count=100&method=GET&match=%5C.snap")
        r = walship("restore", url, "-o", f"{tmp}/out.db", env=s3_env())
        assert r.code == 1, r
        assert len(requests_to(proxy, r"^GET .*\.snap")) == 1, proxy.stats()["log"]
        assert not os.path.exists(f"{tmp}/out.db")

        # A missing bucket: s3rver answers 404 NoSuchBucket, once.
        proxy.control("clear")
        r = walship("ls", servers.url(bucket="no-such-bucket"), env=s3_env())
        expect_one_error_line(r, 1, r"no-such-bucket")
        assert proxy.stats()["requests"] == 1, proxy.stats()["log"]

        # The same restore with the faults gone works: nothing was damaged.
        proxy.control("clear")
        restore_and_check(tmp, url, 50)


if __name__ == "__main__":
    run_tests([test_replicate_snapshot_ls_restore_through_random_faults_lose_nothing,
               test_an_outage_longer_than_the_retries_is_ridden_out,
               test_a_stall_is_cut_by_the_low_speed_timeout_and_retried,
               test_a_stalled_store_never_holds_the_writer_lock,
               test_a_multipart_snapshot_survives_failed_parts_and_a_lost_completion,
               test_403_and_404_are_not_retried])
