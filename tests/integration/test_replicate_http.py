"""replicate --http and walship.toml roles, end to end with real processes:

- /metrics and /readyz of replicate move as transactions ship: the shipped
  TXID is the replica's newest (walship ls), SQLite transactions, requests and
  bytes are counted for the backend, the lag goes back to 0;
- /readyz says 503 ("lagging") while a commit waits for a long sync interval
  under a tiny --max-lag, and 200 again once shipped, while /healthz (alive)
  stays 200 with the same body;
- /metrics has walship_build_info, process_* and
  walship_last_ship_timestamp_seconds, and `--http :PORT` listens on every
  interface;
- one walship.toml with both roles: one process replicates A to a replica and
  follows that replica into B (B ends byte-equal to A), then
  `serve-replica --config` follows the same file's followers alone;
- a scrape never releases replicate's read of the WAL: commits that the app
  checkpoints and overwrites (a WAL restart) right after a scrape still reach
  the replica;
- bad input is one line `walship: ...` and exit 2.
(The replica-unreachable 503 is test_replicate_http_s3.py: it needs s3rver.)"""
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
sys.path.insert(0, os.path.dirname(__file__))
from walship_test import (checkpointed_bytes, expect_one_error_line, free_port, http_get, metric,  # noqa: E402
                          run_tests, walship)
from test_serve_replica import WRITER, init_source, log_tail, read_n, start, stop, wait_for  # noqa: E402


def write(db, count, size=300):
    subprocess.run([sys.executable, "-c", WRITER, db, str(count), "0", str(size)], check=True,
                   capture_output=True)


def newest_txid(url):
    return json.loads(walship("ls", url, "--json", check=0).out)[0]["txid"]


def health(port, path="readyz"):
    """(status, JSON body) of /readyz (or `path`); (None, None) while nothing listens yet."""
    try:
        status, body = http_get(f"http://127.0.0.1:{port}/{path}")
    except urllib.error.URLError:
        return None, None
    return status, json.loads(body)


def entry(body, db):
    return next(d for d in body["databases"] if d["db"] == db)


def scrape(port):
    status, text = http_get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200, text
    return text


def replicate_with_http(tmp):
    """A source database replicated to file://TMP/replica with --http, once
    /readyz says 200: (db path, replica URL, process, port)."""
    src, url = f"{tmp}/src.db", f"file://{tmp}/replica"
    init_source(src)
    port = free_port()
    rep = start(tmp, "replicate", "replicate", src, url, "--sync-interval", "100ms", "--http", f"127.0.0.1:{port}")
    wait_for(lambda: health(port)[0] == 200, "a ready /readyz")
    return src, url, rep, port


def test_metrics_and_healthz_move_as_transactions_ship(tmp):
    src, url, rep, port = replicate_with_http(tmp)
    text = scrape(port)
    assert metric(text, "walship_snapshots_total", db=src) == 1, text
    assert metric(text, "walship_shipped_txid", db=src, replica=url) == 1, text
    seen = [1]
    for _ in range(4):
        write(src, 40)
        n = read_n(src)
        wait_for(lambda: metric(scrape(port), "walship_shipped_transactions_total", db=src) == n and
                 entry(health(port)[1], src)["lag_transactions"] == 0, f"the commits up to n={n} to ship")
        status, body = health(port)
        db = entry(body, src)
        newest = newest_txid(url)
        assert status == 200 and body["status"] == "ok" and db["status"] == "ok", body
        assert db["role"] == "replicate" and db["last_error"] is None and db["lag_seconds"] == 0, body
        assert db["txid"] == newest and db["replicas"] == [{"url": url, "txid": newest}], (body, newest)
        assert metric(scrape(port), "walship_shipped_txid", db=src, replica=url) == int(newest, 16)
        seen.append(int(newest, 16))
    assert seen == sorted(seen) and len(set(seen)) == len(seen), f"the shipped TXID did not move: {seen}"
    assert stop(rep) == 0, log_tail(tmp, "replicate")


def test_counters_count_what_was_shipped(tmp):
    src, url, rep, port = replicate_with_http(tmp)
    write(src, 150)
    n = read_n(src)
    wait_for(lambda: metric(scrape(port), "walship_shipped_transactions_total", db=src) >= n, "150 transactions")
    wait_for(lambda: entry(health(port)[1], src)["lag_transactions"] == 0, "no lag")
    text = scrape(port)
    deltas = metric(text, "walship_shipped_deltas_total", db=src)
    txid = metric(text, "walship_shipped_txid", db=src, replica=url)
    # One snapshot (TXID 1), then one delta per TXID.
    assert txid == deltas + 1, text
    assert metric(text, "walship_shipped_transactions_total", db=src) == n, text
    assert metric(text, "walship_storage_requests_total", db=src, backend="file", op="put") >= deltas + 1, text
    assert metric(text, "walship_storage_errors_total", db=src, backend="file", op="put") == 0, text
    assert metric(text, "walship_uploaded_bytes_total", db=src, backend="file") > 150 * 300, text
    assert metric(text, "walship_commit_to_durable_seconds_count", db=src) >= 1, text
    assert metric(text, "walship_lag_seconds", db=src) == 0, text
    assert stop(rep) == 0, log_tail(tmp, "replicate")
    assert newest_txid(url) == f"{int(txid):016x}"


