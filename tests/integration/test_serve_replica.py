"""serve-replica end to end on the filesystem backend, with real processes: a
writer commits transactions that keep an invariant, walship replicate ships
them, walship serve-replica applies them to a follower database, and reader
processes that open the follower read-only check the invariant on every read.
Also: growth and shrink (VACUUM), kill -9 mid-apply, bad input, /healthz and
/metrics."""
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from walship_test import (WALSHIP, checkpointed_bytes, expect_one_error_line, free_port, http_get,  # noqa: E402
                          metric, run_tests, stop, wait_for, walship)

ACCOUNTS = 20
TOTAL = ACCOUNTS * 1000

# A writer that keeps two invariants in every transaction: the balances sum
# to TOTAL, and meta.n equals the number of rows of history (one per
# transaction). Rows carry a payload so the database keeps growing.
WRITER = r"""
import random, sqlite3, sys, time
path, count, delay, size = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
db = sqlite3.connect(path, isolation_level=None, timeout=30)
db.execute("PRAGMA synchronous=NORMAL")
rng = random.Random(7)
n = db.execute("SELECT n FROM meta").fetchone()[0]
for _ in range(count):
    a, b = rng.sample(range(1, %d + 1), 2)
    amount = rng.randint(1, 50)
    db.execute("BEGIN IMMEDIATE")
    db.execute("UPDATE accounts SET balance = balance - ? WHERE id = ?", (amount, a))
    db.execute("UPDATE accounts SET balance = balance + ? WHERE id = ?", (amount, b))
    n += 1
    db.execute("INSERT INTO history(n, payload) VALUES(?, randomblob(?))", (n, size))
    db.execute("UPDATE meta SET n = ?", (n,))
    db.execute("COMMIT")
    if delay:
        time.sleep(delay)
print(n)
""" % ACCOUNTS

# A reader process: opens the follower read-only and, until STOP exists,
# checks both invariants inside one read transaction per read. Prints
# {"reads": R, "violations": V, "max_n": N, "first": "..."} at the end.
READER = r"""
import json, os, sqlite3, sys, time
path, stop, total = sys.argv[1], sys.argv[2], int(sys.argv[3])
reads = violations = max_n = 0
first = None
db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, timeout=30)
while not os.path.exists(stop):
    try:
        db.execute("BEGIN")
        s, c = db.execute("SELECT sum(balance), count(*) FROM accounts").fetchone()
        n = db.execute("SELECT n FROM meta").fetchone()[0]
        h = db.execute("SELECT count(*) FROM history").fetchone()[0]
        db.execute("COMMIT")
    except sqlite3.DatabaseError as e:
        violations += 1
        first = first or f"error: {e}"
        db.close()
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, timeout=30)
        continue
    reads += 1
    max_n = max(max_n, n)
    if s != total or h != n or c != %d:
        violations += 1
        first = first or f"sum={s} accounts={c} n={n} history={h}"
print(json.dumps({"reads": reads, "violations": violations, "max_n": max_n, "first": first}))
""" % ACCOUNTS


def init_source(path):
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE accounts(id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)")
    db.execute("CREATE TABLE history(n INTEGER PRIMARY KEY, payload BLOB NOT NULL)")
    db.execute("CREATE TABLE meta(n INTEGER NOT NULL)")
    db.executemany("INSERT INTO accounts VALUES(?, 1000)", [(i,) for i in range(1, ACCOUNTS + 1)])
    db.execute("INSERT INTO meta VALUES(0)")
    db.close()


def start(tmp, name, *args):
    err = open(f"{tmp}/{name}.log", "a")
    return subprocess.Popen([WALSHIP, "-v", *map(str, args)], stdout=subprocess.DEVNULL, stderr=err)


def read_n(path):
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            return db.execute("SELECT n FROM meta").fetchone()[0]
        finally:
            db.close()
    except sqlite3.DatabaseError:
        return -1


def integrity(path):
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        return db.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        db.close()


def follower_bytes(path):
    """The follower's bytes with its WAL checkpointed (serve-replica stopped)."""
    return checkpointed_bytes(path)


