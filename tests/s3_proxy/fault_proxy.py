#!/usr/bin/env python3
"""A fault-injecting HTTP/1.1 proxy for walship's S3 tests and benchmarks.

It listens on 127.0.0.1, forwards every request byte for byte (the signed
headers untouched) to an S3 server (s3rver in the tests) and streams the
answer back, except for the requests it is told to fail:

  500            answers 500 InternalError (S3's XML body); nothing is forwarded
  503            answers 503 SlowDown (S3's XML body); nothing is forwarded
  403            answers 403 AccessDenied; nothing is forwarded
  404            answers 404 NoSuchKey; nothing is forwarded
  reset-request  reads about half of the request body (or just its headers),
                 then resets the connection (RST): the server never sees it
  reset-response forwards the request (the server applies it), sends the
                 answer's headers and about half of its body, then resets the
                 connection: the answer is lost mid-body
  stall          forwards the request, sends the answer's headers and half of
                 its body (none when it has none), then sends nothing for
                 --stall-seconds before closing: longer than a client's
                 low-speed timeout

Which requests fail:
  - rules: POST /_proxy/fail?kind=K&count=N[&match=REGEX][&method=M] fails the
    next N requests whose "METHOD /path?query" matches REGEX (a search)
  - chance: --fault-rate P --kinds K1,K2 --seed S (or POST
    /_proxy/random?rate=P&kinds=...&seed=S) fails each other request with
    chance P, with a kind drawn from the list, from a seeded generator, so a
    run's schedule of faults is the same every time for the same requests
    (POST /_proxy/random?rate=0 turns it off)

Control and stats (paths under /_proxy/, which no S3 bucket can be named):
  GET  /_proxy/stats   {"requests": N, "by_method": {...}, "faults": {...},
                        "log": [{"method", "target", "status", "fault"}...]}
  POST /_proxy/clear   drops every rule, the chance and the stats

--log FILE appends one JSON line per request (method, target, status, fault,
bytes in and out, seconds). The first line on stdout is
"listening on 127.0.0.1:PORT".
"""
import argparse
import json
import os
import random
import re
import socket
import socketserver
import struct
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from server_process import serve  # noqa: E402

KINDS = ("500", "503", "403", "404", "reset-request", "reset-response", "stall")
ERRORS = {
    "500": (500, "Internal Server Error", "InternalError", "We encountered an internal error. Please try again."),
    "503": (503, "Slow Down", "SlowDown", "Please reduce your request rate."),
    "403": (403, "Forbidden", "AccessDenied", "Access Denied"),
    "404": (404, "Not Found", "NoSuchKey", "The specified key does not exist."),
}
MAX_HEAD = 64 * 1024
BUFFER = 256 * 1024


class Closed(Exception):
    """The client went away; the connection is done."""


class State:
    def __init__(self, args):
        self.lock = threading.Lock()
        self.args = args
        self.upstream = args.upstream
        self.stall_seconds = args.stall_seconds
        self.rules = []  # [kind, regex or None, method or None, remaining]
        self.rate = args.fault_rate
        self.kinds = args.kinds.split(",") if args.kinds else ["500", "503", "reset-request", "reset-response"]
        self.rng = random.Random(args.seed)
        self.log_file = open(args.log, "a", buffering=1) if args.log else None
        self.clear_stats()

    def clear_stats(self):
        self.requests = 0
        self.by_method = {}
        self.faults = {}
        self.log = []

    def choose_fault(self, method, target):
        with self.lock:
            line = f"{method} {target}"
            for rule in self.rules:
                kind, regex, rule_method, remaining = rule
                if remaining > 0 and (rule_method is None or rule_method == method) and (
                        regex is None or regex.search(line)):
                    rule[3] -= 1
                    return kind
            if self.rate > 0 and self.rng.random() < self.rate:
                return self.rng.choice(self.kinds)
            return None

    def record(self, method, target, status, fault, bytes_in, started):
        """Counts a request before its answer is sent, so a client that has
        its answer always finds it in the stats; finish() completes it."""
        entry = {"method": method, "target": target, "status": status, "fault": fault, "bytes_in": bytes_in,
                 "bytes_out": 0, "seconds": 0.0, "started": started}
        with self.lock:
            self.requests += 1
            self.by_method[method] = self.by_method.get(method, 0) + 1
            if fault:
                self.faults[fault] = self.faults.get(fault, 0) + 1
            self.log.append(entry)
        return entry

    def finish(self, entry, bytes_out=0):
        with self.lock:
            entry["bytes_out"] = bytes_out
            entry["seconds"] = round(time.monotonic() - entry.pop("started"), 4)
            if self.log_file:
                self.log_file.write(json.dumps(entry) + "\n")


