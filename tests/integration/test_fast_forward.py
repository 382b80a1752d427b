"""restore --fast-forward, for a node that comes back with its old disk: an
older point of the replica is moved aside and replaced by the newest, the
newest and a node ahead of a replica nobody else wrote are left alone, and
writes the replica never got are never thrown away (exit 4). The returning
node end to end, through the Docker entrypoint on every backend, is
test_fencing.py's."""
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
from walship_test import check_state, expect_one_error_line, run_tests, walship  # noqa: E402

sys.path.insert(0, HERE)
from test_lease import FENCED, log_of, ship_then_kill, shipped, start  # noqa: E402
from test_replicate import init_db, source_n, stop, wait_for, write  # noqa: E402


def read(path):
    with open(path, "rb") as f:
        return f.read()


def two_nodes(tmp):
    """Node 1 ships 10 commits and vanishes (kill -9); node 2 restores, writes
    30 more and ships them. Returns (node1 db, replica)."""
    node1, node2, replica = f"{tmp}/node1.db", f"{tmp}/node2.db", f"{tmp}/replica"
    init_db(node1)
    ship_then_kill(tmp, "node1", node1, replica, 10)
    walship("restore", replica, "-o", node2, check=0)
    rep = start(tmp, "node2", node2, replica)
    write(node2, 30)
    wait_for(shipped(replica, node2), "node 2's commits")
    assert stop(rep) == 0
    return node1, replica


def test_a_missing_database_is_restored(tmp):
    db, replica = f"{tmp}/app.db", f"{tmp}/replica"
    init_db(db)
    write(db, 5)
    walship("snapshot", db, replica, check=0)
    r = walship("restore", "--fast-forward", replica, "-o", f"{tmp}/out.db", check=0)
    assert r.out.startswith(f"restored {tmp}/out.db to TXID"), r
    assert check_state(f"{tmp}/out.db") == 5


def test_the_newest_point_is_left_as_it_is(tmp):
    db, replica = f"{tmp}/app.db", f"{tmp}/replica"
    init_db(db)
    write(db, 5)
    walship("snapshot", db, replica, check=0)
    before = read(db)
    r = walship("restore", "--fast-forward", replica, "-o", db, check=0)
    assert "is the replica's newest point (TXID 0000000000000001): left as it is" in r.out, r
    assert read(db) == before and not os.path.exists(f"{db}.walship-old")


def test_without_local_state_the_point_is_found_in_the_headers(tmp):
    node1, replica = two_nodes(tmp)
    shutil.rmtree(f"{node1}-walship")
    r = walship("restore", "--fast-forward", replica, "-o", node1, check=0)
    assert r.out.startswith(f"fast-forwarded {node1} from TXID "), r
    assert check_state(node1) == 40


def test_a_point_a_snapshot_of_another_writer_follows_is_found_in_its_trailer(tmp):
    """Node 1 ends on a delta; node 2 wrote before its replicate started, so
    it shipped a snapshot, not a delta continuing node 1's: node 1's point is
    only in its last delta's trailer."""
    node1, node2, replica = f"{tmp}/node1.db", f"{tmp}/node2.db", f"{tmp}/replica"
    init_db(node1)
    ship_then_kill(tmp, "node1", node1, replica, 5)
    ship_then_kill(tmp, "node1", node1, replica, 5)  # continues with deltas
    assert os.listdir(f"{replica}/deltas/L0"), "node 1 shipped no delta"
    walship("restore", replica, "-o", node2, check=0)
    write(node2, 3)
    rep = start(tmp, "node2", node2, replica)
    wait_for(shipped(replica, node2), "node 2's snapshot")
    assert stop(rep) == 0
    assert "writing a new snapshot" in log_of(tmp, "node2")
    shutil.rmtree(f"{node1}-walship")
    r = walship("restore", "--fast-forward", replica, "-o", node1, check=0)
    assert r.out.startswith(f"fast-forwarded {node1} from TXID "), r
    assert check_state(node1) == 13


def test_writes_the_replica_never_got_are_never_thrown_away(tmp):
    node1, replica = two_nodes(tmp)
    write(node1, 2)  # committed on node 1 after its last ship: in no point
    before = read(node1)
    r = walship("restore", "--fast-forward", replica, "-o", node1)
    expect_one_error_line(r, FENCED, r"holds writes the replica .* never got, and the replica moved on")
    assert "--take-over" in r.err and f"remove '{node1}-walship'" in r.err, r
    assert read(node1) == before and not os.path.exists(f"{node1}.walship-old")


def test_a_node_ahead_of_a_replica_nobody_else_wrote_is_left_for_replicate(tmp):
    """A crash kept the last commits from shipping; nobody wrote since: the
    node keeps them, and replicate ships them."""
    db, replica = f"{tmp}/app.db", f"{tmp}/replica"
    init_db(db)
    ship_then_kill(tmp, "rep", db, replica, 10)
    write(db, 3)
    r = walship("restore", "--fast-forward", replica, "-o", db, check=0)
    assert "is ahead of the replica" in r.out, r
    rep = start(tmp, "rep", db, replica)
    wait_for(shipped(replica, db), "the commits the crash kept")
    assert stop(rep) == 0
    assert source_n(db) == 13


def test_a_copy_left_from_an_earlier_fast_forward_is_never_overwritten(tmp):
    node1, replica = two_nodes(tmp)
    with open(f"{node1}.walship-old", "wb") as f:
        f.write(b"an earlier copy")
    before = read(node1)
    r = walship("restore", "--fast-forward", replica, "-o", node1)
    expect_one_error_line(r, 1, r"is left from an earlier fast-forward: move it away")
    assert read(node1) == before and read(f"{node1}.walship-old") == b"an earlier copy"


def test_fast_forward_excludes_force_and_a_target(tmp):
    for flag in (["--force"], ["--if-db-not-exists"], ["--txid", "1"], ["--timestamp", "-1h"]):
        r = walship("restore", "--fast-forward", *flag, f"{tmp}/replica", "-o", f"{tmp}/out.db")
        expect_one_error_line(r, 2, r"excludes")


if __name__ == "__main__":
    run_tests([v for k, v in sorted(globals().items()) if k.startswith("test_")])
