"""walship status against real replicas, without a running walship:

- after replicate stopped (everything shipped): ok, local TXID == replica TXID,
  exit 0; commits made while nothing replicates count as lag (transactions,
  and seconds since the last ship), lagging past --max-lag, exit 1;
- a replica that lost what this node shipped says "behind"; an empty one
  "empty"; both exit 1;
- --json is parsed with typed fields.
(The s3:// case is test_status_s3.py: it needs s3rver.)
"""
import json
import os
import sqlite3
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
sys.path.insert(0, os.path.dirname(__file__))
from walship_test import run_tests, walship  # noqa: E402
from test_serve_replica import init_source, log_tail, read_n, start, stop, wait_for  # noqa: E402


def write_config(tmp, text):
    path = f"{tmp}/walship.toml"
    with open(path, "w") as f:
        f.write(text)
    return path


def status_json(config, *args, env=None):
    r = walship("status", "--config", config, "--json", *args, env=env)
    return r.code, json.loads(r.out)


def commit(db, count):
    for _ in range(count):
        db.execute("BEGIN")
        db.execute("UPDATE meta SET n = n + 1")
        db.execute("COMMIT")


def test_status_follows_what_is_shipped(tmp):
    src, replica = f"{tmp}/src.db", f"{tmp}/replica"
    init_source(src)
    config = write_config(tmp, f'[[databases]]\npath = "{src}"\nreplicas = ["file://{replica}"]\n')
    code, body = status_json(config)
    assert code == 1 and body["replicas"][0]["status"] == "empty", body
    assert body["replicas"][0]["lease"] == "free", body

    rep = start(tmp, "replicate", "replicate", "--config", config)
    wait_for(lambda: status_json(config)[0] == 0, "status ok once replicate shipped its snapshot")
    lease = status_json(config)[1]["replicas"][0]["lease"]
    assert lease.startswith("held by ") and f" pid {rep.pid} " in lease, lease
    assert stop(rep) == 0, log_tail(tmp, "replicate")
    code, body = status_json(config)
    row = body["replicas"][0]
    assert code == 0 and body["status"] == "ok", body
    assert row["db"] == src and row["replica"] == f"file://{replica}", row
    assert row["local_txid"] == row["replica_txid"] and row["lag_transactions"] == 0, row
    assert row["lag_seconds"] == 0 and row["error"] is None and row["last_ship"].endswith("Z"), row
    r = walship("status", "--config", config)
    assert r.code == 0 and r.out.splitlines()[1].split()[0] == src and r.out.splitlines()[1].split()[-1] == "ok", r
    assert r.out.splitlines()[2].startswith(f"  lease: released by ") and f" pid {rep.pid}" in r.out, r

    # Commits while nothing replicates: lag in transactions and seconds. The
    # connection stays open so SQLite keeps the WAL (closing would checkpoint).
    db = sqlite3.connect(src, isolation_level=None)
    try:
        commit(db, 4)
        code, body = status_json(config, "--max-lag", "1h")
        row = body["replicas"][0]
        assert code == 0 and row["status"] == "ok" and row["lag_transactions"] == 4, body
        assert isinstance(row["lag_seconds"], float) and row["lag_seconds"] > 0, row
        time.sleep(0.3)
        code, body = status_json(config, "--max-lag", "100ms")
        assert code == 1 and body["replicas"][0]["status"] == "lagging", body
        r = walship("status", "--config", config, "--max-lag", "100ms", src)
        assert r.code == 1 and "lagging" in r.out and "4 tx" in r.out, r
    finally:
        db.close()

    # Replicate again: it ships them, and status is ok.
    rep = start(tmp, "replicate2", "replicate", "--config", config)
    # Stopped only once it started (its control socket opens after its first
    # round): a SIGTERM before main() kills any process.
    wait_for(lambda: os.path.exists(f"{src}-walship/control.sock"), "replicate's control socket")
    wait_for(lambda: status_json(config, "--max-lag", "100ms")[0] == 0, "status ok after shipping")
    assert stop(rep) == 0, log_tail(tmp, "replicate2")

    # The replica loses its newest deltas: behind what this node shipped.
    newest = json.loads(walship("ls", "--json", "--last", "1", f"file://{replica}", check=0).out)[0]
    for key in (newest["key"], f"deltas/L0/{newest['txid']}.delta"):
        if os.path.exists(f"{replica}/{key}"):
            os.remove(f"{replica}/{key}")
    code, body = status_json(config)
    row = body["replicas"][0]
    assert code == 1 and row["status"] == "behind" and row["lag_transactions"] >= 1, body

    r = walship("status", "--config", config, f"{tmp}/other.db")
    assert r.code == 2 and "is not in" in r.err, r
    r = walship("status", env={"WALSHIP_CONFIG": ""})
    assert r.code == 2 and "status needs walship.toml" in r.err, r
    r = walship("status", "--config", config, "--max-lag", "soon")
    assert r.code == 2 and "invalid --max-lag 'soon'" in r.err, r


if __name__ == "__main__":
    run_tests([test_status_follows_what_is_shipped])
