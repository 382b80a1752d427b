"""One writer per replica, with real processes, on file:// (and s3:// for a
store that ignores conditional writes): a clean stop releases the lease, a
holder of this machine killed -9 is replaced at once, a node that comes back
with old data and a snapshot of another database are refused with exit code
4 (fenced), and fencing is advisory where If-None-Match is ignored. The
issue's scenarios on every backend (two writers, a paused writer taken over,
the stale node's entrypoint, snapshot from cron, kill -9 of a holder on
another machine, --allow-older) are test_fencing.py's. The lease TTL is
short (5 s) so that waits for an expiry stay short."""
import glob
import os
import shutil
import signal
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, os.path.join(HERE, "..", "s3"))
from walship_test import WALSHIP, check_state, run_tests, walship  # noqa: E402

sys.path.insert(0, HERE)
from test_replicate import init_db, restore, source_n, stop, wait_for, write  # noqa: E402

TTL = "5s"  # renewed every 1.7 s: a loaded machine still renews well inside it
FENCED = 4


def start(tmp, name, *args):
    """replicate with a short lease and sync interval; its log is tmp/name.log."""
    err = open(f"{tmp}/{name}.log", "a")
    return subprocess.Popen([WALSHIP, "-v", "replicate", "--lease-ttl", TTL, "--sync-interval", "100ms",
                             *map(str, args)], stdout=subprocess.DEVNULL, stderr=err)


def log_of(tmp, name):
    with open(f"{tmp}/{name}.log") as f:
        return f.read()


def shipped(replica, db):
    """A predicate: the replica's newest point holds db's current n."""
    n = source_n(db)

    def check():
        out = f"{os.path.dirname(replica)}/probe.db"
        if walship("restore", "--force", replica, "-o", out).code != 0:
            return False
        return check_state(out) == n
    return check


def ship_then_kill(tmp, name, db, replica, rows):
    """replicate ships `rows` more commits of db, then is killed -9 (a node
    that vanishes without releasing its lease)."""
    rep = start(tmp, name, db, replica)
    write(db, rows)
    wait_for(shipped(replica, db), f"{name}'s commits")
    assert stop(rep, signal.SIGKILL) == -signal.SIGKILL


def has_lease(replica):
    return lambda: bool(glob.glob(f"{replica}/lease/*"))


def test_clean_stop_releases_and_the_next_writer_continues_the_chain(tmp):
    db, replica = f"{tmp}/app.db", f"{tmp}/replica"
    init_db(db)
    for round_ in range(3):
        rep = start(tmp, "rep", db, replica)
        write(db, 10)
        wait_for(shipped(replica, db), f"round {round_}'s commits")
        assert stop(rep) == 0
    log = log_of(tmp, "rep")
    assert "waiting for it to expire" not in log and "fenced" not in log, log
    assert sorted(os.listdir(f"{replica}/snapshots")) == ["0000000000000001.snap"]


def test_kill_9_on_the_same_machine_takes_the_lease_at_once(tmp):
    db, replica = f"{tmp}/app.db", f"{tmp}/replica"
    init_db(db)
    ship_then_kill(tmp, "rep", db, replica, 10)
    # The holder's pid is gone on this machine: no wait, no fence.
    rep = start(tmp, "rep", db, replica)
    write(db, 10)
    wait_for(shipped(replica, db), "the commits after the restart")
    assert stop(rep) == 0
    assert "waiting for it to expire" not in log_of(tmp, "rep")
    assert not os.path.exists(f"{replica}/fences") or os.listdir(f"{replica}/fences") == []