def log_tail(tmp, name):
    try:
        with open(f"{tmp}/{name}.log") as f:
            return f.read()[-3000:]
    except OSError:
        return ""


# ---------------------------------------------------------------------------


def test_readers_never_see_a_torn_transaction(tmp):
    src, replica, follow = f"{tmp}/src.db", f"{tmp}/replica", f"{tmp}/follow.db"
    count = int(os.environ.get("WALSHIP_SERVE_TX", "12000"))
    init_source(src)
    rep = start(tmp, "replicate", "replicate", src, f"file://{replica}", "--sync-interval", "100ms")
    wait_for(lambda: os.path.isdir(f"{replica}/snapshots") and os.listdir(f"{replica}/snapshots"), "a snapshot")
    port = free_port()
    serve = start(tmp, "serve", "serve-replica", f"file://{replica}", follow, "--poll-interval", "50ms",
                  "--http", f"127.0.0.1:{port}")
    wait_for(lambda: read_n(follow) >= 0, "the follower database")
    stop_file = f"{tmp}/stop-readers"
    readers = [subprocess.Popen([sys.executable, "-c", READER, follow, stop_file, str(TOTAL)],
                                stdout=subprocess.PIPE, text=True) for _ in range(8)]
    started = time.monotonic()
    writer = subprocess.run([sys.executable, "-c", WRITER, src, str(count), "0.002", "300"],
                            capture_output=True, text=True, timeout=900)
    assert writer.returncode == 0, writer.stderr
    final_n = int(writer.stdout)
    assert stop(rep) == 0, log_tail(tmp, "replicate")
    wait_for(lambda: read_n(follow) == final_n, f"the follower to reach n={final_n}", timeout=120)
    open(stop_file, "w").close()
    results = [json.loads(r.communicate(timeout=60)[0]) for r in readers]
    elapsed = time.monotonic() - started
    status, body = http_get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    deltas = metric(body, "walship_applied_deltas_total")
    assert stop(serve) == 0, log_tail(tmp, "serve")

    reads = sum(r["reads"] for r in results)
    violations = sum(r["violations"] for r in results)
    firsts = [r["first"] for r in results if r["first"]]
    print(f"    {final_n} writer transactions in {deltas:.0f} applied deltas, {reads} reads by 8 readers, "
          f"{violations} violations, {elapsed:.0f}s")
    assert violations == 0, firsts
    assert final_n >= 10000 or count < 10000, final_n
    assert reads >= 8 * 50, reads
    assert deltas >= 50, deltas
    assert integrity(follow) == "ok"
    assert follower_bytes(follow) == checkpointed_bytes(src), "the follower's bytes differ from the source"


def test_growth_and_vacuum_are_followed(tmp):
    src, replica, follow = f"{tmp}/src.db", f"{tmp}/replica", f"{tmp}/follow.db"
    init_source(src)
    rep = start(tmp, "replicate", "replicate", src, f"file://{replica}", "--sync-interval", "100ms")
    wait_for(lambda: os.path.isdir(f"{replica}/snapshots") and os.listdir(f"{replica}/snapshots"), "a snapshot")
    serve = start(tmp, "serve", "serve-replica", f"file://{replica}", follow, "--poll-interval", "50ms")
    wait_for(lambda: read_n(follow) == 0, "the follower database")
    small_pages = os.path.getsize(follow) // 4096
    # Grow by about 8 MB in a few big transactions.
    subprocess.run([sys.executable, "-c", WRITER, src, "40", "0", "200000"], check=True, capture_output=True)
    wait_for(lambda: read_n(follow) == 40, "the follower to grow", timeout=120)
    db = sqlite3.connect(f"file:{follow}?mode=ro", uri=True)
    grown_pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.close()
    assert grown_pages > small_pages + 1000, (small_pages, grown_pages)
    # Shrink: delete the big rows (keeping the invariant) and VACUUM.
    db = sqlite3.connect(src, isolation_level=None)
    db.execute("BEGIN IMMEDIATE")
    db.execute("UPDATE history SET payload = x'00'")
    db.execute("COMMIT")
    db.execute("VACUUM")
    db.close()
    wait_for(lambda: os.path.getsize(follow) < grown_pages * 4096 // 4 or _page_count(follow) < grown_pages // 4,
             "the follower to shrink", timeout=120)
    assert stop(rep) == 0, log_tail(tmp, "replicate")
    time.sleep(1)
    assert stop(serve) == 0, log_tail(tmp, "serve")
    assert integrity(follow) == "ok"
    assert follower_bytes(follow) == checkpointed_bytes(src), "the follower's bytes differ from the source"


