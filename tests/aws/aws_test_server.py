#!/usr/bin/env python3
"""A test server for the endpoints AWS SDKs get temporary credentials from.

No AWS credential endpoint can be reached from the build machines, so this
implements, as documented by AWS, what walship's credential providers call:

- the EC2 instance metadata service, IMDSv2 only (session tokens required):
  PUT /latest/api/token with X-aws-ec2-metadata-token-ttl-seconds (1-21600;
  missing or invalid: 400; with X-Forwarded-For: 403; GET: 405) answers a
  token valid that many seconds; GET /latest/meta-data/iam/security-credentials/
  with X-aws-ec2-metadata-token answers the role name, .../ROLE its
  credentials ({"Code": "Success", "LastUpdated", "Type": "AWS-HMAC",
  "AccessKeyId", "SecretAccessKey", "Token", "Expiration"}); no, an invalid
  or an expired token: 401 with an empty body; an unknown role: 404;
  GET /latest/meta-data/spot/instance-action: 404 (IMDS's HTML page) until a
  spot interruption notice is out, then {"action": "terminate", "time":
  "2026-...Z"} (AWS's "Spot Instance interruption notices"); GET
  /latest/meta-data/events/recommendations/rebalance: 404 until a rebalance
  recommendation, then {"noticeTime": "2026-...Z"} (AWS's "EC2 instance
  rebalance recommendations"). With --imdsv1-only it is a service without
  IMDSv2: the token PUT answers 404 and GETs need no token (what walship
  must never use)
- ECS and EKS Pod Identity container credentials: GET /v2/credentials/ANY (the
  AWS_CONTAINER_CREDENTIALS_RELATIVE_URI form) and GET /v1/credentials (the
  AWS_CONTAINER_CREDENTIALS_FULL_URI form, whose Authorization header must be
  --container-token when that is given, else 401 {"code":
  "AccessDeniedException", "message": ...}) answer {"RoleArn", "AccessKeyId",
  "SecretAccessKey", "Token", "Expiration"}
- STS AssumeRoleWithWebIdentity (unsigned): POST / with a form body, or GET /
  with a query, Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn=
  &RoleSessionName=&WebIdentityToken=[&DurationSeconds=], answered in STS's
  XML; errors in STS's ErrorResponse shape (400 MissingParameter,
  InvalidIdentityToken when the token is not --web-identity-token-file's
  content, read at request time (without that option any token passes);
  ValidationError, MissingAction, InvalidAction)

Every answer with credentials issues new ones: access key ids ASIA + 16
characters, expiring --lifetime seconds later (also for STS, whatever
DurationSeconds asks, so tests control rotation). --credentials-file PATH
always holds the newest two issued, {"ACCESS_KEY_ID": {"secret": ..., "token":
...}, ...}, replaced atomically; older ones are dropped, as revoked.
tests/s3/s3rver_server.js --credentials-file PATH accepts exactly those.

Test hooks (not AWS's API): POST /_test/fail?count=N&status=S&match=TEXT
makes the next N requests whose path contains TEXT answer S (status 0: the
connection is closed without an answer); POST
/_test/notice?kind=instance-action&action=terminate&in=SECONDS serves a spot
interruption notice for SECONDS from now (kind=rebalance: a rebalance
recommendation; kind=clear: neither); POST /_test/expire-tokens makes every
issued token expire; GET /_test/stats returns counters (imds_tokens,
imds_credentials, instance_action, rebalance, imds_unauthorized,
container_credentials, sts_assume, issued, requests).

The first line on stdout is "listening on 127.0.0.1:PORT". AwsTestServer
starts it for the Python tests.
"""
import argparse
import datetime
import hmac
import json
import os
import re
import secrets
import string
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from server_process import ServerProcess, serve  # noqa: E402

