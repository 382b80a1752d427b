"""replicate --preemption-notice against test servers that follow each
provider's documents (tests/aws/aws_test_server.py for EC2's IMDSv2,
tests/cloud/metadata_server.py for GCE and Azure):

- aws, gce, azure: with an app writing and a long --sync-interval, the
  notice served makes walship log one warning with the announced time, ship
  at once and then at --notice-sync-interval (deltas that the sync interval
  alone would take minutes to ship arrive), run --on-notice exactly once
  (later polls see the same notice) and count it on /metrics; a SIGTERM
  still ships everything and exits 0, and the replica restores to the last
  acknowledged commit;
- the AWS rebalance recommendation is a notice too;
- off sends no request, even with a notice served;
- auto on this machine (no cloud in DMI, no endpoint in the environment)
  starts without asking anything: no socket is connected (strace);
- auto with GCE_METADATA_HOST set watches GCE;
- a metadata service without IMDSv2 (no session token) is never used: the
  notice it serves is not acted on, and the refusal is logged;
- an --on-notice command that fails is logged, not fatal.
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "aws"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "cloud"))
from aws_test_server import AwsTestServer  # noqa: E402
from metadata_server import MetadataServer  # noqa: E402
from walship_test import (WALSHIP, Skipped, check_rows, children_of, free_port, http_get, run_tests, stop,  # noqa: E402
                          wait_for, walship)

WRITER = os.path.join(os.path.dirname(__file__), "..", "lib", "writer_app.py")
# Long enough that, without a notice, the test would time out waiting for the deltas it counts.
SYNC_INTERVAL = "10m"
CLEAN_ENV = {k: v for k, v in os.environ.items()
             if k not in ("AWS_EC2_METADATA_SERVICE_ENDPOINT", "GCE_METADATA_HOST", "WALSHIP_AZURE_METADATA_ENDPOINT",
                          "WALSHIP_TEST_DMI_DIR")}


class Replicate:
    """walship replicate of an app's database (the app writing 20 commits a
    second), its log in a file, /metrics on a free port."""

    def __init__(self, tmp, mode, env, on_notice=None, extra=()):
        self.tmp = tmp
        self.db = os.path.join(tmp, "app.db")
        self.url = "file://" + os.path.join(tmp, "replica")
        self.acks = os.path.join(tmp, "acks")
        self.log_path = os.path.join(tmp, "replicate.log")
        self.port = free_port()
        self.app = subprocess.Popen([sys.executable, WRITER, self.db, self.acks, "--rate", "20", "--size", "200"])
        wait_for(lambda: os.path.exists(self.acks) and os.path.getsize(self.acks) > 0, "the app's first commit")
        args = [WALSHIP, "replicate", "--preemption-notice", mode, "--sync-interval", SYNC_INTERVAL,
                "--notice-sync-interval", "200ms", "--http", f"127.0.0.1:{self.port}", *extra]
        if on_notice:
            args += ["--on-notice", on_notice]
        self.log_file = open(self.log_path, "w")
        self.proc = subprocess.Popen(args + [self.db, self.url], stderr=self.log_file, env={**CLEAN_ENV, **env})
        wait_for(lambda: self.scrape() is not None and self.deltas() is not None, "replicate's /metrics")

    def log(self):
        with open(self.log_path) as f:
            return f.read()

    def scrape(self):
        try:
            status, body = http_get(f"http://127.0.0.1:{self.port}/metrics")
        except OSError:
            return None
        return body if status == 200 else None

    def sample(self, name):
        """The value of `name` (any labels) on /metrics, or None."""
        text = self.scrape() or ""
        for line in text.splitlines():
            if re.match(rf"{name}(\{{| )", line):
                return float(line.rsplit(" ", 1)[1])
        return None

    def deltas(self):
        return self.sample("walship_shipped_deltas_total")

    def finish(self):
        """Stops the app, then walship (SIGTERM); the replica must hold every acknowledged commit."""
        assert stop(self.app) == 0
        code = stop(self.proc)
        self.log_file.close()
        assert code == 0, f"replicate exited {code}:\n{self.log()}"
        with open(self.acks) as f:
            last = int(f.read().split("\n")[-2].split()[0])
        out = os.path.join(self.tmp, "restored.db")
        walship("restore", "-o", out, self.url, check=0)
        check_rows(out, last, row_size=200)

    def kill(self):
        for p in (self.app, self.proc):
            if p.poll() is None:
                p.kill()
                p.wait()
        self.log_file.close()


def warnings_of(log):
    return [line for line in log.splitlines() if "level=warn" in line and 'msg="preemption notice:' in line]


def notice_case(tmp, mode, env, serve, announced=None, cloud=None):
    """The common part of the aws, gce and azure cases: `serve()` puts the notice out."""
    marker = os.path.join(tmp, "on-notice")
    r = Replicate(tmp, mode, env, on_notice=f"sh -c 'echo notice >> {marker}'")
    try:
        wait_for(lambda: "watching for preemption notices" in r.log(), "the watcher to start")
        before = r.deltas()
        serve()
        wait_for(lambda: warnings_of(r.log()), "the notice's warning")
        # With a 10 minute sync interval only the notice's interval ships these.
        wait_for(lambda: r.deltas() >= before + 5, "deltas at the notice interval", timeout=120)
        wait_for(lambda: os.path.exists(marker), "--on-notice to run")
        warning = warnings_of(r.log())
        assert len(warning) == 1, warning
        assert f"cloud={cloud or mode}" in warning[0], warning[0]
        assert "notice_sync_interval=200ms" in warning[0], warning[0]
        if announced:
            assert announced(warning[0]), warning[0]
        assert r.sample("walship_preemption_notices_total") == 1, r.scrape()
        return r, marker
    except BaseException:
        print(r.log())
        r.kill()
        raise


def test_aws_spot_instance_action(tmp):
    with AwsTestServer(os.path.join(tmp, "aws")) as aws:
        env = {"AWS_EC2_METADATA_SERVICE_ENDPOINT": aws.endpoint}
        r, marker = notice_case(tmp, "aws", env, lambda: aws.notice("instance-action", seconds=120),
                                announced=lambda line: re.search(r"time=20\d\d-\d\d-\d\dT\S+Z", line) and
                                60 <= int(re.search(r"seconds_left=(\d+)", line).group(1)) <= 120 and "notice=\"spot instance-action terminate\"" in line)
        try:
            # Later polls (every 5 s) see the same document: still one notice, one --on-notice.
            polls = aws.stats()["instance_action"]
            wait_for(lambda: aws.stats()["instance_action"] >= polls + 2, "two more polls", timeout=60)
            with open(marker) as f:
                assert f.read() == "notice\n"
            assert r.sample("walship_preemption_notices_total") == 1
            assert 0 < r.sample("walship_preemption_notice_seconds_left") <= 120, r.scrape()
            stats = aws.stats()
            # IMDSv2: one session token serves every poll, and no GET went without it.
            assert stats["imds_tokens"] == 1 and stats["imds_unauthorized"] == 0, stats
            assert stats["rebalance"] >= 1, stats
            r.finish()
        finally:
            r.kill()


def test_aws_rebalance_recommendation_and_expired_token(tmp):
    with AwsTestServer(os.path.join(tmp, "aws")) as aws:
        env = {"AWS_EC2_METADATA_SERVICE_ENDPOINT": aws.endpoint}

        def serve():
            # A token that expires early (the server forgot it) is replaced, not fatal.
            urllib_post(f"{aws.endpoint}/_test/expire-tokens")
            aws.notice("rebalance")
        r, _ = notice_case(tmp, "aws", env, serve,
                           announced=lambda line: 'notice="rebalance recommendation"' in line and "time=unknown" in line)
        try:
            assert aws.stats()["imds_tokens"] == 2, aws.stats()
            r.finish()
        finally:
            r.kill()


def urllib_post(url):
    import urllib.request
    with urllib.request.urlopen(urllib.request.Request(url, data=b"", method="POST"), timeout=30) as resp:
        resp.read()


def test_gce_preempted(tmp):
    with MetadataServer("gce") as gce:
        env = {"GCE_METADATA_HOST": gce.address}
        r, _ = notice_case(tmp, "gce", env, gce.preempt,
                           announced=lambda line: "notice=preempted" in line and "seconds_left=" in line and
                           "time_from=" in line)
        try:
            stats = gce.stats()
            # The long poll: the notice came from a request the server held until the value changed.
            assert stats["held"] >= 1 and stats["refused"] == 0, stats
            r.finish()
        finally:
            r.kill()


def test_azure_preempt_event(tmp):
    with MetadataServer("azure") as azure:
        env = {"WALSHIP_AZURE_METADATA_ENDPOINT": azure.endpoint}
        r, marker = notice_case(tmp, "azure", env, lambda: azure.preempt(30),
                                announced=lambda line: 0 < int(re.search(r"seconds_left=(\d+)", line).group(1)) <= 30 and
                                "scheduled event Preempt" in line)
        try:
            polls = azure.stats()["notice_requests"]
            wait_for(lambda: azure.stats()["notice_requests"] >= polls + 2, "two more polls")
            with open(marker) as f:
                assert f.read() == "notice\n"
            assert azure.stats()["refused"] == 0
            r.finish()
        finally:
            r.kill()


def test_off_sends_nothing(tmp):
    with AwsTestServer(os.path.join(tmp, "aws")) as aws:
        aws.notice("instance-action", seconds=120)
        r = Replicate(tmp, "off", {"AWS_EC2_METADATA_SERVICE_ENDPOINT": aws.endpoint})
        try:
            # Long enough for a watcher's first two polls (5 s apart), had there been one.
            time.sleep(7)
            stats = aws.stats()
            assert stats["imds_tokens"] == 0 and stats["instance_action"] == 0 and stats["imds_unauthorized"] == 0, stats
            assert not warnings_of(r.log()) and "watching for preemption notices" not in r.log()
            assert r.sample("walship_preemption_notices_total") == 0
            r.finish()
        finally:
            r.kill()


def test_auto_on_this_machine_asks_nothing(tmp):
    dmi = "/sys/class/dmi/id"
    if os.path.exists(f"{dmi}/sys_vendor"):
        with open(f"{dmi}/sys_vendor") as f:
            vendor = f.read().strip()
        if vendor in ("Amazon EC2", "Google", "Microsoft Corporation"):
            raise Skipped(f"this machine is on a cloud ({vendor}): auto would watch it")
    if not shutil.which("strace"):
        raise Skipped("strace is not installed")
    db = os.path.join(tmp, "app.db")
    subprocess.run([sys.executable, WRITER, db, os.path.join(tmp, "acks"), "--count", "3"], check=True)
    trace = os.path.join(tmp, "trace")
    # LeakSanitizer cannot run under ptrace: an ASan binary checks no leaks here.
    env = dict(CLEAN_ENV, ASAN_OPTIONS=":".join(filter(None, [CLEAN_ENV.get("ASAN_OPTIONS"), "detect_leaks=0"])))
    proc = subprocess.Popen(["strace", "-f", "-qq", "-e", "trace=connect", "-o", trace, WALSHIP, "-v", "replicate",
                             db, "file://" + os.path.join(tmp, "replica")],
                            stderr=subprocess.PIPE, text=True, env=env)
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if "replicate started" in line:
            break
    # SIGTERM to strace would detach it and leave walship running: stop walship itself.
    for pid in children_of(proc.pid):
        os.kill(pid, signal.SIGTERM)
    lines += proc.stderr.readlines()
    code = proc.wait(timeout=60)
    log = "".join(lines)
    if code != 0 and "PTRACE" in log.upper():
        raise Skipped("strace cannot trace here")
    assert code == 0, log
    assert "no cloud detected: not watching for preemption notices" in log, log
    assert "watching for preemption notices" not in log.replace("not watching for preemption notices", "")
    with open(trace) as f:
        connects = [line for line in f if "connect(" in line and ("AF_INET" in line or "AF_INET6" in line)]
    assert connects == [], connects


def test_auto_follows_an_endpoint_in_the_environment(tmp):
    with MetadataServer("gce") as gce:
        r, _ = notice_case(tmp, "auto", {"GCE_METADATA_HOST": gce.address}, gce.preempt, cloud="gce")
        try:
            assert "detected=true" in r.log()
            r.finish()
        finally:
            r.kill()


def test_imdsv1_only_service_is_never_used(tmp):
    with AwsTestServer(os.path.join(tmp, "aws"), extra=["--imdsv1-only"]) as aws:
        aws.notice("instance-action", seconds=120)
        r = Replicate(tmp, "aws", {"AWS_EC2_METADATA_SERVICE_ENDPOINT": aws.endpoint})
        try:
            wait_for(lambda: "refused an IMDSv2 session" in r.log(), "the refusal in the log")
            # The notice it serves without a token is never read.
            assert aws.stats()["instance_action"] == 0, aws.stats()
            assert not warnings_of(r.log())
            assert r.sample("walship_preemption_notices_total") == 0
            r.finish()
        finally:
            r.kill()


def test_a_failing_on_notice_is_logged_not_fatal(tmp):
    with MetadataServer("azure") as azure:
        marker = os.path.join(tmp, "on-notice")
        r = Replicate(tmp, "azure", {"WALSHIP_AZURE_METADATA_ENDPOINT": azure.endpoint},
                      on_notice="/nonexistent/drain-node")
        try:
            azure.preempt(30)
            wait_for(lambda: "unable to run the --on-notice command" in r.log(), "the --on-notice error")
            assert "/nonexistent/drain-node" in r.log()
            assert not os.path.exists(marker)
            assert r.proc.poll() is None, r.log()
            r.finish()
        finally:
            r.kill()


if __name__ == "__main__":
    run_tests([test_aws_spot_instance_action, test_aws_rebalance_recommendation_and_expired_token, test_gce_preempted,
               test_azure_preempt_event, test_off_sends_nothing, test_auto_on_this_machine_asks_nothing,
               test_auto_follows_an_endpoint_in_the_environment, test_imdsv1_only_service_is_never_used,
               test_a_failing_on_notice_is_logged_not_fatal])
