#!/usr/bin/env python3
"""A canned Docker Engine API on a unix socket, for benchmarking the wrapper.

Usage: fake-engine.py SOCKET   (serves until killed)
GET /containers/json -> two running containers of the user; GET /containers/<id>/json
-> one GPU each; GET /info -> systemd cgroup driver, cgroup v2.
"""
import http.server
import json
import os
import socketserver
import sys

CONTAINERS = [{"Id": f"c{i}", "Names": [f"/alice-{i}"], "Labels": {"ds01.user": "alice"}} for i in range(2)]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path.startswith("/containers/json"):
            body = CONTAINERS
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
