"""An HTTP request as a client of an OpenAI-compatible server makes it
(the router's tests): JSON in, status, headers and raw body out, an error
status returned rather than raised."""

from __future__ import annotations

import json
import urllib.error
import urllib.request


def call(url: str, body: dict | None = None, key: str | None = None, headers: dict | None = None,
         timeout: float = 30):
    """POST body as JSON (GET without one), with the key as a bearer token."""
    req = urllib.request.Request(url, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json", **(headers or {}),
                                          **({"Authorization": f"Bearer {key}"} if key else {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()
