"""replicate --http against s3rver: requests are counted for the s3 backend,
and /readyz says 503 ("failing", with the error) while the store is
unreachable, then 200 once it is back and the commits shipped; nothing is
lost. Needs node and s3rver (scripts/setup): skipped without them."""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "s3"))
sys.path.insert(0, os.path.dirname(__file__))
from walship_test import free_port, metric, run_tests, walship  # noqa: E402
from s3_test_server import S3rver, require_s3rver  # noqa: E402
from test_replicate_http import entry, health, scrape, write  # noqa: E402
from test_s3_faults import s3_env  # noqa: E402
from test_serve_replica import WALSHIP, init_source, log_tail, read_n, stop, wait_for  # noqa: E402


def test_readyz_is_503_while_the_store_is_unreachable(tmp):
    src = f"{tmp}/src.db"
    init_source(src)
    s3 = S3rver(f"{tmp}/s3rver")
    try:
        url = f"s3://walship/app?endpoint={s3.endpoint}"
        redacted = "s3://walship/app"  # URLs on /healthz and /metrics are redacted: no query
        port = free_port()
        err = open(f"{tmp}/replicate.log", "a")
        rep = subprocess.Popen([WALSHIP, "-v", "replicate", src, url, "--sync-interval", "100ms", "--http",
                                f"127.0.0.1:{port}", "--max-lag", "60s"], stdout=subprocess.DEVNULL, stderr=err,
                               env={**os.environ, **s3_env()})
        wait_for(lambda: health(port)[0] == 200, "a ready /readyz")
        write(src, 20)
        n = read_n(src)
        wait_for(lambda: metric(scrape(port), "walship_shipped_transactions_total", db=src) == n, "20 commits")
        text = scrape(port)
        assert metric(text, "walship_storage_requests_total", db=src, backend="s3", op="put") >= 2, text
        assert metric(text, "walship_uploaded_bytes_total", db=src, backend="s3") > 20 * 300, text
        s3.kill()
        write(src, 10)
        wait_for(lambda: health(port)[0] == 503, "503 while the store is down", timeout=120)
        status, body = health(port)
        db = entry(body, src)
        assert db["status"] == "failing" and db["last_error"], body
        assert db["lag_transactions"] >= 1, body
        assert metric(scrape(port), "walship_storage_errors_total", db=src, backend="s3", op="put") >= 1
        assert metric(scrape(port), "walship_step_errors_total", db=src) >= 1
        s3.start()  # the same port and directory
        wait_for(lambda: health(port)[0] == 200, "200 once the store is back", timeout=180)
        status, body = health(port)
        assert entry(body, src)["lag_transactions"] == 0 and entry(body, src)["last_error"] is None, body
        assert entry(body, src)["replicas"][0]["url"] == redacted, body
        assert stop(rep) == 0, log_tail(tmp, "replicate")
        assert entry(body, src)["txid"] == json.loads(walship("ls", url, "--json", check=0, env=s3_env()).out)[0]["txid"]
        walship("restore", url, "-o", f"{tmp}/restored.db", check=0, env=s3_env())
        assert read_n(f"{tmp}/restored.db") == read_n(src)
    finally:
        s3.close()


if __name__ == "__main__":
    require_s3rver()
    run_tests([test_readyz_is_503_while_the_store_is_unreachable])