def dump(path):
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [db.execute(f"SELECT * FROM {t} ORDER BY rowid").fetchall() for t in ("accounts", "history", "meta")]
    finally:
        db.close()


def test_a_scrape_keeps_the_read_that_holds_unshipped_frames(tmp):
    # A scrape reads DB-shm. It once did so through a descriptor of its own,
    # and closing that dropped every POSIX lock replicate held on the file,
    # its read lock among them: the app could then checkpoint and restart the
    # WAL over a commit not shipped yet, which the replica lost for good.
    src, url, rep, port = replicate_with_http(tmp)
    app = sqlite3.connect(src, isolation_level=None, timeout=30)
    try:
        for k in range(3):
            write(src, 20)
            # A snapshot moves replicate's read to the WAL's end, in its
            # current generation, all of it shipped.
            walship("snapshot", src, url, check=0)
            wait_for(lambda: entry(health(port)[1], src)["lag_transactions"] == 0, "no lag")
            scrape(port)
            # Paused, replicate ships nothing until the WAL restarted, as on a
            # loaded machine: only its read keeps the next commit's frames.
            os.kill(rep.pid, signal.SIGSTOP)
            try:
                # Two commits on pages of their own, neither growing the
                # database: nothing but the content tells a lost one.
                app.execute("UPDATE accounts SET balance = balance + ? WHERE id = 1", (k + 1,))
                app.execute("PRAGMA wal_checkpoint(PASSIVE)")
                app.execute("UPDATE meta SET n = n + 1")  # restarts the WAL when all was checkpointed
            finally:
                os.kill(rep.pid, signal.SIGCONT)
        wait_for(lambda: entry(health(port)[1], src)["lag_transactions"] == 0, "no lag")
    finally:
        app.close()
    assert stop(rep) == 0, log_tail(tmp, "replicate")
    assert "rehashing" not in log_tail(tmp, "replicate"), log_tail(tmp, "replicate")
    walship("restore", url, "-o", f"{tmp}/out.db", check=0)
    assert dump(f"{tmp}/out.db") == dump(src), log_tail(tmp, "replicate")


def test_readyz_is_503_while_a_commit_waits_past_max_lag(tmp):
    src, replica = f"{tmp}/src.db", f"{tmp}/replica"
    init_source(src)
    port = free_port()
    # A commit waits up to the 30 s sync interval to ship, held to 300 ms.
    rep = start(tmp, "replicate", "replicate", src, f"file://{replica}", "--sync-interval", "30s", "--http",
                f"127.0.0.1:{port}", "--max-lag", "300ms")
    wait_for(lambda: health(port)[0] == 200, "a ready /readyz (nothing to ship)")
    write(src, 3)
    wait_for(lambda: health(port)[0] == 503, "503 while the commits wait")
    status, body = health(port)
    db = entry(body, src)
    assert body["status"] == "unhealthy" and db["status"] == "lagging", body
    alive, alive_body = health(port, "healthz")
    assert alive == 200 and entry(alive_body, src)["status"] == "lagging", alive_body
    assert db["lag_transactions"] == 3 and db["lag_seconds"] > 0.3 and db["last_error"] is None, body
    assert metric(scrape(port), "walship_lag_transactions", db=src) == 3
    # SIGTERM ships them (and exits 0).
    assert stop(rep) == 0, log_tail(tmp, "replicate")
    walship("restore", f"file://{replica}", "-o", f"{tmp}/restored.db", check=0)
    assert read_n(f"{tmp}/restored.db") == 3


