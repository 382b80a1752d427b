#!/usr/bin/env python3
"""Test servers for the GCE and Azure metadata services, as their providers
document them, for walship's preemption notices (the EC2 one is
tests/aws/aws_test_server.py, which also serves IMDSv2 credentials).

--cloud gce (Compute Engine's "About VM metadata" and "Detect whether a VM
was preempted"):
- every request needs the header Metadata-Flavor: Google, else 403; one
  with X-Forwarded-For is refused with 403 too; every answer carries
  Metadata-Flavor: Google and an ETag;
- GET /computeMetadata/v1/instance/preempted answers TRUE or FALSE;
  /computeMetadata/v1/instance/scheduling/preemptible answers TRUE;
- ?wait_for_change=true holds the request until the value changes (or
  timeout_sec seconds pass, then answers the unchanged value); with
  last_etag=E it answers at once when the value's ETag is no longer E.

--cloud azure (Azure's "Scheduled Events for Linux VMs"):
- every request needs the header Metadata: true, else 400 {"error": ...};
  one with X-Forwarded-For is refused with 400 too;
- GET /metadata/scheduledevents?api-version=2020-07-01 (another or no
  api-version: 400) answers {"DocumentIncarnation": N, "Events": [...]},
  each event {"EventId", "EventType", "ResourceType": "VirtualMachine",
  "Resources": [vm], "EventStatus": "Scheduled", "NotBefore": "Mon, 19 Sep
  2016 18:29:47 GMT", "Description", "EventSource": "Platform",
  "DurationInSeconds": -1}; DocumentIncarnation grows with every change.

Test hooks (not the providers' APIs): POST /_test/preempt?in=SECONDS (GCE:
preempted becomes TRUE; Azure: a Preempt event SECONDS ahead, 30 by
default, as Azure's minimum notice), POST /_test/reset (no notice), GET
/_test/stats (requests, refused, notice_requests, held: long polls answered
after a wait).

The first line on stdout is "listening on 127.0.0.1:PORT".
MetadataServer starts it for the Python tests.
"""
import argparse
import email.utils
import json
import os
import secrets
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from server_process import ServerProcess, serve  # noqa: E402

GCE_PREEMPTED = "/computeMetadata/v1/instance/preempted"
GCE_PREEMPTIBLE = "/computeMetadata/v1/instance/scheduling/preemptible"
AZURE_EVENTS = "/metadata/scheduledevents"
AZURE_API_VERSION = "2020-07-01"


class State:
    def __init__(self, cloud):
        self.cloud = cloud
        self.cond = threading.Condition()
        self.preempted = False
        self.etag = secrets.token_hex(8)
        self.incarnation = 1
        self.events = []
        self.stats = {"requests": 0, "refused": 0, "notice_requests": 0, "held": 0}

    def count(self, name):
        with self.cond:
            self.stats[name] += 1

    def preempt(self, seconds):
        with self.cond:
            if self.cloud == "gce":
                self.preempted = True
                self.etag = secrets.token_hex(8)
            else:
                self.events.append({
                    "EventId": str(uuid.uuid4()).upper(), "EventType": "Preempt", "ResourceType": "VirtualMachine",
                    "Resources": ["walship-test-vm"], "EventStatus": "Scheduled",
                    "NotBefore": email.utils.formatdate(time.time() + seconds, usegmt=True),
                    "Description": "", "EventSource": "Platform", "DurationInSeconds": -1})
                self.incarnation += 1
            self.cond.notify_all()

    def reset(self):
        with self.cond:
            self.preempted = False
            self.etag = secrets.token_hex(8)
            if self.events:
                self.events = []
                self.incarnation += 1
            self.cond.notify_all()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Metadata Server for VM"

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("metadata_server: " + (fmt % args) + "\n")

    def send(self, status, body, content_type="application/text", headers=None):
        data = body if isinstance(body, bytes) else body.encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def do_GET(self):
        state = self.server.state
        split = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(split.query, keep_blank_values=True))
        if split.path.startswith("/_test/"):
            return self.test_hook(split.path, query)
        state.count("requests")
        if state.cloud == "gce":
            return self.gce(split.path, query)
        return self.azure(split.path, query)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        split = urllib.parse.urlsplit(self.path)
        if split.path.startswith("/_test/"):
            return self.test_hook(split.path, dict(urllib.parse.parse_qsl(split.query)))
        self.send(405, "method not allowed")

    def test_hook(self, path, query):
        state = self.server.state
        if path == "/_test/preempt" and self.command == "POST":
            state.preempt(float(query.get("in", "30")))
            return self.send(200, "{}", "application/json")
        if path == "/_test/reset" and self.command == "POST":
            state.reset()
            return self.send(200, "{}", "application/json")
        if path == "/_test/stats" and self.command == "GET":
            with state.cond:
                return self.send(200, json.dumps(state.stats), "application/json")
        self.send(404, "unknown test hook")

    # ---- GCE ---------------------------------------------------------------
    def gce(self, path, query):
        state = self.server.state
        google = {"Metadata-Flavor": "Google"}
        if self.headers.get("Metadata-Flavor") != "Google" or self.headers.get("X-Forwarded-For") is not None:
            state.count("refused")
            return self.send(403, "Your client does not have permission to get URL " + path +
                             " from this server. Missing Metadata-Flavor:Google header.\n", "text/html", google)
        if path == GCE_PREEMPTIBLE:
            return self.send(200, "TRUE", headers={**google, "ETag": "preemptible"})
        if path != GCE_PREEMPTED:
            return self.send(404, "Not Found\n", "text/html", google)
        state.count("notice_requests")
        with state.cond:
            if query.get("wait_for_change") == "true":
                last = query.get("last_etag", state.etag)
                timeout = float(query.get("timeout_sec", "300"))
                deadline = time.monotonic() + timeout
                waited = False
                while state.etag == last and time.monotonic() < deadline:
                    waited = True
                    state.cond.wait(deadline - time.monotonic())
                if waited:
                    state.stats["held"] += 1
            value, etag = ("TRUE" if state.preempted else "FALSE"), state.etag
        self.send(200, value, headers={**google, "ETag": etag})

    # ---- Azure ---------------------------------------------------------------
    def azure(self, path, query):
        state = self.server.state
        if self.headers.get("Metadata") != "true" or self.headers.get("X-Forwarded-For") is not None:
            state.count("refused")
            return self.send(400, json.dumps({"error": "Bad request. Required metadata header not specified"}),
                             "application/json; charset=utf-8")
        if path != AZURE_EVENTS:
            return self.send(404, json.dumps({"error": "Not found"}), "application/json; charset=utf-8")
        if query.get("api-version") != AZURE_API_VERSION:
            return self.send(400, json.dumps({"error": "Bad request. api-version was not specified or is invalid",
                                              "newest-versions": [AZURE_API_VERSION]}),
                             "application/json; charset=utf-8")
        state.count("notice_requests")
        with state.cond:
            document = {"DocumentIncarnation": state.incarnation, "Events": list(state.events)}
        self.send(200, json.dumps(document), "application/json; charset=utf-8")


class MetadataServer(ServerProcess):
    """This server as a subprocess for the Python tests."""

    def __init__(self, cloud):
        self.cloud = cloud
        super().__init__([sys.executable, os.path.abspath(__file__), "--cloud", cloud], "metadata_server")

    def preempt(self, seconds=30):
        self.post(f"/_test/preempt?in={seconds}")

    def reset(self):
        self.post("/_test/reset")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cloud", choices=("gce", "azure"), required=True)
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.state = State(args.cloud)
    server.verbose = args.verbose
    serve(server)


if __name__ == "__main__":
    main()