def _page_count(path):
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute("PRAGMA page_count").fetchone()[0]
    finally:
        db.close()


def test_kill_9_mid_apply_leaves_the_follower_intact_and_it_resumes(tmp):
    src, replica, follow = f"{tmp}/src.db", f"{tmp}/replica", f"{tmp}/follow.db"
    init_source(src)
    rep = start(tmp, "replicate", "replicate", src, f"file://{replica}", "--sync-interval", "100ms")
    wait_for(lambda: os.path.isdir(f"{replica}/snapshots") and os.listdir(f"{replica}/snapshots"), "a snapshot")
    # Big transactions, so that applies take a while and kills land inside them.
    writer = subprocess.Popen([sys.executable, "-c", WRITER, src, "300", "0.01", "400000"],
                              stdout=subprocess.PIPE, text=True)
    rng = random.Random(99)
    serve = start(tmp, "serve", "serve-replica", f"file://{replica}", follow, "--poll-interval", "20ms")
    kills = 0

    def every_start_followed():
        with open(f"{tmp}/serve.log") as f:
            return f.read().count('msg="following"') == kills + 1
    for _ in range(8):
        # Each kill lands while it follows (applies), not while it starts: on
        # a loaded machine a start can take longer than the pause below.
        wait_for(every_start_followed, f"start {kills + 1} to follow")
        time.sleep(rng.uniform(0.3, 1.2))
        serve.kill()
        serve.wait()
        kills += 1
        if os.path.exists(follow):
            assert integrity(follow) == "ok", f"after kill {kills}"
            assert read_n(follow) >= 0
        serve = start(tmp, "serve", "serve-replica", f"file://{replica}", follow, "--poll-interval", "20ms")
    final_n = int(writer.communicate(timeout=600)[0])
    assert stop(rep) == 0, log_tail(tmp, "replicate")
    wait_for(lambda: read_n(follow) == final_n, f"the follower to reach n={final_n}", timeout=180)
    # The last start may not have begun following yet (the one before it
    # caught up): a SIGTERM before that can kill it (test_serve_replica_stop).
    wait_for(every_start_followed, "the last start to follow")
    assert stop(serve) == 0, log_tail(tmp, "serve")
    assert integrity(follow) == "ok"
    assert follower_bytes(follow) == checkpointed_bytes(src), "the follower's bytes differ from the source"
    with open(f"{tmp}/serve.log") as f:
        log = f.read()
    assert log.count('msg="following"') == kills + 1, log[-3000:]
    between = log.count('msg="the last apply committed')
    print(f"    {kills} kills ({between} between a COMMIT and its state save), {final_n} transactions followed")