def plain_metric(text, name):
    """The value of an unlabelled sample (process_open_fds 12)."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split(" ")[1])
    raise AssertionError(f"{name} not in /metrics:\n{text}")


def check_process_metrics(text):
    assert re.search(r'^walship_build_info\{version="\d+\.\d+\.\d+[^"]*"\} 1$', text, re.M), text
    assert "# TYPE process_cpu_seconds_total counter" in text, text
    assert plain_metric(text, "process_cpu_seconds_total") >= 0
    assert plain_metric(text, "process_resident_memory_bytes") > 1 << 20, text
    assert 3 <= plain_metric(text, "process_open_fds") < 1000, text
    # Started at most a day ago and not in the future (as the test's clock says).
    start_time = plain_metric(text, "process_start_time_seconds")
    assert time.time() - 86400 < start_time <= time.time() + 5, (start_time, time.time())


def test_process_metrics_and_http_on_every_interface(tmp):
    src, url = f"{tmp}/src.db", f"file://{tmp}/replica"
    init_source(src)
    port = free_port()
    rep = start(tmp, "replicate", "replicate", src, url, "--sync-interval", "100ms", "--http", f":{port}")
    wait_for(lambda: health(port)[0] == 200, "a ready /readyz on :PORT")
    text = scrape(port)
    check_process_metrics(text)
    first_ship = metric(text, "walship_last_ship_timestamp_seconds", db=src)
    assert first_ship > 0, text  # the first snapshot
    write(src, 5)
    n = read_n(src)
    wait_for(lambda: metric(scrape(port), "walship_shipped_transactions_total", db=src) == n, "5 commits")
    assert metric(scrape(port), "walship_last_ship_timestamp_seconds", db=src) >= first_ship
    assert stop(rep) == 0, log_tail(tmp, "replicate")


def mixed_config(tmp, port, a, b, replica):
    path = f"{tmp}/walship.toml"
    with open(path, "w") as f:
        f.write(f'''http = "127.0.0.1:{port}"
max-lag = "30s"

[defaults]
sync-interval = "100ms"
poll-interval = "50ms"

[[databases]]
path = "{a}"
replicas = ["file://{replica}"]

[[databases]]
role = "serve-replica"
path = "{b}"
replicas = ["file://{replica}"]
list-interval = "2s"
''')
    return path


def test_one_process_replicates_a_and_follows_its_replica_into_b(tmp):
    a, b, replica = f"{tmp}/a.db", f"{tmp}/b.db", f"{tmp}/replica"
    init_source(a)
    port = free_port()
    config = mixed_config(tmp, port, a, b, replica)
    proc = start(tmp, "mixed", "replicate", "--config", config)
    wait_for(lambda: read_n(b) == 0, "B to be restored from A's replica")
    write(a, 200)
    n = read_n(a)
    wait_for(lambda: read_n(b) == n, f"B to follow A to n={n}", timeout=120)
    wait_for(lambda: health(port)[0] == 200, "both databases healthy")
    status, body = health(port)
    assert [d["role"] for d in body["databases"]] == ["replicate", "serve-replica"], body
    assert entry(body, a)["txid"] == entry(body, b)["txid"], body
    text = scrape(port)
    assert metric(text, "walship_applied_txid", db=b) == int(entry(body, a)["txid"], 16), text
    assert metric(text, "walship_storage_requests_total", db=b, backend="file", op="get") > 0, text
    assert stop(proc) == 0, log_tail(tmp, "mixed")
    assert checkpointed_bytes(b) == checkpointed_bytes(a), "B differs from A"

    # The same file: replicate A alone (plain), and serve-replica --config
    # follows only the file's follower, B.
    rep = start(tmp, "replicate", "replicate", a, f"file://{replica}", "--sync-interval", "100ms")
    serve = start(tmp, "serve", "serve-replica", "--config", config)
    wait_for(lambda: health(port)[0] == 200, "serve-replica --config's /healthz")
    assert [d["db"] for d in health(port)[1]["databases"]] == [b]
    write(a, 50)
    n = read_n(a)
    wait_for(lambda: read_n(b) == n, f"B to follow A to n={n}", timeout=120)
    assert stop(rep) == 0, log_tail(tmp, "replicate")
    assert stop(serve) == 0, log_tail(tmp, "serve")
    assert checkpointed_bytes(b) == checkpointed_bytes(a), "B differs from A"


def test_a_follower_that_cannot_start_stops_the_process_with_exit_2(tmp):
    """A follower database another walship process replicates is a
    configuration mistake: the whole replicate --config says so and exits 2,
    after shipping what its replicated databases committed."""
    a, other, replica = f"{tmp}/a.db", f"{tmp}/other.db", f"{tmp}/replica"
    init_source(a)
    init_source(other)
    holder = start(tmp, "holder", "replicate", other, f"file://{tmp}/other-replica")
    wait_for(lambda: os.path.isdir(f"{other}-walship") and
             any(n.endswith(".state") for n in os.listdir(f"{other}-walship")), "the other replicator's state")
    with open(f"{tmp}/w.toml", "w") as f:
        f.write(f'[[databases]]\npath = "{a}"\nreplicas = ["file://{replica}"]\n\n'
                f'[[databases]]\nrole = "serve-replica"\npath = "{other}"\nreplicas = ["file://{replica}"]\n')
    r = walship("replicate", "--config", f"{tmp}/w.toml", timeout=120)
    expect_one_error_line(r, 2, r"is replicated by walship replicate")
    assert stop(holder) == 0


def test_a_command_that_fails_at_its_start_exits_with_http_on(tmp):
    """serve-replica --http on a PATH that is not a database fails right after
    the listener starts: it exits 1 at once (it hung in 19 of 30 runs: the
    listener's stop came before it began to serve, and did nothing)."""
    src, path = f"{tmp}/src.db", f"{tmp}/notdb.db"
    init_source(src)
    walship("snapshot", src, f"file://{tmp}/replica", check=0)
    with open(path, "wb") as f:
        f.write(b"not a database" * 100)
    for _ in range(20):
        r = walship("serve-replica", f"file://{tmp}/replica", path, "--http", f"127.0.0.1:{free_port()}",
                    timeout=30)
        assert r.code == 1 and "not a database" in r.err, r


def test_bad_input_is_one_clear_line(tmp):
    src = f"{tmp}/src.db"
    init_source(src)
    url = f"file://{tmp}/replica"
    r = walship("replicate", src, url, "--http", "nowhere", timeout=60)
    expect_one_error_line(r, 2, r"invalid --http 'nowhere': give an address and port")
    r = walship("replicate", src, url, "--http", "example.com:9090", timeout=60)
    expect_one_error_line(r, 2, r"'example.com' is not an IP address")
    r = walship("replicate", src, url, "--http", "127.0.0.1:9090", "--max-lag", "0", timeout=60)
    expect_one_error_line(r, 2, r"invalid --max-lag '0'")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        r = walship("replicate", src, url, "--http", f"127.0.0.1:{port}", timeout=60)
        expect_one_error_line(r, 2, rf"unable to listen on 127.0.0.1:{port} \(--http\): the port is in use")
    assert not os.path.exists(f"{tmp}/replica"), "a usage error shipped something"

    def config(text):
        with open(f"{tmp}/w.toml", "w") as f:
            f.write(text)
        return f"{tmp}/w.toml"

    r = walship("replicate", "--config", config(f'[[databases]]\npath = "{src}"\nrole = "mirror"\n'
                                                 f'replicas = ["{url}"]\n'), timeout=60)
    expect_one_error_line(r, 2, r"w.toml:3: unknown role 'mirror' \(known: replicate, serve-replica\)")
    r = walship("replicate", "--config", config(f'[[databases]]\nrole = "serve-replica"\npath = "{tmp}/f.db"\n'
                                                 f'replicas = ["{url}", "file://{tmp}/r2"]\n'), timeout=60)
    expect_one_error_line(r, 2, r"w.toml:1: database '.*f.db' has role = \"serve-replica\" and 2 replicas: a "
                          r"follower follows exactly one replica")
    r = walship("serve-replica", "--config", f"{tmp}/w.toml", timeout=60)
    expect_one_error_line(r, 2, r"w.toml:1: .* 2 replicas")
    r = walship("replicate", "--config", config(f'[[databases]]\nrole = "serve-replica"\npath = "{tmp}/f.db"\n'
                                                 f'replica = "{url}"\nsnapshot-interval = "1h"\n'), timeout=60)
    expect_one_error_line(r, 2, r"w.toml:5: 'snapshot-interval' does not apply to role = \"serve-replica\"")
    r = walship("replicate", "--config", config(f'http = "localhost"\n[[databases]]\npath = "{src}"\n'
                                                 f'replicas = ["{url}"]\n'), timeout=60)
    expect_one_error_line(r, 2, r"w.toml:1: invalid 'http' 'localhost': give an address and port")
    r = walship("serve-replica", "--config", config(f'[[databases]]\npath = "{src}"\nreplicas = ["{url}"]\n'),
                timeout=60)
    expect_one_error_line(r, 2, r"w.toml: no \[\[databases\]\] with role = \"serve-replica\": nothing to follow")
    r = walship("serve-replica", "--config", f"{tmp}/w.toml", url, f"{tmp}/f.db", timeout=60)
    expect_one_error_line(r, 2, r"serve-replica --config takes no URL or PATH")
    r = walship("serve-replica", "--config", f"{tmp}/w.toml", "--poll-interval", "1s", timeout=60)
    expect_one_error_line(r, 2, r"--config excludes --poll-interval")
    r = walship("serve-replica", url, timeout=60)
    expect_one_error_line(r, 2, r"serve-replica needs a replica URL and a database path")


if __name__ == "__main__":
    run_tests([test_bad_input_is_one_clear_line, test_metrics_and_healthz_move_as_transactions_ship,
               test_counters_count_what_was_shipped, test_a_scrape_keeps_the_read_that_holds_unshipped_frames,
               test_readyz_is_503_while_a_commit_waits_past_max_lag,
               test_process_metrics_and_http_on_every_interface,
               test_one_process_replicates_a_and_follows_its_replica_into_b,
               test_a_follower_that_cannot_start_stops_the_process_with_exit_2,
               test_a_command_that_fails_at_its_start_exits_with_http_on])
