"""tests/s3_proxy/fault_proxy.py on its own, in front of a tiny in-process
HTTP object store: it passes requests and answers through unchanged
(signed headers included, over kept-alive connections, with
100-continue), and each fault does what the S3 fault tests rely on: 500
and 503 carry S3's XML error and never reach the server, a request reset
mid-body never reaches it, an answer reset mid-body was applied by the
server, a stall outlasts a client's timeout, and a seeded random schedule
is the same on every run."""
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
from walship_test import run_tests  # noqa: E402

PROXY = os.path.join(HERE, "..", "s3_proxy", "fault_proxy.py")
MiB = 1024 * 1024


class Store(BaseHTTPRequestHandler):
    """PUT, GET, HEAD, DELETE of whole objects; remembers every request."""
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def record(self):
        self.server.seen.append((self.command, self.path, dict(self.headers.items())))

    def do_PUT(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.record()
        self.server.objects[self.path] = body
        self.send_response(200)
        self.send_header("ETag", '"x"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        self.record()
        body = self.server.objects.get(self.path)
        if body is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_HEAD(self):
        self.record()
        body = self.server.objects.get(self.path, b"")
        self.send_response(200 if self.path in self.server.objects else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()

    def do_DELETE(self):
        self.record()
        self.server.objects.pop(self.path, None)
        self.send_response(204)
        self.end_headers()


class Setup:
    def __init__(self, stall_seconds=3, extra=()):
        self.store = ThreadingHTTPServer(("127.0.0.1", 0), Store)
        self.store.daemon_threads = True
        self.store.objects = {}
        self.store.seen = []
        threading.Thread(target=self.store.serve_forever, daemon=True).start()
        self.proc = subprocess.Popen([sys.executable, PROXY, "--upstream", f"127.0.0.1:{self.store.server_port}",
                                      "--stall-seconds", str(stall_seconds), *extra], stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        assert line.startswith("listening on "), line
        self.host, port = line.split()[-1].split(":")
        self.port = int(port)

    def conn(self, timeout=10):
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def control(self, path, method="POST"):
        req = urllib.request.Request(f"http://{self.host}:{self.port}/_proxy/{path}", method=method,
                                     data=b"" if method == "POST" else None)
        with urllib.request.urlopen(req) as r:
            return json.load(r)

    def seen(self, method):
        return [path for m, path, _ in self.store.seen if m == method]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait()
        self.store.shutdown()
        self.store.server_close()


def request(conn, method, path, body=None, headers=None):
    conn.request(method, path, body=body, headers=headers or {})
    r = conn.getresponse()
    return r.status, r.read(), r


def test_requests_and_answers_pass_through_unchanged_on_one_connection(tmp):
    with Setup() as s:
        conn = s.conn()
        data = os.urandom(3 * MiB + 17)
        signed = {"Authorization": "AWS4-HMAC-SHA256 Credential=K/20261201/us-east-1/s3/aws4_request, "
                                   "SignedHeaders=host;x-amz-meta-a, Signature=abc",
                  "x-amz-meta-a": "two  spaces", "X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"}
        assert request(conn, "PUT", "/b/a%20b+c", data, signed)[0] == 200
        status, body, _ = request(conn, "GET", "/b/a%20b+c")
        assert status == 200 and body == data
        assert request(conn, "HEAD", "/b/a%20b+c")[0] == 200
        assert request(conn, "GET", "/b/missing")[0] == 404
        assert request(conn, "DELETE", "/b/a%20b+c")[0] == 204
        _, path, headers = s.store.seen[0]
        assert path == "/b/a%20b+c"
        for name, value in signed.items():
            assert headers[name] == value, (name, headers)
        stats = s.control("stats", "GET")
        assert stats["requests"] == 5 and stats["by_method"] == {"PUT": 1, "GET": 2, "HEAD": 1, "DELETE": 1}, stats
        assert stats["faults"] == {}


def test_100_continue_is_answered_and_the_body_forwarded(tmp):
    with Setup() as s:
        sock = socket.create_connection((s.host, s.port), timeout=10)
        sock.sendall(b"PUT /b/k HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue"), "no 100 Continue"
        sock.sendall(b"hello")
        assert sock.recv(1000).startswith(b"HTTP/1.1 200")
        sock.close()
        assert s.store.objects["/b/k"] == b"hello"


def test_500_and_503_answer_s3_errors_without_reaching_the_server(tmp):
    with Setup() as s:
        s.control("fail?kind=500&count=1&match=^PUT%20/b/one")
        s.control("fail?kind=503&count=2&method=GET")
        conn = s.conn()
        status, body, r = request(conn, "PUT", "/b/one", b"x" * 1000)
        assert status == 500 and b"<Code>InternalError</Code>" in body and r.getheader("Content-Type") == "application/xml"
        assert s.seen("PUT") == []
        assert request(conn, "PUT", "/b/one", b"x" * 1000)[0] == 200  # the rule is used up; same connection
        for _ in range(2):
            status, body, _ = request(conn, "GET", "/b/one")
            assert status == 503 and b"<Code>SlowDown</Code>" in body
        assert request(conn, "GET", "/b/one")[1] == b"x" * 1000
        assert s.seen("GET") == ["/b/one"]
        assert s.control("stats", "GET")["faults"] == {"500": 1, "503": 2}


def test_403_and_404_are_injected_too(tmp):
    with Setup() as s:
        s.control("fail?kind=403&match=secret")
        s.control("fail?kind=404&match=gone")
        conn = s.conn()
        status, body, _ = request(conn, "GET", "/b/secret")
        assert status == 403 and b"<Code>AccessDenied</Code>" in body
        status, body, _ = request(conn, "GET", "/b/gone")
        assert status == 404 and b"<Code>NoSuchKey</Code>" in body
        assert s.store.seen == []


def test_a_request_reset_mid_body_never_reaches_the_server(tmp):
    with Setup() as s:
        s.control("fail?kind=reset-request&match=PUT")
        conn = s.conn()
        try:
            request(conn, "PUT", "/b/k", os.urandom(4 * MiB))
            raise AssertionError("the PUT was answered")
        except (ConnectionError, http.client.HTTPException):
            pass
        time.sleep(0.2)
        assert s.seen("PUT") == [] and "/b/k" not in s.store.objects
        assert s.control("stats", "GET")["faults"] == {"reset-request": 1}


def test_an_answer_reset_mid_body_was_applied_by_the_server(tmp):
    with Setup() as s:
        data = os.urandom(2 * MiB)
        conn = s.conn()
        assert request(conn, "PUT", "/b/k", data)[0] == 200
        s.control("fail?kind=reset-response&method=GET")
        conn = s.conn()
        conn.request("GET", "/b/k")
        r = conn.getresponse()
        assert r.status == 200 and r.getheader("Content-Length") == str(len(data))
        try:
            got = r.read()
            raise AssertionError(f"the whole answer came: {len(got)} bytes")
        except (ConnectionError, http.client.IncompleteRead):
            pass
        # A PUT whose (bodiless) answer is lost: applied, but the client never knows.
        s.control("fail?kind=reset-response&method=PUT")
        conn = s.conn()
        try:
            request(conn, "PUT", "/b/lost", b"applied")
            raise AssertionError("the PUT was answered")
        except (ConnectionError, http.client.HTTPException):
            pass
        time.sleep(0.2)
        assert s.store.objects["/b/lost"] == b"applied"


def test_a_stall_outlasts_the_client_timeout(tmp):
    with Setup(stall_seconds=3) as s:
        data = os.urandom(MiB)
        assert request(s.conn(), "PUT", "/b/k", data)[0] == 200
        s.control("fail?kind=stall&method=GET")
        conn = s.conn(timeout=1)
        started = time.monotonic()
        conn.request("GET", "/b/k")
        r = conn.getresponse()
        try:
            r.read()
            raise AssertionError("the stalled answer completed")
        except (TimeoutError, socket.timeout):
            pass
        assert 0.9 < time.monotonic() - started < 2.9
        assert request(s.conn(), "GET", "/b/k")[1] == data  # the next one is whole


def test_a_seeded_random_schedule_repeats_exactly(tmp):
    schedules = []
    with Setup() as s:
        assert request(s.conn(), "PUT", "/b/k", b"v")[0] == 200
        for _ in range(2):
            s.control("clear")
            s.control("random?rate=0.3&kinds=500,503&seed=42")
            conn = s.conn()
            for _ in range(60):
                status, _, r = request(conn, "GET", "/b/k")
                if r.getheader("Connection") == "close":
                    conn = s.conn()
            schedules.append([entry["fault"] for entry in s.control("stats", "GET")["log"]])
    assert schedules[0] == schedules[1], schedules
    assert 5 < sum(1 for f in schedules[0] if f) < 35, schedules[0]


if __name__ == "__main__":
    run_tests([test_requests_and_answers_pass_through_unchanged_on_one_connection,
               test_100_continue_is_answered_and_the_body_forwarded,
               test_500_and_503_answer_s3_errors_without_reaching_the_server,
               test_403_and_404_are_injected_too,
               test_a_request_reset_mid_body_never_reaches_the_server,
               test_an_answer_reset_mid_body_was_applied_by_the_server,
               test_a_stall_outlasts_the_client_timeout,
               test_a_seeded_random_schedule_repeats_exactly])