def test_bad_input_is_one_clear_line(tmp):
    os.makedirs(f"{tmp}/empty")
    r = walship("serve-replica", f"file://{tmp}/empty", f"{tmp}/follow.db", timeout=60)
    expect_one_error_line(r, 1, r"no replica at '.*empty'")
    assert not os.path.exists(f"{tmp}/follow.db") and not os.path.exists(f"{tmp}/follow.db-walship")

    src, replica = f"{tmp}/src.db", f"{tmp}/replica"
    init_source(src)
    rep = start(tmp, "replicate", "replicate", src, f"file://{replica}", "--sync-interval", "100ms")
    wait_for(lambda: os.path.isdir(f"{src}-walship") and any(n.endswith(".state") for n in os.listdir(f"{src}-walship")),
             "the replicator's state")
    r = walship("serve-replica", f"file://{replica}", src, timeout=60)
    expect_one_error_line(r, 2, r"is replicated by walship replicate")
    assert stop(rep) == 0

    follow = f"{tmp}/follow.db"
    serve = start(tmp, "serve", "serve-replica", f"file://{replica}", follow)
    wait_for(lambda: read_n(follow) >= 0, "the follower database")
    r = walship("serve-replica", f"file://{replica}", follow, timeout=60)
    expect_one_error_line(r, 2, r"already followed by another walship serve-replica")
    r = walship("replicate", follow, f"file://{tmp}/other", timeout=60)
    expect_one_error_line(r, 2, r"is followed by walship serve-replica")
    assert stop(serve) == 0

    r = walship("serve-replica", f"file://{replica}", follow, "--poll-interval", "soon", timeout=60)
    expect_one_error_line(r, 2, r"invalid --poll-interval 'soon'")
    r = walship("serve-replica", f"file://{replica}", follow, "--http", "nowhere", timeout=60)
    expect_one_error_line(r, 2, r"invalid --http 'nowhere'")
    r = walship("serve-replica", f"file://{replica}", follow, "--http", "example.com:9090", timeout=60)
    expect_one_error_line(r, 2, r"invalid --http 'example.com:9090': 'example.com' is not an IP address")


def test_healthz_and_metrics(tmp):
    src, replica, follow = f"{tmp}/src.db", f"{tmp}/replica", f"{tmp}/follow.db"
    init_source(src)
    walship("snapshot", src, f"file://{replica}", check=0)
    port, lagging_port = free_port(), free_port()
    serve = start(tmp, "serve", "serve-replica", f"file://{replica}", follow, "--poll-interval", "100ms",
                  "--http", f"127.0.0.1:{port}")
    wait_for(lambda: read_n(follow) == 0, "the follower database")
    wait_for(lambda: http_get(f"http://127.0.0.1:{port}/readyz")[0] == 200, "a ready /readyz", timeout=30)
    status, body = http_get(f"http://127.0.0.1:{port}/healthz")
    assert json.loads(body)["status"] == "ok", body
    health = json.loads(body)["databases"][0]
    assert health["status"] == "ok" and health["txid"] == "0000000000000001", body
    assert health["role"] == "serve-replica" and health["db"] == follow, body
    assert health["lag_transactions"] == 0 and health["last_error"] is None, body
    assert 0 <= health["lag_seconds"] < 10, body
    status, text = http_get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200, text
    for name in ["walship_applied_txid", "walship_replica_txid", "walship_lag_seconds",
                 "walship_lag_transactions", "walship_applied_deltas_total", "walship_checkpoints_total",
                 "walship_downloaded_bytes_total"]:
        assert f"# TYPE {name} " in text, name
    assert metric(text, "walship_applied_txid") == 1
    assert 'walship_storage_requests_total{db="' + follow + '",backend="file",op="get"}' in text, text
    assert metric(text, "walship_downloaded_bytes_total") > 0
    assert 'walship_build_info{version="' in text, text
    for name in ["process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds",
                 "process_start_time_seconds"]:
        assert re.search(rf"^{name} \d", text, re.M), (name, text)
    status, _ = http_get(f"http://127.0.0.1:{port}/readyz")
    assert status == 200
    # A follower that polls rarely, held to a 1 ms lag: /readyz 503, with the
    # same body; /healthz (alive) still 200.
    serve2 = start(tmp, "serve2", "serve-replica", f"file://{replica}", f"{tmp}/follow2.db", "--poll-interval",
                   "5s", "--http", f"127.0.0.1:{lagging_port}", "--max-lag", "1ms")
    wait_for(lambda: read_n(f"{tmp}/follow2.db") == 0, "the second follower")
    time.sleep(1.2)
    status, body = http_get(f"http://127.0.0.1:{lagging_port}/readyz")
    assert status == 503 and json.loads(body)["databases"][0]["status"] == "lagging", (status, body)
    status, body = http_get(f"http://127.0.0.1:{lagging_port}/healthz")
    assert status == 200 and json.loads(body)["databases"][0]["status"] == "lagging", (status, body)
    status, _ = http_get(f"http://127.0.0.1:{port}/nothing")
    assert status == 404
    assert stop(serve2) == 0
    assert stop(serve) == 0, log_tail(tmp, "serve")