def reset(sock):
    """Closes with an RST instead of a FIN: the peer sees "connection reset"."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        sock.close()


class Reader:
    """Buffered reads of HTTP framing from a socket."""

    def __init__(self, sock):
        self.sock = sock
        self.buffer = b""

    def fill(self):
        data = self.sock.recv(BUFFER)
        if not data:
            raise Closed()
        self.buffer += data

    def head(self):
        """The bytes up to and including the blank line after the headers."""
        while b"\r\n\r\n" not in self.buffer:
            if len(self.buffer) > MAX_HEAD:
                raise Closed()
            self.fill()
        end = self.buffer.index(b"\r\n\r\n") + 4
        head, self.buffer = self.buffer[:end], self.buffer[end:]
        return head

    def some(self, limit):
        """Up to `limit` bytes (at least one)."""
        if not self.buffer:
            self.fill()
        data, self.buffer = self.buffer[:limit], self.buffer[limit:]
        return data

    def line(self):
        while b"\r\n" not in self.buffer:
            self.fill()
        end = self.buffer.index(b"\r\n") + 2
        line, self.buffer = self.buffer[:end], self.buffer[end:]
        return line


def parse_head(head):
    lines = head.decode("latin-1").split("\r\n")
    headers = []
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
    return lines[0], headers


def header(headers, name):
    for n, v in headers:
        if n.lower() == name:
            return v
    return None


def build_head(first, headers):
    return (first + "\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers) + "\r\n").encode("latin-1")


def relay_body(reader, out, headers, budget=None, on_chunk=None):
    """Copies one HTTP body (Content-Length or chunked) from `reader` to
    `out` (a list of sockets to send to, or None to drop it). With `budget`,
    stops after about that many bytes and returns False. Returns the bytes
    copied, or -1 when stopped early."""
    copied = 0

    def send(data):
        nonlocal copied
        for sock in out or []:
            sock.sendall(data)
        copied += len(data)
        if on_chunk:
            on_chunk(data)

    if (header(headers, "transfer-encoding") or "").lower() == "chunked":
        while True:
            size_line = reader.line()
            size = int(size_line.split(b";")[0].strip(), 16)
            send(size_line)
            remaining = size + 2  # the chunk and its CRLF
            while remaining > 0:
                if budget is not None and copied >= budget:
                    return -1
                data = reader.some(remaining)
                remaining -= len(data)
                send(data)
            if size == 0:
                return copied
    length = int(header(headers, "content-length") or 0)
    remaining = length
    while remaining > 0:
        if budget is not None and copied >= budget:
            return -1
        data = reader.some(min(remaining, BUFFER if budget is None else max(1, budget - copied)))
        remaining -= len(data)
        send(data)
    return copied


def error_body(code, message, target):
    resource = urllib.parse.urlsplit(target).path
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
            f'<Resource>{resource}</Resource><RequestId>walship-fault-proxy</RequestId></Error>').encode()


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        state = self.server.state
        client = self.request
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = Reader(client)
        try:
            while True:
                if not self.one_request(state, client, reader):
                    break
        except (Closed, ConnectionError, OSError):
            pass
        finally:
            try:
                client.close()
            except OSError:
                pass

    def one_request(self, state, client, reader):
        """Serves one request; False when the client connection must end."""
        head = reader.head()
        started = time.monotonic()
        first, headers = parse_head(head)
        method, target, _ = (first.split(" ", 2) + ["", ""])[:3]
        if urllib.parse.urlsplit(target).path.startswith("/_proxy/"):
            return self.control(state, client, reader, method, target, headers)

        keep_alive = (header(headers, "connection") or "").lower() != "close"
        expects_continue = (header(headers, "expect") or "").lower() == "100-continue"
        forwarded = [(n, v) for n, v in headers if n.lower() not in ("expect", "connection")]
        has_body = header(headers, "content-length") not in (None, "0") or header(headers, "transfer-encoding")
        fault = state.choose_fault(method, target)

        if fault in ERRORS:
            # Answer without the server. A body the client still sends (no
            # 100-continue) is read and dropped so the connection stays usable.
            if not expects_continue:
                relay_body(reader, None, headers)
            status, reason, code, message = ERRORS[fault]
            body = error_body(code, message, target) if method != "HEAD" else b""
            answer = [("Content-Type", "application/xml"), ("Content-Length", str(len(body))),
                      ("x-amz-request-id", "walship-fault-proxy")]
            if expects_continue:
                answer.append(("Connection", "close"))
            entry = state.record(method, target, status, fault, 0, started)
            client.sendall(build_head(f"HTTP/1.1 {status} {reason}", answer) + body)
            state.finish(entry, len(body))
            return keep_alive and not expects_continue

        if expects_continue:
            client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")

        if fault == "reset-request":
            if has_body:
                length = int(header(headers, "content-length") or 2)
                relay_body(reader, None, headers, budget=max(1, length // 2))
            state.finish(state.record(method, target, 0, fault, 0, started))
            reset(client)
            return False

        upstream = socket.create_connection(state.upstream)
        try:
            upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            upstream.sendall(build_head(first, forwarded + [("Connection", "close")]))
            bytes_in = relay_body(reader, [upstream], headers) if has_body else 0
            up_reader = Reader(upstream)
            while True:
                response_head = up_reader.head()
                status_line, response_headers = parse_head(response_head)
                status = int(status_line.split(" ")[1])
                if status != 100:
                    break
            no_body = method == "HEAD" or status in (204, 304)
            framed = header(response_headers, "content-length") is not None or (
                header(response_headers, "transfer-encoding") or "").lower() == "chunked"
            client_headers = [(n, v) for n, v in response_headers if n.lower() not in ("connection", "keep-alive")]
            if not framed and not no_body:
                keep_alive = False
            client_headers.append(("Connection", "keep-alive" if keep_alive else "close"))
            length = int(header(response_headers, "content-length") or 0)

            if fault in ("reset-response", "stall"):
                if no_body or length == 0 and framed and (
                        header(response_headers, "transfer-encoding") or "").lower() != "chunked":
                    # Nothing to cut in half: the answer is lost whole.
                    entry = state.record(method, target, status, fault, bytes_in, started)
                    if fault == "stall":
                        time.sleep(state.stall_seconds)
                        client.close()
                    else:
                        reset(client)
                    state.finish(entry)
                    return False
                entry = state.record(method, target, status, fault, bytes_in, started)
                client.sendall(build_head(status_line, client_headers))
                sent = relay_body(up_reader, [client], response_headers, budget=max(1, length // 2 or 1024))
                state.finish(entry, max(sent, 0))
                if fault == "stall":
                    time.sleep(state.stall_seconds)
                    client.close()
                else:
                    reset(client)
                return False

            entry = state.record(method, target, status, None, bytes_in, started)
            client.sendall(build_head(status_line, client_headers))
            bytes_out = 0
            if not no_body:
                if framed:
                    bytes_out = relay_body(up_reader, [client], response_headers)
                else:
                    client.sendall(up_reader.buffer)
                    bytes_out = len(up_reader.buffer)
                    while True:
                        data = upstream.recv(BUFFER)
                        if not data:
                            break
                        client.sendall(data)
                        bytes_out += len(data)
            state.finish(entry, bytes_out)
            return keep_alive
        finally:
            upstream.close()

    def control(self, state, client, reader, method, target, headers):
        relay_body(reader, None, headers)
        parts = urllib.parse.urlsplit(target)
        query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
        status, body = 200, {}
        try:
            if parts.path == "/_proxy/stats" and method == "GET":
                with state.lock:
                    body = {"requests": state.requests, "by_method": dict(state.by_method),
                            "faults": dict(state.faults),
                            "log": [{k: v for k, v in e.items() if k != "started"} for e in state.log]}
            elif parts.path == "/_proxy/fail" and method == "POST":
                kind = query["kind"]
                if kind not in KINDS:
                    raise ValueError(f"unknown kind {kind!r}")
                regex = re.compile(query["match"]) if query.get("match") else None
                with state.lock:
                    state.rules.append([kind, regex, query.get("method"), int(query.get("count", "1"))])
            elif parts.path == "/_proxy/random" and method == "POST":
                kinds = query.get("kinds", ",".join(state.kinds)).split(",")
                if any(k not in KINDS for k in kinds):
                    raise ValueError(f"unknown kind in {kinds!r}")
                with state.lock:
                    state.rate = float(query.get("rate", "0"))
                    state.kinds = kinds
                    if "seed" in query:
                        state.rng = random.Random(int(query["seed"]))
            elif parts.path == "/_proxy/clear" and method == "POST":
                with state.lock:
                    state.rules = []
                    state.rate = 0
                    state.clear_stats()
            else:
                status, body = 404, {"error": f"no control {method} {parts.path}"}
        except (KeyError, ValueError) as e:
            status, body = 400, {"error": str(e)}
        data = json.dumps(body).encode()
        client.sendall(build_head(f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}",
                                  [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]) + data)
        return (header(headers, "connection") or "").lower() != "close"


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", required=True, help="HOST:PORT of the S3 server")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: a free one)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--fault-rate", type=float, default=0.0, help="chance that a request fails (0-1)")
    parser.add_argument("--kinds", default="", help=f"comma-separated kinds for --fault-rate: {','.join(KINDS)}")
    parser.add_argument("--stall-seconds", type=float, default=30.0)
    parser.add_argument("--log", help="append one JSON line per request to this file")
    args = parser.parse_args()
    for kind in filter(None, args.kinds.split(",")):
        if kind not in KINDS:
            parser.error(f"unknown kind {kind!r}")
    host, _, port = args.upstream.rpartition(":")
    args.upstream = (host or "127.0.0.1", int(port))

    server = Server(("127.0.0.1", args.port), Handler)
    server.state = State(args)
    serve(server)


if __name__ == "__main__":
    sys.exit(main())
