"""serve-replica across a takeover, with real processes on the filesystem
backend: a writer paused well inside its lease (kill -STOP) is taken over
and, once it wakes, ships a few more deltas before its next renewal tells it
it was fenced. Those deltas lie behind the new writer's fence (superseded).
A follower that finds deltas by name (its LIST an hour away) must never
apply them: it sees the lease change hands, lists, and goes on from the new
writer's snapshot."""
import glob
import os
import signal
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
from walship_test import WALSHIP, check_state, run_tests, walship  # noqa: E402

sys.path.insert(0, HERE)
from test_replicate import init_db, source_n, stop, wait_for, write  # noqa: E402

# Renewed every 200 s: the paused writer wakes up still thinking it holds
# the lease, the case fences are for.
TTL = "10m"


def start(tmp, name, *args):
    err = open(f"{tmp}/{name}.log", "a")
    return subprocess.Popen([WALSHIP, "-v", *map(str, args)], stdout=subprocess.DEVNULL, stderr=err)


def log_of(tmp, name):
    with open(f"{tmp}/{name}.log") as f:
        return f.read()


def follows_to(path, n):
    return lambda: os.path.exists(path) and check_state(path) == n


def old_l0_keys(replica):
    """The L0 deltas below the second writer's fence (generation 2 << 40):
    node 1's, before the takeover and after it."""
    return {os.path.relpath(p, replica) for p in glob.glob(f"{replica}/deltas/L0/*")
            if int(os.path.basename(p).split(".")[0], 16) < 2 << 40}


def test_a_follower_never_applies_what_a_fenced_writer_lands_after_the_takeover(tmp):
    node1, node2, replica, follower = f"{tmp}/node1.db", f"{tmp}/node2.db", f"{tmp}/replica", f"{tmp}/follower.db"
    init_db(node1)
    old = start(tmp, "node1", "replicate", "--lease-ttl", TTL, "--sync-interval", "100ms", node1, replica)
    # Each replicate ships deltas only of what is written once it runs.
    wait_for(lambda: 'msg="replicating"' in log_of(tmp, "node1"), "node 1 to replicate")
    write(node1, 20)
    serve = start(tmp, "serve", "serve-replica", "--poll-interval", "100ms", "--list-interval", "1h",
                  f"file://{replica}", follower)
    try:
        wait_for(follows_to(follower, source_n(node1)), "the follower to reach node 1's commits")
        old.send_signal(signal.SIGSTOP)
        try:
            assert walship("restore", replica, "-o", node2).code == 0
            new = start(tmp, "node2", "replicate", "--take-over", "--lease-ttl", TTL, "--sync-interval", "100ms",
                        node2, replica)
            wait_for(lambda: 'msg="replicating"' in log_of(tmp, "node2"), "node 2 to take over")
            assert "fenced off the previous writer" in log_of(tmp, "node2")
            write(node2, 30)
            before = old_l0_keys(replica)
            write(node1, 7)  # the zombie app writes on; node 1 ships them on waking
        finally:
            old.send_signal(signal.SIGCONT)
        wait_for(lambda: old_l0_keys(replica) - before, "node 1's deltas after it woke")
        zombie = old_l0_keys(replica) - before
        wait_for(follows_to(follower, source_n(node2)), "the follower to reach node 2's commits")
        log = log_of(tmp, "serve")
        for key in zombie:
            assert key not in log, f"the follower applied {key}:\n{log}"
        assert "re-seeded from a snapshot" in log
        verify = walship("verify", replica)
        assert verify.code == 0 and "superseded" in verify.out, verify.out + verify.err
        assert stop(new) == 0
    finally:
        stop(serve)
        old.kill()
        old.wait()


if __name__ == "__main__":
    run_tests([v for k, v in sorted(globals().items()) if k.startswith("test_")])