ACCOUNT_ID = "123456789012"
STS_NS = "https://sts.amazonaws.com/doc/2011-06-15/"
KEPT_CREDENTIALS = 2
UPPER_ALNUM = string.ascii_uppercase + string.digits
SECRET_ALPHABET = string.ascii_letters + string.digits + "/+"
TOKEN_ALPHABET = string.ascii_letters + string.digits + "/+"
IMDS_404 = (b'<?xml version="1.0" encoding="iso-8859-1"?>\n'
            b'<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN"\n'
            b'\t"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">\n'
            b'<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en" lang="en">\n'
            b' <head>\n  <title>404 - Not Found</title>\n </head>\n'
            b' <body>\n  <h1>404 - Not Found</h1>\n </body>\n</html>\n')
SESSION_NAME = re.compile(r"[\w+=,.@-]{2,64}", re.ASCII)


def random_text(alphabet, length):
    return "".join(secrets.choice(alphabet) for _ in range(length))


def aws_time(seconds):
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def xml_escape(text):
    return (str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;").replace("'", "&apos;"))


class State:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.imds_tokens = {}   # token -> expiry (time.monotonic())
        self.issued = []        # newest last: dicts with id, secret, token, expiration
        self.faults = []        # [match, status, count]
        self.stats = {"imds_tokens": 0, "imds_credentials": 0, "container_credentials": 0, "sts_assume": 0,
                      "issued": 0, "requests": 0, "instance_action": 0, "rebalance": 0, "imds_unauthorized": 0}
        self.instance_action = None  # the spot instance-action document, once a notice is out
        self.rebalance = None        # the rebalance recommendation document
        self.role_id = "AROA" + random_text(UPPER_ALNUM, 17)

    def issue(self):
        """New temporary credentials; the credentials file then lists the
        newest KEPT_CREDENTIALS."""
        now = time.time()
        credential = {
            "AccessKeyId": "ASIA" + random_text(UPPER_ALNUM, 16),
            "SecretAccessKey": random_text(SECRET_ALPHABET, 40),
            # Real session tokens are a few hundred base64 characters.
            "Token": "IQoJb3JpZ2luX2VjE" + random_text(TOKEN_ALPHABET, 300) + "==",
            "Expiration": aws_time(now + self.args.lifetime),
            "LastUpdated": aws_time(now),
        }
        with self.lock:
            self.issued = (self.issued + [credential])[-KEPT_CREDENTIALS:]
            self.stats["issued"] += 1
            listing = {c["AccessKeyId"]: {"secret": c["SecretAccessKey"], "token": c["Token"]} for c in self.issued}
            tmp = self.args.credentials_file + ".tmp"
            with open(tmp, "w") as f:
                json.dump(listing, f, indent=2)
            os.replace(tmp, self.args.credentials_file)
        return credential

    def count(self, name):
        with self.lock:
            self.stats[name] += 1


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "walship-aws-test"

    def log_message(self, fmt, *args):
        if self.server.state.args.verbose:
            sys.stderr.write("aws_test_server: " + (fmt % args) + "\n")

    # ---- plumbing -------------------------------------------------------------
    def send(self, status, body=b"", content_type="application/json", headers=None):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        # A client killed mid-request (scripts/spot-sim's hard preemptions) is
        # not the server's error: no traceback.
        try:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            if body:
                self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        data = b""
        while len(data) < length:
            part = self.rfile.read(length - len(data))
            if not part:
                raise ConnectionError("client closed the connection mid-body")
            data += part
        return data

    def fault(self, path):
        state = self.server.state
        with state.lock:
            for f in state.faults:
                if f[0] in path and f[2] > 0:
                    f[2] -= 1
                    return f[1]
        return None

    # ---- dispatch --------------------------------------------------------------
    def handle_any(self):
        state = self.server.state
        state.count("requests")
        split = urllib.parse.urlsplit(self.path)
        path = split.path
        try:
            body = self.read_body() if self.command in ("POST", "PUT") else b""
        except (ConnectionError, ValueError):
            self.close_connection = True
            return
        if path.startswith("/_test/"):
            return self.test_hook(path, dict(urllib.parse.parse_qsl(split.query, keep_blank_values=True)))
        injected = self.fault(self.path)
        if injected == 0:
            self.close_connection = True
            return
        if injected is not None:
            return self.send(injected, {"code": "InjectedFailure", "message": "injected failure"})
        if path == "/latest/api/token":
            return self.imds_token()
        if path.startswith("/latest/"):
            return self.imds_get(path)
        if path.startswith("/v2/credentials/") or path == "/v1/credentials":
            return self.container_credentials(path)
        if path == "/":
            return self.sts(split.query, body)
        self.send(404, {"code": "NotFound", "message": f"{self.command} {path}"})

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = handle_any

    def test_hook(self, path, query):
        state = self.server.state
        if path == "/_test/fail" and self.command == "POST":
            try:
                fault = [query.get("match", ""), int(query.get("status", "503")), int(query.get("count", "1"))]
            except ValueError:
                return self.send(400, {"code": "BadRequest", "message": "status and count are integers"})
            with state.lock:
                state.faults.append(fault)
            return self.send(200, {})
        if path == "/_test/notice" and self.command == "POST":
            kind = query.get("kind", "instance-action")
            with state.lock:
                if kind == "instance-action":
                    state.instance_action = {"action": query.get("action", "terminate"),
                                             "time": aws_time(time.time() + float(query.get("in", "120")))}
                elif kind == "rebalance":
                    state.rebalance = {"noticeTime": aws_time(time.time())}
                elif kind == "clear":
                    state.instance_action = state.rebalance = None
                else:
                    return self.send(400, {"code": "BadRequest", "message": "kind: instance-action, rebalance, clear"})
            return self.send(200, {})
        if path == "/_test/expire-tokens" and self.command == "POST":
            with state.lock:
                state.imds_tokens = {}
            return self.send(200, {})
        if path == "/_test/stats" and self.command == "GET":
            with state.lock:
                return self.send(200, dict(state.stats))
        self.send(404, {"code": "NotFound", "message": "unknown test hook"})

    # ---- EC2 instance metadata service (IMDSv2) ---------------------------------
    def imds_token(self):
        state = self.server.state
        if state.args.imdsv1_only:
            return self.send(404, IMDS_404, "text/html")
        if self.command != "PUT":
            return self.send(405, b"", headers={"Allow": "PUT"})
        if self.headers.get("X-Forwarded-For") is not None:
            return self.send(403, b"")
        ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
        if ttl is None or not ttl.strip().isdigit() or not 1 <= int(ttl) <= 21600:
            return self.send(400, b"")
        ttl = int(ttl)
        token = "AQAEA" + secrets.token_urlsafe(42)
        with state.lock:
            now = time.monotonic()
            state.imds_tokens = {t: e for t, e in state.imds_tokens.items() if e > now}
            state.imds_tokens[token] = now + ttl
            state.stats["imds_tokens"] += 1
        self.send(200, token, "text/plain", {"X-aws-ec2-metadata-token-ttl-seconds": str(ttl)})

    def imds_get(self, path):
        state = self.server.state
        if self.command not in ("GET", "HEAD"):
            return self.send(405, b"", headers={"Allow": "GET, HEAD"})
        token = self.headers.get("X-aws-ec2-metadata-token")
        with state.lock:
            expires = state.imds_tokens.get(token) if token else None
        if (expires is None or expires <= time.monotonic()) and not state.args.imdsv1_only:
            state.count("imds_unauthorized")
            return self.send(401, b"")
        notices = {"/latest/meta-data/spot/instance-action": ("instance_action", "instance_action"),
                   "/latest/meta-data/events/recommendations/rebalance": ("rebalance", "rebalance")}
        if path in notices:
            counter, attribute = notices[path]
            state.count(counter)
            with state.lock:
                document = getattr(state, attribute)
            if document is None:
                return self.send(404, IMDS_404, "text/html")
            return self.send(200, json.dumps(document), "text/plain")
        prefix = "/latest/meta-data/iam/security-credentials"
        if path in (prefix, prefix + "/"):
            return self.send(200, state.args.role, "text/plain")
        if path.startswith(prefix + "/") and path[len(prefix) + 1:] == state.args.role:
            credential = state.issue()
            state.count("imds_credentials")
            return self.send(200, json.dumps({
                "Code": "Success",
                "LastUpdated": credential["LastUpdated"],
                "Type": "AWS-HMAC",
                "AccessKeyId": credential["AccessKeyId"],
                "SecretAccessKey": credential["SecretAccessKey"],
                "Token": credential["Token"],
                "Expiration": credential["Expiration"],
            }, indent=2), "text/plain")
        self.send(404, IMDS_404, "text/html")

    # ---- ECS / EKS Pod Identity container credentials ----------------------------
    def container_credentials(self, path):
        state = self.server.state
        if self.command != "GET":
            return self.send(405, {"code": "MethodNotAllowed", "message": f"{self.command} is not allowed"})
        if path == "/v1/credentials" and state.args.container_token is not None:
            supplied = self.headers.get("Authorization")
            if supplied is None or not hmac.compare_digest(supplied.encode(), state.args.container_token.encode()):
                return self.send(401, {"code": "AccessDeniedException",
                                       "message": "The Authorization header is missing or does not hold "
                                                  "this container's token"})
        credential = state.issue()
        state.count("container_credentials")
        self.send(200, {
            "RoleArn": f"arn:aws:iam::{ACCOUNT_ID}:role/{state.args.role}",
            "AccessKeyId": credential["AccessKeyId"],
            "SecretAccessKey": credential["SecretAccessKey"],
            "Token": credential["Token"],
            "Expiration": credential["Expiration"],
        })

    # ---- STS AssumeRoleWithWebIdentity --------------------------------------------
    def sts_error(self, code, message, status=400):
        self.send(status,
                  f'<ErrorResponse xmlns="{STS_NS}"><Error><Type>Sender</Type><Code>{code}</Code>'
                  f'<Message>{xml_escape(message)}</Message></Error>'
                  f'<RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>', "text/xml")

    def sts(self, query, body):
        state = self.server.state
        if self.command not in ("GET", "POST"):
            return self.sts_error("InvalidAction", f"{self.command} is not supported", 405)
        params = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
        if self.command == "POST":
            content_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if body and content_type != "application/x-www-form-urlencoded":
                return self.sts_error("InvalidParameterValue",
                                      "Content-Type must be application/x-www-form-urlencoded")
            params.update(urllib.parse.parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        action = params.get("Action")
        if not action:
            return self.sts_error("MissingAction", "Missing Action")
        if not params.get("Version"):
            return self.sts_error("MissingParameter", "The request must contain the parameter Version")
        if action != "AssumeRoleWithWebIdentity" or params["Version"] != "2011-06-15":
            return self.sts_error("InvalidAction",
                                  f"Could not find operation {action} for version {params['Version']}")
        for name in ("RoleArn", "RoleSessionName", "WebIdentityToken"):
            if not params.get(name):
                return self.sts_error("MissingParameter", f"The request must contain the parameter {name}")
        session = params["RoleSessionName"]
        if not SESSION_NAME.fullmatch(session):
            return self.sts_error("ValidationError",
                                  f"1 validation error detected: Value '{session}' at 'roleSessionName' failed to "
                                  "satisfy constraint: Member must satisfy regular expression pattern: "
                                  "[\\w+=,.@-]* and have length between 2 and 64")
        duration = params.get("DurationSeconds")
        if duration is not None and (not duration.isdigit() or not 900 <= int(duration) <= 43200):
            return self.sts_error("ValidationError",
                                  f"1 validation error detected: Value '{duration}' at 'durationSeconds' failed "
                                  "to satisfy constraint: Member must have value between 900 and 43200")
        role_arn = params["RoleArn"]
        match = re.fullmatch(r"arn:aws[a-z-]*:iam::(\d{12}):role/(?:[\w+=,.@-]+/)*([\w+=,.@-]+)", role_arn, re.ASCII)
        if not match:
            return self.sts_error("ValidationError", f"{role_arn} is invalid")
        if state.args.web_identity_token_file is not None:
            try:
                with open(state.args.web_identity_token_file) as f:
                    expected = f.read().strip()
            except OSError:
                expected = None
            if expected is None or not hmac.compare_digest(params["WebIdentityToken"].encode(), expected.encode()):
                return self.sts_error("InvalidIdentityToken",
                                      "The web identity token provided is not the one this test server accepts")
        account, role = match.group(1), match.group(2)
        credential = state.issue()
        state.count("sts_assume")
        request_id = uuid.uuid4()
        self.send(200,
                  f'<AssumeRoleWithWebIdentityResponse xmlns="{STS_NS}">\n'
                  f'  <AssumeRoleWithWebIdentityResult>\n'
                  f'    <Credentials>\n'
                  f'      <AccessKeyId>{credential["AccessKeyId"]}</AccessKeyId>\n'
                  f'      <SecretAccessKey>{xml_escape(credential["SecretAccessKey"])}</SecretAccessKey>\n'
                  f'      <SessionToken>{xml_escape(credential["Token"])}</SessionToken>\n'
                  f'      <Expiration>{credential["Expiration"]}</Expiration>\n'
                  f'    </Credentials>\n'
                  f'    <SubjectFromWebIdentityToken>system:serviceaccount:default:app</SubjectFromWebIdentityToken>\n'
                  f'    <AssumedRoleUser>\n'
                  f'      <Arn>arn:aws:sts::{account}:assumed-role/{xml_escape(role)}/{xml_escape(session)}</Arn>\n'
                  f'      <AssumedRoleId>{state.role_id}:{xml_escape(session)}</AssumedRoleId>\n'
                  f'    </AssumedRoleUser>\n'
                  f'    <Audience>sts.amazonaws.com</Audience>\n'
                  f'  </AssumeRoleWithWebIdentityResult>\n'
                  f'  <ResponseMetadata>\n'
                  f'    <RequestId>{request_id}</RequestId>\n'
                  f'  </ResponseMetadata>\n'
                  f'</AssumeRoleWithWebIdentityResponse>\n', "text/xml")


class AwsTestServer(ServerProcess):
    """This server as a subprocess for the Python tests, writing
    directory/aws-credentials.json (self.credentials_file); `extra` adds
    options (--container-token, --web-identity-token-file, --lifetime, ...)."""

    def __init__(self, directory, extra=()):
        os.makedirs(directory, exist_ok=True)
        self.credentials_file = os.path.join(directory, "aws-credentials.json")
        super().__init__([sys.executable, os.path.abspath(__file__), "--credentials-file", self.credentials_file,
                          *extra], "aws_test_server")

    def fail(self, match, status, count=1):
        """The next `count` requests whose path contains `match` answer
        `status` (0: the connection is closed without an answer)."""
        self.post("/_test/fail?" + urllib.parse.urlencode({"match": match, "status": status, "count": count}))

    def notice(self, kind="instance-action", seconds=120, action="terminate"):
        """Serves a spot interruption notice `seconds` ahead (kind
        "rebalance": a rebalance recommendation; "clear": neither)."""
        self.post("/_test/notice?" + urllib.parse.urlencode({"kind": kind, "in": seconds, "action": action}))

    def credentials(self):
        """The credentials currently valid: {access key id: {"secret", "token"}}."""
        try:
            with open(self.credentials_file) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument("--credentials-file", required=True,
                        help="where the valid issued credentials are written, as JSON")
    parser.add_argument("--role", default="walship-test-role", help="the instance's and the container's role")
    parser.add_argument("--lifetime", type=int, default=3600, help="seconds issued credentials are valid")
    parser.add_argument("--container-token", help="the Authorization value GET /v1/credentials requires")
    parser.add_argument("--web-identity-token-file",
                        help="STS accepts only this file's content (read per request) as WebIdentityToken")
    parser.add_argument("--imdsv1-only", action="store_true",
                        help="no IMDSv2: the token PUT answers 404 and GETs need no token")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.state = State(args)
    serve(server)


if __name__ == "__main__":
    main()