def test_catch_up_after_an_absence_downloads_compacted_files(tmp):
    """A scaled-down "day away": L1 files per second and L2 files per 4 s stand
    for minutes and hours, and replicate prunes to the last 3 s every second.
    The follower stops in the middle of an L2 span; while it is away the writer
    commits for about 12 s and the prune deletes the deltas that chained onto
    its TXID. On restart it must catch up through the compacted files (one
    LIST, then few downloads, the first spanning its TXID), ending byte-equal."""
    src, replica, follow = f"{tmp}/src.db", f"{tmp}/replica", f"{tmp}/follow.db"
    init_source(src)
    with open(f"{tmp}/walship.toml", "w") as f:
        f.write(f'''[[databases]]
path = "{src}"
replicas = ["file://{replica}"]
sync-interval = "100ms"
l1-span = "1s"
l2-span = "4s"
keep-within = "3s"
retention-interval = "1s"
''')
    rep = start(tmp, "replicate", "replicate", "--config", f"{tmp}/walship.toml")
    wait_for(lambda: os.path.isdir(f"{replica}/snapshots") and os.listdir(f"{replica}/snapshots"), "a snapshot")
    serve = start(tmp, "serve", "serve-replica", f"file://{replica}", follow, "--poll-interval", "50ms")
    wait_for(lambda: read_n(follow) == 0, "the follower database")
    subprocess.run([sys.executable, "-c", WRITER, src, "30", "0.02", "300"], check=True, capture_output=True)
    wait_for(lambda: read_n(follow) == 30, "the follower to reach n=30")
    assert stop(serve) == 0
    with open(f"{tmp}/serve.log") as f:
        away_txid = int([line for line in f if 'msg="stopped"' in line][-1].split("txid=")[1].split()[0], 16)
    subprocess.run([sys.executable, "-c", WRITER, src, "600", "0.02", "300"], check=True, capture_output=True)
    final_n = read_n(src)
    # Let the last buckets end, be compacted and pruned.
    wait_for(lambda: os.path.isdir(f"{replica}/deltas/L2") and len(os.listdir(f"{replica}/deltas/L2")) >= 2,
             "L2 files", timeout=60)
    time.sleep(5)
    next_l0 = f"{replica}/deltas/L0/{away_txid + 1:016x}.delta"
    wait_for(lambda: not os.path.exists(next_l0), "the prune to delete the delta after the follower's TXID",
             timeout=60)
    serve = start(tmp, "serve2", "serve-replica", f"file://{replica}", follow, "--poll-interval", "50ms")
    wait_for(lambda: read_n(follow) == final_n, f"the follower to reach n={final_n}", timeout=120)
    assert stop(rep) == 0, log_tail(tmp, "replicate")
    time.sleep(0.5)
    assert stop(serve) == 0, log_tail(tmp, "serve2")
    with open(f"{tmp}/serve2.log") as f:
        lines = f.readlines()
    objects = [line.split("object=")[1].split()[0] for line in lines if 'msg="applied"' in line]
    final_txid = int([line for line in lines if 'msg="stopped"' in line][-1].split("txid=")[1].split()[0], 16)
    l0_written = final_txid - away_txid  # one L0 delta per TXID
    compacted = [o for o in objects if not o.startswith("deltas/L0/")]
    print(f"    caught up over {l0_written} L0 deltas by applying {len(objects)} files "
          f"({len(compacted)} compacted: {', '.join(sorted(set(o.split('/')[1] for o in compacted)))})")
    assert compacted, objects
    assert len(objects) * 4 <= l0_written, (len(objects), l0_written)
    assert follower_bytes(follow) == checkpointed_bytes(src), "the follower's bytes differ from the source"


