#!/usr/bin/env python3
"""A canned Docker Engine API on a unix socket, for benchmarking the wrapper.

Usage: fake-engine.py SOCKET [--gpu-holders N]   (serves until killed)
GET /containers/json -> two running containers of the user; GET /containers/<id>/json
-> one GPU each; GET /info -> systemd cgroup driver, cgroup v2.
With --gpu-holders N: N running containers of `ds01 demo`'s users user0000, …
(container ids as its fake tree has them), container i holding GPU i % 2 (the
README's `ds01 top` picture).
"""
import http.server
import json
import os
import socketserver
import sys

CONTAINERS = [{"Id": f"c{i}", "Names": [f"/alice-{i}"], "Labels": {"ds01.user": "alice"}} for i in range(2)]
INSPECT = {}
if "--gpu-holders" in sys.argv:
    n = int(sys.argv[sys.argv.index("--gpu-holders") + 1])
    CONTAINERS = []
    for i in range(n):
        cid, user = f"{i:064x}", f"user{i:04d}"
        CONTAINERS.append({"Id": cid, "Names": [f"/{user}-train"], "State": "running"})
        INSPECT[cid] = {
            "Id": cid, "Name": f"/{user}-train", "Created": "2026-12-01T08:00:00Z",
            "Config": {"Labels": {"ds01.user": user, "ds01.container_type": "docker"}},
            "State": {"Status": "running", "StartedAt": "2026-12-01T08:00:00Z",
                      "FinishedAt": "0001-01-01T00:00:00Z", "Pid": 0},
            "HostConfig": {"DeviceRequests": [{"Count": 0, "DeviceIDs": [str(i % 2)], "Capabilities": [["gpu"]]}]},
        }


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path.startswith("/containers/json"):
            body = CONTAINERS
        elif self.path.startswith("/containers/") and INSPECT:
            body = INSPECT.get(self.path.split("/")[2])
            if body is None:
                self.send_error(404)
                return
        elif self.path.startswith("/containers/"):
            body = {"HostConfig": {"DeviceRequests": [{"Count": 1, "Capabilities": [["gpu"]]}]}}
        elif self.path == "/info":
            body = {"CgroupDriver": "systemd", "CgroupVersion": "2"}
        else:
            self.send_error(404)
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass

    def address_string(self):
        return "unix"


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


if __name__ == "__main__":
    path = sys.argv[1]
    if os.path.exists(path):
        os.unlink(path)
    Server(path, Handler).serve_forever()
