"""The one way the Python test servers (tests/aws, tests/cloud, tests/gcs_server,
tests/s3_proxy) start and stop: the server script prints "listening on
127.0.0.1:PORT" as its first line (serve()), and the tests run it as a
child process (ServerProcess) that is stopped when they are done with it."""
import json
import subprocess
import urllib.request


def serve(server, port=None):
    """Server side: announce the address, then serve until interrupted."""
    print(f"listening on 127.0.0.1:{port or server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


class ServerProcess:
    """Test side: `argv` run as a child process, its address read from its
    first line (address, port, endpoint); a context manager that stops it."""

    def __init__(self, argv, name):
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("listening on "):
            self.close()
            raise RuntimeError(f"{name} did not start: {line!r}")
        self.address = line.split()[-1].strip()
        self.port = int(self.address.rsplit(":", 1)[1])
        self.endpoint = f"http://{self.address}"

    def post(self, path):
        """A POST without a body to one of the server's /_test hooks."""
        request = urllib.request.Request(f"{self.endpoint}{path}", data=b"", method="POST")
        with urllib.request.urlopen(request, timeout=30) as r:
            r.read()

    def stats(self):
        with urllib.request.urlopen(f"{self.endpoint}/_test/stats", timeout=30) as r:
            return json.load(r)

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