def test_a_stop_at_any_moment_of_startup_is_clean(tmp):
    """SIGTERM at moments spread over the initial restore and the start of
    following: either it stops after the restore's rename with a whole PATH
    (exit 0), or it dies inside the restore leaving no PATH and no temp file.
    A later start then restores and follows as usual."""
    src, replica = f"{tmp}/src.db", f"{tmp}/replica"
    init_source(src)
    subprocess.run([sys.executable, "-c", WRITER, src, "300", "0", "4000"], check=True, capture_output=True)
    n = read_n(src)
    walship("snapshot", src, f"file://{replica}", check=0)
    # How long the restore takes here, to aim the signals around its end.
    began = time.monotonic()
    probe = start(tmp, "probe", "serve-replica", f"file://{replica}", f"{tmp}/probe.db")
    wait_for(lambda: os.path.exists(f"{tmp}/probe.db"), "the restored database")
    appeared = time.monotonic() - began
    assert stop(probe) == 0, log_tail(tmp, "probe")
    outcomes = []
    # A few moments early in the restore, most around its end.
    moments = [appeared * i / 10 for i in range(8)] + [appeared * (0.8 + i / 40) for i in range(24)]
    for i, moment in enumerate(moments):
        follow = f"{tmp}/follow{i}.db"
        proc = start(tmp, f"serve{i}", "serve-replica", f"file://{replica}", follow)
        time.sleep(moment)
        code = stop(proc)
        leftovers = [name for name in os.listdir(tmp) if ".walship-tmp-" in name]
        assert not leftovers, leftovers
        if code == 0:
            assert read_n(follow) == n and integrity(follow) == "ok", log_tail(tmp, f"serve{i}")
        else:
            assert code == -signal.SIGTERM, (code, log_tail(tmp, f"serve{i}"))
            assert not os.path.exists(follow), f"a stop that killed the restore left {follow}"
        outcomes.append(code)
    print(f"    restore took {appeared * 1000:.0f} ms; {outcomes.count(0)} stopped after it, "
          f"{outcomes.count(-signal.SIGTERM)} inside it")
    follow = f"{tmp}/follow0.db"
    serve = start(tmp, "again", "serve-replica", f"file://{replica}", follow)
    wait_for(lambda: read_n(follow) == n, "the follower after the stops")
    assert stop(serve) == 0, log_tail(tmp, "again")


def test_a_new_snapshot_after_lost_continuity_is_followed(tmp):
    """The writer's replicator loses its state and finds the database changed:
    it starts a new history with a snapshot at a new TXID. The follower, which
    no delta chains from any more, re-seeds from that snapshot (one
    transaction) at its next LIST, with readers never seeing a torn state."""
    src, replica, follow = f"{tmp}/src.db", f"{tmp}/replica", f"{tmp}/follow.db"
    init_source(src)
    rep = start(tmp, "replicate", "replicate", src, f"file://{replica}", "--sync-interval", "100ms")
    wait_for(lambda: os.path.isdir(f"{replica}/snapshots") and os.listdir(f"{replica}/snapshots"), "a snapshot")
    serve = start(tmp, "serve", "serve-replica", f"file://{replica}", follow, "--poll-interval", "50ms",
                  "--list-interval", "1s")
    subprocess.run([sys.executable, "-c", WRITER, src, "50", "0", "300"], check=True, capture_output=True)
    wait_for(lambda: read_n(follow) == 50, "the follower to reach n=50")
    assert stop(rep) == 0
    # Continuity lost: no local state, and the database changed meanwhile.
    subprocess.run(["rm", "-rf", f"{src}-walship"], check=True)
    subprocess.run([sys.executable, "-c", WRITER, src, "30", "0", "300"], check=True, capture_output=True)
    snapshots_before = len(os.listdir(f"{replica}/snapshots"))
    rep = start(tmp, "replicate2", "replicate", src, f"file://{replica}", "--sync-interval", "100ms")
    wait_for(lambda: len(os.listdir(f"{replica}/snapshots")) > snapshots_before, "a new snapshot")
    subprocess.run([sys.executable, "-c", WRITER, src, "20", "0", "300"], check=True, capture_output=True)
    wait_for(lambda: read_n(follow) == 100, "the follower to follow the new history", timeout=60)
    assert stop(rep) == 0
    time.sleep(0.5)
    assert stop(serve) == 0, log_tail(tmp, "serve")
    with open(f"{tmp}/serve.log") as f:
        assert 'msg="re-seeded from a snapshot"' in f.read()
    assert integrity(follow) == "ok"
    assert follower_bytes(follow) == checkpointed_bytes(src), "the follower's bytes differ from the source"


