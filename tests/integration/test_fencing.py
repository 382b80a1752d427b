"""One writer per replica (issue 16, DESIGN.md "Fencing"), each scenario
written once and run on one backend per process:

  test_fencing.py [file|s3|sftp|gcs] [NAME...]

file (the default, what the glob in tests/CMakeLists.txt registers), s3
(tests/s3's s3rver, which honours If-None-Match: *), sftp (a throwaway
OpenSSH sshd) and gcs (tests/gcs_server, ifGenerationMatch=0, through the
service-account JWT path); CMake adds one test per remote backend so that
ctest runs them side by side. A backend whose server cannot run here makes
every scenario count as skipped, never passed. NAMEs select the scenarios
whose names contain one of them.

The scenarios, with real processes and a 3 s lease TTL:
- two replicates on two databases, one URL: one ships, the other exits 4
  within about one TTL naming the holder;
- a zombie: writer A (with an --exec app) paused by SIGSTOP, B takes over
  (--take-over, and separately once the TTL expires); every restore point
  after the takeover is one of B's states, A exits 4 when resumed and its
  app is stopped;
- a stale node back with its old disk runs packaging/docker/entrypoint.sh:
  fast-forwarded to the other node's data, none of it overwritten;
- snapshot from cron beside a running replicate at 50 and 200 tx/s with a
  serve-replica following: every point restores, the follower keeps up;
- kill -9 of a holder another machine's (here: another pid namespace's):
  the next writer takes over after the TTL without --take-over, and what
  was acknowledged more than the sync interval + 1 s before the kill is
  in the replica;
- a latest restore whose newest point is unreachable exits 1, and
  --allow-older restores the newest reachable point, saying so.

Rows are told apart by their payload's length (payload(n, size) of
walship_test): each writer writes its own size, so a restored database says
whose rows it holds."""
import http.client
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, os.path.join(HERE, "..", "s3"))
sys.path.insert(0, os.path.join(HERE, "..", "sftp"))
sys.path.insert(0, HERE)
import walship_test  # noqa: E402
from walship_test import (SOURCE, WALSHIP, Skipped, check_state, checkpointed_bytes, children_of,  # noqa: E402
                          payload, run_tests, walship)
from test_replicate import init_db, source_n, write  # noqa: E402

WRITER = os.path.join(HERE, "..", "lib", "writer_app.py")
TTL = "3s"  # the shortest walship accepts: renewed every second
FENCED = 4
A_SIZE, B_SIZE = 1000, 700  # payload lengths of the first and the second writer's rows

