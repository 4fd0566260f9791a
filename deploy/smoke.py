"""Proves a freshly started Tora serves: signs up, logs in, logs a point and reads it back.

    python3 deploy/smoke.py PORT

Standard library only: deploy/static.sh runs it against the binary in an empty root, and
deploy/image.sh against the image built from the Dockerfile.
"""

import json
import sys
import time
import urllib.request

base = f"http://127.0.0.1:{sys.argv[1]}/api"


def call(method, path, body=None, headers=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        base + path,
        method=method,
        data=data,
        headers={"content-type": "application/json", **(headers or {})},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


for _ in range(200):
    try:
        call("GET", "/health")
        break
    except OSError:
        time.sleep(0.05)
call("POST", "/signup", {"email": "ada@lab.org", "password": "correct horse battery"})
token = call(
    "POST", "/login", {"email": "ada@lab.org", "password": "correct horse battery"}
)["data"]["access_token"]
auth = {"authorization": "Bearer " + token}
run = call("POST", "/experiments", {"name": "static"}, auth)["data"]["id"]
call(
    "POST",
    f"/experiments/{run}/logs/batch",
    {"logs": [{"name": "loss", "value": 0.5, "step": 1}]},
    auth,
)
got = call("GET", f"/experiments/{run}/summary", None, auth)["data"]["metrics"]
assert got[0]["count"] == 1, got