def test_failover_drill(tmp):
    """Kill -9 the writer node (app and replicate), keep reading from the
    follower, restore a new writer elsewhere from the replica storage, resume
    writes there: the follower keeps following the new writer, and its 4
    readers never see a torn transaction."""
    node_a, node_b = f"{tmp}/node-a", f"{tmp}/node-b"
    os.makedirs(node_a)
    os.makedirs(node_b)
    src, replica, follow = f"{node_a}/app.db", f"{tmp}/replica", f"{tmp}/follow.db"
    init_source(src)
    rep = start(tmp, "replicate-a", "replicate", src, f"file://{replica}", "--sync-interval", "100ms")
    wait_for(lambda: os.path.isdir(f"{replica}/snapshots") and os.listdir(f"{replica}/snapshots"), "a snapshot")
    serve = start(tmp, "serve", "serve-replica", f"file://{replica}", follow, "--poll-interval", "50ms",
                  "--list-interval", "1s")
    wait_for(lambda: read_n(follow) >= 0, "the follower database")
    stop_file = f"{tmp}/stop-readers"
    readers = [subprocess.Popen([sys.executable, "-c", READER, follow, stop_file, str(TOTAL)],
                                stdout=subprocess.PIPE, text=True) for _ in range(4)]
    writer = subprocess.Popen([sys.executable, "-c", WRITER, src, "100000", "0.002", "300"],
                              stdout=subprocess.DEVNULL)
    wait_for(lambda: read_n(follow) >= 500, "the follower to apply the first writer's commits")
    # The writer node dies: no graceful stop, whatever was not shipped is lost.
    writer.kill()
    rep.kill()
    writer.wait()
    rep.wait()
    time.sleep(0.5)
    n_at_failover = read_n(follow)
    # A new writer elsewhere: restore from the replica, replicate, write on.
    walship("restore", f"file://{replica}", "-o", f"{node_b}/app.db", check=0)
    restored_n = read_n(f"{node_b}/app.db")
    assert restored_n >= n_at_failover, (restored_n, n_at_failover)
    rep = start(tmp, "replicate-b", "replicate", f"{node_b}/app.db", f"file://{replica}", "--sync-interval",
                "100ms")
    subprocess.run([sys.executable, "-c", WRITER, f"{node_b}/app.db", "1500", "0.002", "300"], check=True,
                   capture_output=True)
    final_n = read_n(f"{node_b}/app.db")
    assert stop(rep) == 0, log_tail(tmp, "replicate-b")
    wait_for(lambda: read_n(follow) == final_n, f"the follower to reach the new writer's n={final_n}", timeout=120)
    open(stop_file, "w").close()
    results = [json.loads(r.communicate(timeout=60)[0]) for r in readers]
    assert stop(serve) == 0, log_tail(tmp, "serve")
    reads = sum(r["reads"] for r in results)
    violations = sum(r["violations"] for r in results)
    with open(f"{tmp}/serve.log") as f:
        reseeds = f.read().count('msg="re-seeded from a snapshot"')
    print(f"    failover at n={n_at_failover} (replica had {restored_n}), new writer to n={final_n} "
          f"({reseeds} re-seeds); {reads} reads by 4 readers, {violations} violations")
    assert violations == 0, [r["first"] for r in results if r["first"]]
    assert integrity(follow) == "ok"
    assert follower_bytes(follow) == checkpointed_bytes(f"{node_b}/app.db"), "the follower differs from the new writer"