# No agent, emulator or profile setting of the person running the tests may take part.
for name in ("SSH_AUTH_SOCK", "STORAGE_EMULATOR_HOST", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
    os.environ.pop(name, None)


def stop(proc, sig=signal.SIGTERM, timeout=60):
    return walship_test.stop(proc, sig, timeout)


def wait_for(predicate, what, timeout=60):
    walship_test.wait_for(predicate, what, timeout)


# ---------------------------------------------------------------------------
# Backends: each starts its server in the test's temp dir and gives the
# replica's URL and a way to delete one of its objects behind walship's back.


class FileBackend:
    name = "file"

    def __init__(self, tmp):
        self.dir = f"{tmp}/replica"
        self.url = f"file://{self.dir}"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def remove(self, key):
        os.remove(f"{self.dir}/{key}")


class SftpBackend(FileBackend):
    """A real OpenSSH sshd serving the test's own temp dir."""
    name = "sftp"

    def __init__(self, tmp):
        from sshd_server import Sshd, available
        reason = available()
        if reason:
            raise Skipped(reason)
        super().__init__(tmp)
        self.server = Sshd()

    def __enter__(self):
        self.server.start()
        self.url = self.server.url(self.dir)
        return self

    def __exit__(self, *exc):
        self.server.close()


class S3Backend:
    name = "s3"

    def __init__(self, tmp):
        from s3_test_server import ACCESS_KEY_ID, S3RVER, SECRET_ACCESS_KEY, S3rver
        if shutil.which("node") is None:
            raise Skipped("node is not installed (scripts/setup installs it)")
        if not os.path.exists(S3RVER):
            raise Skipped(f"s3rver is not installed in {os.path.dirname(os.path.dirname(S3RVER))} (scripts/setup)")
        # Every walship this process starts (replicate, the entrypoint's, serve-replica) reads them.
        os.environ.update(AWS_ACCESS_KEY_ID=ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY=SECRET_ACCESS_KEY)
        self.server = S3rver(f"{tmp}/s3")
        self.url = f"s3://walship/fencing?endpoint={self.server.endpoint}"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.server.close()

    def remove(self, key):
        from s3_test_server import Client
        client = Client(self.server)
        try:
            client.request("DELETE", "walship", f"fencing/{key}")
        finally:
            client.close()


class GcsBackend:
    name = "gcs"

    def __init__(self, tmp):
        try:
            import cryptography  # noqa: F401
        except ImportError:
            raise Skipped("python3-cryptography is not installed (scripts/setup installs it)")
        from test_gcs import GcsServer
        # Lists in pages of 1000 (GcsServer's 2 makes every LIST dozens of
        # requests here; test_gcs.py tests the paging).
        self.server = GcsServer(tmp, auth=True, extra=["--page-size", "1000"])
        self.url = (f"gs://walship/fencing?endpoint={self.server.endpoint}"
                    f"&credentials-file={self.server.creds}/service-account.json")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.server.close()

    def remove(self, key):
        # The server's metadata-server token endpoint hands the test a bearer token.
        conn = http.client.HTTPConnection(self.server.address, timeout=30)
        try:
            conn.request("GET", "/computeMetadata/v1/instance/service-accounts/default/token",
                         headers={"Metadata-Flavor": "Google"})
            token = json.loads(conn.getresponse().read())["access_token"]
            conn.request("DELETE", "/storage/v1/b/walship/o/" + urllib.parse.quote(f"fencing/{key}", safe=""),
                         headers={"Authorization": f"Bearer {token}"})
            response = conn.getresponse()
            response.read()
            assert response.status == 204, f"DELETE fencing/{key}: HTTP {response.status}"
        finally:
            conn.close()


BACKENDS = {b.name: b for b in (FileBackend, S3Backend, SftpBackend, GcsBackend)}


# ---------------------------------------------------------------------------
# Helpers.


def start(tmp, name, *args):
    """replicate with the short lease and sync interval; its log is tmp/name.log."""
    return subprocess.Popen([WALSHIP, "-v", "replicate", "--lease-ttl", TTL, "--sync-interval", "100ms",
                             *map(str, args)], stdout=subprocess.DEVNULL, stderr=open(f"{tmp}/{name}.log", "a"))


def log_of(tmp, name):
    with open(f"{tmp}/{name}.log") as f:
        return f.read()


def kill_leftovers(*procs):
    """Kills what a failed scenario left running (a stopped process too, which
    is resumed first), so nothing outlives its server."""
    for proc in procs:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
            proc.wait()


def rows(path):
    """The payload length of every row of `path` in order, after checking that
    it is whole: integrity_check, rows 1..n each holding payload(i, its
    length), meta.n == n. Whose rows they are is in the lengths."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        ok = db.execute("PRAGMA integrity_check").fetchone()[0]
        assert ok == "ok", f"{path}: integrity_check says {ok}"
        with db:  # one read transaction: meta and t of the same commit
            n = db.execute("SELECT n FROM meta WHERE k = 1").fetchone()[0]
            sizes = []
            for i, data in db.execute("SELECT id, payload FROM t ORDER BY id"):
                assert i == len(sizes) + 1, f"{path}: row {len(sizes) + 1} missing (found {i})"
                assert bytes(data) == payload(i, len(data)), f"{path}: row {i} has wrong content"
                sizes.append(len(data))
        assert len(sizes) == n, f"{path}: torn transaction: rows end at {len(sizes)} but meta says {n}"
        return sizes
    finally:
        db.close()


def restore(tmp, url, out, *args, check=0):
    if os.path.exists(out):
        os.unlink(out)
    return walship("restore", url, "-o", out, *args, check=check)


def points(url):
    return json.loads(walship("ls", url, "--json", check=0).out)


def shipped(tmp, url, db):
    """A predicate: the replica's newest point holds db's rows as they are now
    (and maybe more, when an app writes on)."""
    want = rows(db)

    def check():
        out = f"{tmp}/probe.db"
        if walship("restore", "--force", url, "-o", out).code != 0:
            return False
        return rows(out)[:len(want)] == want
    return check


def running(pid):
    """False once pid has exited (a zombie no one reaped yet has exited too)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def unshared():
    """The command prefix that starts a process in a pid namespace of its own,
    which the lease sees as another machine: its pid cannot be checked."""
    if shutil.which("unshare") is None or \
            subprocess.run(["unshare", "--pid", "--fork", "true"], capture_output=True).returncode != 0:
        raise Skipped("unshare --pid is not permitted here")
    return ["unshare", "--pid", "--fork"]


# ---------------------------------------------------------------------------
# The scenarios, each given a temp dir and a started backend.


def second_replicate_on_the_url_exits_4_naming_the_holder(tmp, store):
    """Two replicates on two databases, one URL: the second exits 4 within
    about one TTL naming the holder and ships nothing; the first ships on,
    stops with 0, and the replica restores to exactly its database."""
    a, b = f"{tmp}/a.db", f"{tmp}/b.db"
    init_db(a)
    init_db(b)
    write(b, 5, size=B_SIZE)
    first = start(tmp, "first", a, store.url)
    try:
        write(a, 10)
        wait_for(shipped(tmp, store.url, a), "the first replicate's commits")
        # The holder renews while the second waits for an expiry that never
        # comes: refused once the record it read expires, naming the holder.
        began = time.monotonic()
        second = subprocess.run([WALSHIP, "replicate", "--lease-ttl", TTL, b, store.url], capture_output=True,
                                text=True, timeout=120)
        waited = time.monotonic() - began
        assert second.returncode == FENCED, second
        assert f"{socket.gethostname()} pid {first.pid}" in second.stderr, second.stderr
        assert "--take-over" in second.stderr, second.stderr
        assert waited < 30, f"the second replicate gave up after {waited:.1f} s, not within about one TTL"
        print(f"        the second replicate exited 4 after {waited:.1f} s")
        write(a, 10)
        wait_for(shipped(tmp, store.url, a), "the first writer's commits after the refusal")
        assert stop(first) == 0
    finally:
        kill_leftovers(first)
    walship("verify", store.url, check=0)
    restore(tmp, store.url, f"{tmp}/out.db")
    assert rows(f"{tmp}/out.db") == [A_SIZE] * 20
    assert open(f"{tmp}/out.db", "rb").read() == checkpointed_bytes(a)


def zombie(tmp, store, take_over):
    """Writer A replicates while its --exec app writes; A is paused (a frozen
    VM) and B, restored from the replica, takes the lease (with --take-over,
    or once A's lease expires) and writes rows of its own size. Resumed, A
    exits 4 and its app is stopped; every restore point after the takeover
    is one of B's states (none holds a row A's app wrote after the pause),
    and the replica restores to exactly B's database."""
    a, b = f"{tmp}/a.db", f"{tmp}/b.db"
    init_db(a)
    app = f"{sys.executable} {WRITER} {a} {tmp}/acks --rate 50 --size {A_SIZE}"
    old = start(tmp, "A", "--exec", app, a, store.url)
    new = None
    apps = []
    try:
        wait_for(lambda: source_n(a) >= 10, "A's app's first commits")
        wait_for(shipped(tmp, store.url, a), "A's first commits")
        apps = children_of(old.pid)
        assert apps, "A runs no app"
        old.send_signal(signal.SIGSTOP)
        try:
            restore(tmp, store.url, b)
            base = len(rows(b))
            new = start(tmp, "B", *(["--take-over"] if take_over else []), b, store.url)
            for _ in range(3):  # a few restore points of B's
                write(b, 3, size=B_SIZE)
                wait_for(shipped(tmp, store.url, b), "B's commits")
            log = log_of(tmp, "B")
            assert "fenced off the previous writer" in log, log
            # --take-over never waits (the lease is taken over, or taken as
            # expired when the restore took longer than the TTL); without it B
            # takes it as expired, never as a holder gone (A's pid runs).
            if take_over:
                assert "waiting for it to expire" not in log and re.search(r'how=(expired|"taken over")', log), log
            else:
                assert "how=expired" in log, log
            paused_at = source_n(a)
            wait_for(lambda: source_n(a) > paused_at, "A's app writing on while A is paused")
        finally:
            old.send_signal(signal.SIGCONT)
            resumed = time.monotonic()
        assert old.wait(timeout=60) == FENCED, log_of(tmp, "A")
        print(f"        A exited 4 {time.monotonic() - resumed:.1f} s after it was resumed")
        assert "taken over by another writer" in log_of(tmp, "A")
        assert not [pid for pid in apps if running(pid)], f"A's app {apps} still runs after A was fenced"
        write(b, 3, size=B_SIZE)
        wait_for(shipped(tmp, store.url, b), "B's commits after A woke up")
        assert stop(new) == 0
    finally:
        kill_leftovers(old, new)
        # A killed -9 leaves its app to init, where run_tests does not look.
        for pid in apps:
            if running(pid):
                os.kill(pid, signal.SIGKILL)
    assert base >= 10 and source_n(a) > base, "A's app wrote nothing after the takeover's restore"
    walship("verify", store.url, check=0)
    restore(tmp, store.url, f"{tmp}/out.db")
    assert rows(f"{tmp}/out.db") == rows(b) == [A_SIZE] * base + [B_SIZE] * 12
    assert open(f"{tmp}/out.db", "rb").read() == checkpointed_bytes(b)
    # The takeover's snapshot sits at the fence of B's generation
    # (generation << 40); each point from there on is B's.
    listed = points(store.url)
    fence = max(int(p["txid"], 16) >> 40 for p in listed) << 40
    assert fence > 0 and any(int(p["txid"], 16) == fence for p in listed), listed
    after = [p["txid"] for p in listed if int(p["txid"], 16) >= fence]
    assert len(after) >= 4, after
    for txid in after:
        restore(tmp, store.url, f"{tmp}/point.db", "--txid", txid)
        got = rows(f"{tmp}/point.db")
        assert len(got) >= base and got == [A_SIZE] * base + [B_SIZE] * (len(got) - base), \
            f"restore point {txid} after the takeover is not one of B's states: {got}"


def zombie_taken_over_with_take_over_is_fenced_at_every_point(tmp, store):
    zombie(tmp, store, take_over=True)


def zombie_whose_lease_expired_is_fenced_at_every_point(tmp, store):
    zombie(tmp, store, take_over=False)


def stale_node_fast_forwards_through_the_entrypoint(tmp, store):
    """DESIGN.md's stale node, with the shipped entrypoint: node 1 ships its
    first commit and goes away; node 2 starts on a fresh disk, writes three
    rows and ships them; node 1 comes back with its old disk: the entrypoint
    fast-forwards it to node 2's data (from its old pages and node 2's deltas;
    its old file kept aside) and its app
    writes on from there, so every row of node 2's is in the replica."""
    bindir = f"{tmp}/bin"
    os.makedirs(bindir)
    os.symlink(os.path.abspath(WALSHIP), f"{bindir}/walship")
    entrypoint = f"{SOURCE}/packaging/docker/entrypoint.sh"
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "WALSHIP_REPLICA": store.url,
           "WALSHIP_REPLICATE_ARGS": f"--lease-ttl {TTL} --sync-interval 100ms"}

    def node(n, count, size):
        db = f"{tmp}/node{n}/app.db"
        r = subprocess.run([entrypoint, sys.executable, WRITER, db, f"{tmp}/acks{n}", "--count", str(count),
                            "--size", str(size)], env={**env, "WALSHIP_DB": db}, capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0, f"node {n}: exit {r.returncode}\n{r.stdout}\n{r.stderr}"
        return db, r

    node1, _ = node(1, 1, A_SIZE)
    old = open(node1, "rb").read()
    node(2, 3, B_SIZE)
    restore(tmp, store.url, f"{tmp}/out.db")
    assert rows(f"{tmp}/out.db") == [A_SIZE] + [B_SIZE] * 3
    _, back = node(1, 1, 500)
    assert f"fast-forwarded {node1} from TXID " in back.stdout, back.stdout + back.stderr
    assert f"the old file is {node1}.walship-old" in back.stdout, back.stdout
    assert "reused the local pages of TXID" in back.stdout, back.stdout  # --delta: only node 2's deltas fetched
    assert open(f"{node1}.walship-old", "rb").read() == old  # node 1's old data, kept
    restore(tmp, store.url, f"{tmp}/out.db")
    assert rows(f"{tmp}/out.db") == rows(node1) == [A_SIZE] + [B_SIZE] * 3 + [500]
    walship("verify", store.url, check=0)


def snapshots_from_cron(tmp, store, rate):
    """`walship snapshot` three times beside a running replicate while an app
    commits `rate` a second and a serve-replica follows: each snapshot is
    written by the replicate into its chain, the follower catches up after
    each (it never stalls), everything exits 0, and every point restores to
    a whole state of the app's."""
    db = f"{tmp}/app.db"
    init_db(db)
    rep = start(tmp, "rep", db, store.url)
    app = serve = None
    follow = f"{tmp}/follow.db"

    def follower_at(n):
        return lambda: os.path.exists(follow) and source_n(follow) >= n

    try:
        # snapshot asks the replicate on its control socket, which opens once
        # the first round (the first snapshot) is done.
        wait_for(lambda: os.path.exists(f"{db}-walship/control.sock"), "replicate's control socket")
        app = subprocess.Popen([sys.executable, WRITER, db, f"{tmp}/acks", "--rate", str(rate)])
        serve = subprocess.Popen([WALSHIP, "-v", "serve-replica", "--poll-interval", "50ms", store.url, follow],
                                 stdout=subprocess.DEVNULL, stderr=open(f"{tmp}/serve.log", "w"))
        txids = []
        for _ in range(3):
            wait_for(lambda: source_n(db) >= len(txids) * rate // 2 + 20, "the app's commits")
            r = walship("snapshot", db, store.url, check=0)
            assert "written by the replicate that ships it" in r.out, r
            txids.append(int(r.out.split()[1], 16))
            n = source_n(db)
            began = time.monotonic()
            try:
                wait_for(follower_at(n), f"the follower at commit {n}, after the snapshot")
            except AssertionError:
                raise AssertionError(f"the follower stalled below {n}; its log:\n{log_of(tmp, 'serve')}")
            print(f"        snapshot {txids[-1]:016x}: the follower at {n} {time.monotonic() - began:.1f} s later")
        assert txids == sorted(txids) and len(set(txids)) == 3, txids
        assert stop(app) == 0
        wait_for(shipped(tmp, store.url, db), "the app's last commits")
        assert stop(rep) == 0
        n = source_n(db)
        try:
            wait_for(follower_at(n), "the follower at the last commit")
        except AssertionError:
            raise AssertionError(f"the follower did not reach {n}; its log:\n{log_of(tmp, 'serve')}")
        assert stop(serve) == 0
    finally:
        kill_leftovers(app, rep, serve)
    assert check_state(follow) == n
    # verify --full restores every point (integrity_check, and the checksum
    # each object promises) in one process; the snapshots' points and the
    # newest are restored here too and must be the app's states exactly.
    walship("verify", "--full", store.url, check=0)
    listed = points(store.url)
    for txid in txids:
        assert any(p["txid"] == f"{txid:016x}" and p["kind"] == "snapshot" for p in listed), (txid, listed)
    seen = []
    for txid in [listed[0]["txid"]] + [f"{t:016x}" for t in reversed(txids)]:
        restore(tmp, store.url, f"{tmp}/out.db", "--txid", txid)
        seen.append(check_state(f"{tmp}/out.db"))
    assert seen == sorted(seen, reverse=True) and seen[0] == n, seen
    print(f"        {rate} tx/s: {len(listed)} restore points")


def snapshot_from_cron_at_50_a_second(tmp, store):
    snapshots_from_cron(tmp, store, 50)


def snapshot_from_cron_at_200_a_second(tmp, store):
    snapshots_from_cron(tmp, store, 200)


def kill_9_of_the_holder_is_taken_over_after_the_ttl(tmp, store):
    """The lease holder, on another machine (a pid namespace of its own), is
    killed -9 while an app writes: what was acknowledged more than the sync
    interval + 1 s before is in the replica, and a replicate here takes the
    lease once it expires, without --take-over, behind a fence, and ships
    on to the app's last commit."""
    prefix = unshared()
    db = f"{tmp}/app.db"
    init_db(db)
    holder = subprocess.Popen([*prefix, WALSHIP, "-v", "replicate", "--lease-ttl", TTL, "--sync-interval", "100ms",
                               db, store.url], stdout=subprocess.DEVNULL, stderr=open(f"{tmp}/holder.log", "w"))
    app = subprocess.Popen([sys.executable, WRITER, db, f"{tmp}/acks", "--rate", "50"])
    new = None
    try:
        # Past the first seconds, so that the loss bound has acknowledged commits to hold.
        wait_for(lambda: source_n(db) >= 125, "the app's commits")
        wait_for(shipped(tmp, store.url, db), "the holder's shipping")
        inner = children_of(holder.pid)
        assert inner, "unshare runs no walship"
        os.kill(inner[0], signal.SIGKILL)
        killed_at = time.monotonic_ns()
        holder.wait(timeout=60)
        restore(tmp, store.url, f"{tmp}/out.db")
        n = check_state(f"{tmp}/out.db")
        with open(f"{tmp}/acks") as f:
            acked = [int(line.split()[0]) for line in f if line.count(" ") == 2
                     and int(line.split()[1]) < killed_at - 1_100_000_000]
        assert acked, "the app had acknowledged nothing 1.1 s before the kill"
        assert n >= max(acked), f"the replica ends at {n}, but {max(acked)} was acknowledged > 1.1 s before the kill"
        new = start(tmp, "new", db, store.url)
        wait_for(lambda: source_n(db) > n + 25, "the app's commits after the kill")
        assert stop(app) == 0
        wait_for(shipped(tmp, store.url, db), "the new writer's shipping")
        assert stop(new) == 0
    finally:
        kill_leftovers(app, holder, new)
    # Taken as expired (at once when it already was, else after a wait for
    # the expiry), never as a holder gone: its pid is not this machine's.
    log = log_of(tmp, "new")
    assert "how=expired" in log and "fenced off the previous writer" in log, log
    restore(tmp, store.url, f"{tmp}/out.db")
    assert check_state(f"{tmp}/out.db") == source_n(db)
    walship("verify", store.url, check=0)


def unreachable_newest_point_needs_allow_older(tmp, store):
    """With a delta before the newest gone, the latest restore exits 1 saying
    the newest is not reachable (nothing at the output), and --allow-older
    restores the newest reachable point and says it is not the newest."""
    db = f"{tmp}/app.db"
    init_db(db)
    rep = start(tmp, "rep", "--no-compaction", db, store.url)
    try:
        for _ in range(4):
            write(db, 2)
            wait_for(shipped(tmp, store.url, db), "the commits")
        assert stop(rep) == 0
    finally:
        kill_leftovers(rep)
    listed = points(store.url)
    newest, gone, reached = listed[0], listed[1], listed[2]
    assert gone["key"].startswith("deltas/L0/"), listed
    restore(tmp, store.url, f"{tmp}/expected.db", "--txid", reached["txid"])
    store.remove(gone["key"])
    r = restore(tmp, store.url, f"{tmp}/latest.db", check=None)
    walship_test.expect_one_error_line(
        r, 1, rf"the newest TXID {newest['txid']} of replica .* is not reachable: .*the newest reachable is "
        rf"{reached['txid']} .*--allow-older")
    assert not os.path.exists(f"{tmp}/latest.db")
    r = restore(tmp, store.url, f"{tmp}/older.db", "--allow-older")
    assert f"to TXID {reached['txid']}" in r.out, r
    assert f"not the replica's newest: that is TXID {newest['txid']}, which is not reachable" in r.out, r
    older = rows(f"{tmp}/older.db")
    assert older == rows(f"{tmp}/expected.db") and len(older) < source_n(db), (older, source_n(db))


SCENARIOS = [second_replicate_on_the_url_exits_4_naming_the_holder,
             zombie_taken_over_with_take_over_is_fenced_at_every_point,
             zombie_whose_lease_expired_is_fenced_at_every_point,
             stale_node_fast_forwards_through_the_entrypoint,
             snapshot_from_cron_at_50_a_second,
             snapshot_from_cron_at_200_a_second,
             kill_9_of_the_holder_is_taken_over_after_the_ttl,
             unreachable_newest_point_needs_allow_older]


def on(backend, scenario):
    """scenario as a test of run_tests, on a server of its own."""
    def test(tmp):
        began = time.monotonic()
        try:
            with backend(tmp) as store:
                scenario(tmp, store)
        finally:
            print(f"        {time.monotonic() - began:.1f} s")
    test.__name__ = f"{scenario.__name__}[{backend.name}]"
    return test


if __name__ == "__main__":
    backend = BACKENDS.get(sys.argv[1] if len(sys.argv) > 1 else "file")
    if backend is None:
        sys.exit(f"usage: {sys.argv[0]} [{'|'.join(BACKENDS)}] [NAME...]")
    names = sys.argv[2:]
    run_tests([on(backend, s) for s in SCENARIOS if not names or any(n in s.__name__ for n in names)])
