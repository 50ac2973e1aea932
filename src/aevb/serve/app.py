"""The explorer's web app (Flask): the page, its static files, and a JSON API over an `Explorer`.

Every error is JSON `{"error": message}` with a 4xx status: malformed or oversized bodies, wrong
content types, bad vectors, unknown items and unknown routes alike. See README, "Report and
explorer", for the API.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import AevbError
from .explorer import ApiError, Explorer

MAX_BODY = 64 * 1024  # bytes; the largest real request (a z of a few hundred numbers) is far smaller
STATIC = Path(__file__).parent / "static"


def _json_body() -> dict[str, Any]:
    """The request's JSON object; ApiError on a wrong content type, bad JSON or a non-object."""
    from flask import request

    if request.mimetype != "application/json":
        raise ApiError(415, "send the body as JSON (Content-Type: application/json)")
    raw = request.get_data(cache=False)  # werkzeug refuses bodies over MAX_CONTENT_LENGTH with a 413
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        raise ApiError(400, "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    return body


def create_app(explorer: Explorer):
    """A Flask app serving the explorer page and its API for one run."""
    from flask import Flask, jsonify, request, send_from_directory
    from werkzeug.exceptions import HTTPException

    app = Flask(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.json.sort_keys = False

    @app.errorhandler(ApiError)
    def api_error(e: ApiError):
        return jsonify(error=e.message), e.status

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException):
        messages = {413: f"the request body is larger than {MAX_BODY} bytes"}
        return jsonify(error=messages.get(e.code or 500, e.description or e.name)), e.code

    @app.get("/")
    def index():
        return send_from_directory(STATIC, "index.html")

    @app.get("/static/<path:name>")
    def static_file(name: str):
        return send_from_directory(STATIC, name)

    @app.get("/api/info")
    def info():
        return jsonify(explorer.info())

    @app.get("/api/points")
    def points():
        return jsonify(explorer.points())

    @app.post("/api/decode")
    def decode():
        body = _json_body()
        z, label = explorer.parse_z(body.get("z")), explorer.parse_label(body.get("label"))
        return jsonify(z=z.tolist(), x=explorer.decode(z, label)[0], label=None if label is None else int(label))

    @app.get("/api/items/<name>")
    def item(name: str):
        return jsonify(explorer.item(name))

    @app.post("/api/interpolate")
    def interpolate():
        return jsonify(explorer.interpolate(_json_body()))

    @app.post("/api/sample")
    def sample():
        return jsonify(explorer.sample(_json_body()))

    @app.get("/api/ranking")
    def ranking():
        n = request.args.get("n", "10")
        if not n.isdigit():
            raise ApiError(400, f"n must be a whole number, got {n!r}")
        return jsonify(explorer.ranking(int(n)))

    return app


def listen(host: str = "127.0.0.1", port: int = 8000):
    """A listening TCP socket (port 0: any free port); a taken port or a foreign address is an AevbError."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family)
    except (OSError, OverflowError) as e:
        raise AevbError(f"cannot listen on {host}:{port}: {getattr(e, 'strerror', None) or e}") from None


def make_server(app, sock):
    """A threaded werkzeug server for `app` on the socket from `listen` (its port: `.port`). No access log."""
    from werkzeug.serving import WSGIRequestHandler
    from werkzeug.serving import make_server as _make_server

    class QuietHandler(WSGIRequestHandler):
        def log_request(self, *args, **kwargs) -> None:
            pass

    host, port = sock.getsockname()[:2]
    try:  # werkzeug serves a duplicate of the descriptor
        return _make_server(host, port, app, threaded=True, request_handler=QuietHandler, fd=sock.fileno())
    finally:
        sock.close()