def test_a_database_made_by_walship_restore_is_adopted(tmp):
    """PATH restored by walship restore (no serve-replica state beside it), at
    the newest TXID or an older one: serve-replica finds where it is from its
    checksum and follows on."""
    src, replica = f"{tmp}/src.db", f"{tmp}/replica"
    init_source(src)
    rep = start(tmp, "replicate", "replicate", src, f"file://{replica}", "--sync-interval", "100ms")
    wait_for(lambda: os.path.isdir(f"{replica}/snapshots") and os.listdir(f"{replica}/snapshots"), "a snapshot")
    subprocess.run([sys.executable, "-c", WRITER, src, "20", "0.02", "300"], check=True, capture_output=True)
    assert stop(rep) == 0
    walship("restore", f"file://{replica}", "-o", f"{tmp}/newest.db", check=0)
    walship("restore", f"file://{replica}", "-o", f"{tmp}/oldest.db", "--txid", "1", check=0)
    rep = start(tmp, "replicate", "replicate", src, f"file://{replica}", "--sync-interval", "100ms")
    for name in ["newest", "oldest"]:
        serve = start(tmp, f"serve-{name}", "serve-replica", f"file://{replica}", f"{tmp}/{name}.db",
                      "--poll-interval", "50ms")
        subprocess.run([sys.executable, "-c", WRITER, src, "5", "0.02", "300"], check=True, capture_output=True)
        target = read_n(src)
        wait_for(lambda: read_n(f"{tmp}/{name}.db") == target, f"{name}.db to follow to n={target}")
        assert stop(serve) == 0, log_tail(tmp, f"serve-{name}")
    assert stop(rep) == 0


def test_kill_9_inside_an_apply_transaction_changes_nothing(tmp):
    """Deterministic: serve-replica holds each transaction open before COMMIT
    (a test-only pause), is killed -9 inside it, and PATH is exactly the state
    before that delta; the restart resumes and applies it."""
    src, replica, follow = f"{tmp}/src.db", f"{tmp}/replica", f"{tmp}/follow.db"
    init_source(src)
    rep = start(tmp, "replicate", "replicate", src, f"file://{replica}", "--sync-interval", "100ms")
    wait_for(lambda: os.path.isdir(f"{replica}/snapshots") and os.listdir(f"{replica}/snapshots"), "a snapshot")
    subprocess.run([sys.executable, "-c", WRITER, src, "10", "0", "300"], check=True, capture_output=True)
    walship("restore", f"file://{replica}", "-o", follow, check=0)  # so nothing is pending at start
    before = read_n(follow)
    err = open(f"{tmp}/serve.log", "a")
    serve = subprocess.Popen([WALSHIP, "-v", "serve-replica", f"file://{replica}", follow, "--poll-interval", "50ms"],
                             stdout=subprocess.DEVNULL, stderr=err,
                             env=dict(os.environ, WALSHIP_TEST_APPLY_PAUSE_MS="3000"))
    wait_for(lambda: os.path.exists(f"{follow}-walship/follow"), "serve-replica to start")
    subprocess.run([sys.executable, "-c", WRITER, src, "10", "0", "300"], check=True, capture_output=True)
    final_n = read_n(src)

    def pending():
        with open(f"{follow}-walship/follow") as f:
            return "pending_txid 0000000000000000" not in f.read()
    wait_for(pending, "a transaction to be held open before COMMIT")
    serve.kill()
    serve.wait()
    assert integrity(follow) == "ok"
    assert read_n(follow) == before, "a killed transaction left part of itself"
    serve = start(tmp, "serve", "serve-replica", f"file://{replica}", follow, "--poll-interval", "50ms")
    wait_for(lambda: read_n(follow) == final_n, f"the follower to reach n={final_n}")
    assert stop(rep) == 0
    time.sleep(0.3)
    assert stop(serve) == 0
    assert follower_bytes(follow) == checkpointed_bytes(src)


# The long ones (a minute or more here) are run by test_serve_replica_slow.py,
# which the sanitizer pass leaves out.
FAST = [test_bad_input_is_one_clear_line, test_healthz_and_metrics, test_growth_and_vacuum_are_followed,
        test_catch_up_after_an_absence_downloads_compacted_files, test_a_stop_at_any_moment_of_startup_is_clean,
        test_a_new_snapshot_after_lost_continuity_is_followed,
        test_a_database_made_by_walship_restore_is_adopted, test_kill_9_inside_an_apply_transaction_changes_nothing]
SLOW = [test_readers_never_see_a_torn_transaction, test_kill_9_mid_apply_leaves_the_follower_intact_and_it_resumes,
        test_failover_drill]

if __name__ == "__main__":
    run_tests(FAST)
