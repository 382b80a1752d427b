"""prune and verify on real replicas written by `walship replicate`: prune
killed with SIGKILL at random moments never leaves a kept restore point
unrestorable (verify stays clean), and replicate applies retention itself."""
import glob
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
sys.path.insert(0, os.path.dirname(__file__))
from walship_test import WALSHIP, run_tests, walship  # noqa: E402
from test_replicate import (check_state, init_db, replica_has, source_n, start_replicate, stop,  # noqa: E402
                            wait_for, write)

POLICY = ["--keep-within", "2s", "--keep-last", "2"]


def build_replica(tmp, seconds=8, retention="retention = false"):
    db, replica = f"{tmp}/app.db", f"{tmp}/replica"
    init_db(db)
    with open(f"{tmp}/walship.toml", "w") as f:
        f.write(f"""
[defaults]
sync-interval = "100ms"
snapshot-interval = "3s"
l1-span = "1s"
l2-span = "2s"
l3-span = "4s"
{retention}

[[databases]]
path = "{db}"
replicas = ["file://{replica}"]
""")
    rep = start_replicate(tmp, "--config", f"{tmp}/walship.toml")
    wait_for(replica_has(replica, "snapshots/*.snap"), "the initial snapshot")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        write(db, 3, size=200)
        time.sleep(0.03)
    assert stop(rep) == 0
    return db, replica


def kept_points(dry_run_out):
    return re.findall(r"(?m)^keep   point ([0-9a-f]{16})", dry_run_out)


def count_objects(replica):
    return len(glob.glob(f"{replica}/snapshots/*")) + len(glob.glob(f"{replica}/deltas/*/*"))


def test_prune_killed_at_random_moments_keeps_every_kept_point(tmp):
    _, replica = build_replica(tmp)
    r = walship("prune", "--dry-run", *POLICY, f"file://{replica}", check=0)
    kept = kept_points(r.out)
    to_delete = int(re.search(r"(\d+) to delete", r.out).group(1))
    assert kept and to_delete > 50, r
    # How long a whole prune takes, to kill within it.
    shutil.copytree(replica, f"{tmp}/timing")
    start = time.monotonic()
    walship("prune", *POLICY, f"file://{tmp}/timing", check=0)
    duration = time.monotonic() - start
    rng = random.Random(20261201)
    interrupted = 0
    for round_ in range(20):
        copy = f"{tmp}/round{round_}"
        shutil.copytree(replica, copy)
        before = count_objects(copy)
        proc = subprocess.Popen([WALSHIP, "-q", "prune", *POLICY, f"file://{copy}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if round_ % 2:
            # Any moment: before, during or after the deletions.
            time.sleep(rng.uniform(0, duration))
        else:
            # Amid the deletions, however long listing and planning took.
            target = before - rng.randint(to_delete // 10, to_delete * 9 // 10)
            while proc.poll() is None and count_objects(copy) > target:
                time.sleep(0.0005)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deleted = before - count_objects(copy)
        if 0 < deleted < to_delete:
            interrupted += 1
        v = walship("verify", f"file://{copy}")
        assert v.code == 0, f"round {round_}: verify after a prune killed with {deleted} deletions: {v!r}"
        points = set(re.findall(r'"txid": "([0-9a-f]{16})"', walship("verify", "--json", f"file://{copy}").out))
        missing = [p for p in kept if p not in points]
        assert not missing, f"round {round_}: kept points gone after {deleted} deletions: {missing}"
        for txid in rng.sample(kept, min(4, len(kept))):
            out = f"{tmp}/out.db"
            if os.path.exists(out):
                os.unlink(out)
            walship("restore", f"file://{copy}", "-o", out, "--txid", txid, check=0)
            check_state(out, size=200)
        # The next prune finishes the job.
        again = walship("prune", "--dry-run", *POLICY, f"file://{copy}", check=0)
        assert kept_points(again.out) == kept, again
        walship("prune", *POLICY, f"file://{copy}", check=0)
        walship("verify", f"file://{copy}", check=0)
        shutil.rmtree(copy)
    print(f"{interrupted} of 20 kills landed in the middle of the deletions (a prune takes {duration:.3f} s)")
    assert interrupted >= 5, f"only {interrupted} kills interrupted a prune: the test proves little"


def test_replicate_applies_retention_on_its_interval(tmp):
    db, replica = build_replica(tmp, seconds=7, retention="""keep-within = "2s"
keep-last = 1
retention-interval = "1s"
""")
    log = open(f"{tmp}/replicate.log").read()
    assert re.search(r'msg="?pruned', log), log[-3000:]
    # Nothing is left that the policy would still remove, beyond what the
    # last interval added.
    r = walship("prune", "--dry-run", *["--keep-within", "2s", "--keep-last", "1"], f"file://{replica}", check=0)
    kept = kept_points(r.out)
    assert count_objects(replica) < 3 * len(kept) + 100, r.out
    walship("verify", "--db", db, f"file://{replica}", check=0)
    out = f"{tmp}/out.db"
    walship("restore", f"file://{replica}", "-o", out, check=0)
    assert check_state(out, size=200) == source_n(db)


if __name__ == "__main__":
    run_tests([
        test_prune_killed_at_random_moments_keeps_every_kept_point,
        test_replicate_applies_retention_on_its_interval,
    ])