def test_node_back_with_old_data_exits_4_and_keeps_the_newer_writes(tmp):
    """Node 1 ships and vanishes; node 2 restores, writes and ships. Node 1
    comes back with its old disk: its replicate must not make the stale data
    the newest point."""
    node1, node2, replica = f"{tmp}/node1.db", f"{tmp}/node2.db", f"{tmp}/replica"
    init_db(node1)
    ship_then_kill(tmp, "node1", node1, replica, 10)
    assert walship("restore", replica, "-o", node2).code == 0
    rep = start(tmp, "node2", node2, replica)
    write(node2, 30)
    wait_for(shipped(replica, node2), "node 2's commits")
    assert stop(rep) == 0
    write(node1, 2)  # node 1's app had written on before it vanished
    back = subprocess.run([WALSHIP, "replicate", "--lease-ttl", TTL, node1, replica], capture_output=True,
                          text=True, timeout=60)
    assert back.returncode == FENCED, back
    assert "is behind its replica" in back.stderr and "restore" in back.stderr, back.stderr
    restore(tmp, replica, f"{tmp}/out.db")
    assert check_state(f"{tmp}/out.db") == source_n(node2) == 40
    # A snapshot from node 1's cron is refused the same way.
    r = walship("snapshot", node1, replica)
    assert r.code == FENCED and "is behind its replica" in r.err, r
    # Node 1's own two commits given up (moved away with its state), it is
    # restored from the replica and replicates again.
    os.rename(node1, f"{node1}.mine")
    shutil.rmtree(f"{node1}-walship")
    assert walship("restore", "--fast-forward", replica, "-o", node1).code == 0
    rep = start(tmp, "node1", node1, replica)
    write(node1, 1)
    wait_for(shipped(replica, node1), "node 1's commit after its restore")
    assert stop(rep) == 0


def test_snapshot_of_another_database_beside_a_running_replicate_is_refused(tmp):
    a, b, replica = f"{tmp}/a.db", f"{tmp}/b.db", f"{tmp}/replica"
    init_db(a)
    init_db(b)
    rep = start(tmp, "rep", a, replica)
    wait_for(has_lease(replica), "the lease")
    r = walship("snapshot", b, replica)
    assert r.code == FENCED and f"pid {rep.pid}" in r.err and "snapshot-interval" in r.err, r
    write(a, 10)
    wait_for(shipped(replica, a), "the commits")
    assert stop(rep) == 0
    # With replicate stopped the snapshot (from cron) goes in, and the next
    # replicate carries on after it: the snapshot is this database's own.
    write(a, 3)
    assert walship("snapshot", a, replica).code == 0
    write(a, 4)
    rep = start(tmp, "rep", a, replica)
    wait_for(shipped(replica, a), "the commits after the snapshot")
    assert stop(rep) == 0
    assert "behind" not in log_of(tmp, "rep")
    restore(tmp, replica, f"{tmp}/out.db")
    assert check_state(f"{tmp}/out.db") == 17


def test_a_store_ignoring_conditional_writes_says_fencing_is_advisory(tmp):
    """s3rver started as a store that accepts If-None-Match and ignores it:
    replicate still runs, warns, and says so on /healthz."""
    from s3_test_server import ACCESS_KEY_ID, SECRET_ACCESS_KEY, S3rver, require_s3rver
    from test_replicate_http import entry, health
    from walship_test import free_port
    require_s3rver()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY}
    db = f"{tmp}/app.db"
    init_db(db)
    with S3rver(f"{tmp}/s3", extra=["--no-conditional-writes"]) as server:
        url = f"s3://walship/advisory?endpoint={server.endpoint}"
        port = free_port()
        err = open(f"{tmp}/rep.log", "w")
        rep = subprocess.Popen([WALSHIP, "replicate", "--lease-ttl", TTL, "--sync-interval", "100ms", "--http",
                                f"127.0.0.1:{port}", db, url], stdout=subprocess.DEVNULL, stderr=err, env=env)
        try:
            wait_for(lambda: health(port)[0] == 200, "a ready /readyz")
            body = health(port, "healthz")[1]
            warnings = entry(body, db).get("warnings", [])
            assert any("fencing is advisory" in w for w in warnings), body
        finally:
            assert stop(rep) == 0
        assert "fencing is advisory" in log_of(tmp, "rep")


if __name__ == "__main__":
    run_tests([v for k, v in sorted(globals().items()) if k.startswith("test_")])
