"""`mergekit-evo dashboard`: the report's views as a local web page that follows a live run.

The server only reads: each page polls its run's state, which is rebuilt from the run directory when one of the files
it shows has changed (sizes and times, see `run_view.version`), so there is no database and nothing to keep in sync.
It serves its page, plotly.js (from the installed plotly package: the page works offline) and a short list of the
run's own files (regular files only, never through a symbolic link: files.read_inside); any other path is 404. It
binds to 127.0.0.1 unless told otherwise, and then answers only requests addressed to a localhost name, so a web page
that rebinds its own DNS name to 127.0.0.1 cannot read the runs through the visitor's browser.

Given a folder of runs (`dashboard runs/`), the first page lists them with their best-so-far curves side by side.
"""

from __future__ import annotations

import html
import os
import re
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import plotly.graph_objects as go
import plotly.offline

from mergekit_evo.plugin.errors import UserError
from mergekit_evo.store.files import read_inside
from mergekit_evo.store.runs import RunStore
from mergekit_evo.views.figures import LAYOUT, best_so_far
from mergekit_evo.views.report_html import page, state, to_json
from mergekit_evo.views.run_view import RunView, load_view, version

# the run files a page links to; nothing else under the run directory is served
SERVED = re.compile(
    r"^(best\.yaml|config\.yaml|report\.md|report\.html|candidates\.jsonl|pareto\.jsonl|pareto/candidate-\d+\.yaml)$"
)
TYPES = {".html": "text/html; charset=utf-8", ".md": "text/markdown; charset=utf-8"}


LOCAL_NAMES = ("127.0.0.1", "localhost", "::1")


def is_run(path: Path) -> bool:
    return os.path.lexists(path / RunStore.CONFIG) and path.is_dir()


def allowed_hosts(host: str) -> set[str] | None:
    """The Host header names a request may carry when serving on `host` (None: any, for a wildcard address, whose
    names cannot be known here)."""
    if host in ("0.0.0.0", "::", ""):
        return None
    return {*LOCAL_NAMES, host.strip("[]").lower()}


def host_allowed(header: str | None, allowed: set[str] | None) -> bool:
    """Whether a request's Host header names this server (its port stripped); a missing one is refused."""
    if allowed is None:
        return True
    if not header:
        return False
    name = header.strip().lower()
    if name.startswith("["):
        name = name[1 : name.find("]")] if "]" in name else name
    elif name.count(":") == 1:
        name = name.split(":")[0]
    return name in allowed


class Dashboard:
    """The runs under one folder (or the one run it is), and each run's latest state, rebuilt when its files change."""

    def __init__(self, root: Path, poll_ms: int = 2000):
        root = Path(root)
        if not root.is_dir():
            raise UserError(f"{root} is not a folder; give a run directory, or a folder of runs")
        self.root = root
        self.poll_ms = poll_ms
        self.single = is_run(root)
        if not self.single and not self.runs():
            raise UserError(
                f"{root} is neither a run directory nor a folder of runs (none of its folders has config.yaml)"
            )
        self._states: dict[str, tuple[str, bytes]] = {}
        self._lock = threading.Lock()
        self._plotly: bytes | None = None

    def runs(self) -> dict[str, Path]:
        if self.single:
            return {self.root.resolve().name: self.root}
        # a link among the runs is not followed: the folder's own runs only
        return {p.name: p for p in sorted(self.root.iterdir()) if not p.is_symlink() and is_run(p)}

    def plotly_js(self) -> bytes:
        if self._plotly is None:
            self._plotly = plotly.offline.get_plotlyjs().encode()
        return self._plotly

    def run_state(self, name: str, path: Path) -> tuple[str, bytes]:
        """The run's state as JSON, and its version; built again only when the run's files have changed."""
        with self._lock:
            cached = self._states.get(name)
            if cached is None or cached[0] != version(path):
                view = load_view(path, log=lambda _: None)
                cached = (view.version, to_json(state(view)).encode())
                self._states[name] = cached
            return cached

    @staticmethod
    def index_version(runs: dict[str, Path]) -> str:
        """The folder's version: each run's, taken before any is read."""
        return "|".join(f"{name}:{version(path)}" for name, path in runs.items())

    def index_state(self, runs: dict[str, Path], now: str) -> tuple[str, bytes]:
        """The folder's page, at version `now`: a table of its runs and their best-so-far curves on one plot."""
        views: dict[str, RunView | str] = {}
        for name, path in runs.items():
            try:
                views[name] = load_view(path, log=lambda _: None)
            except UserError as e:
                views[name] = str(e)
        rows = []
        figure = go.Figure()
        for name, view in views.items():
            link = f'<a href="run/{quote(name)}/">{html.escape(name)}</a>'
            if isinstance(view, str):
                rows.append(f"<tr><td>{link}</td><td colspan=4>cannot be read: {html.escape(view)}</td></tr>")
                continue
            best = view.chosen
            rows.append(
                f"<tr><td>{link}</td><td>{html.escape(view.status)}</td><td>{len(view.records)}</td>"
                f"<td>{'-' if best is None else f'{best.fitness:.4f}'}</td>"
                f"<td>{html.escape(view.config.optimizer.name)} / {html.escape(view.config.estimator.name)}</td></tr>"
            )
            figure.add_trace(go.Scatter(y=best_so_far(view), mode="lines", name=name))
        figure.update_layout(
            title="Best fitness so far, every run", xaxis_title="evaluation", yaxis_title="weighted fitness", **LAYOUT
        )
        summary = (
            f"<h1>mergekit-evo runs in {html.escape(str(self.root))}</h1>"
            f'<table><tr><th>run</th><th>status</th><th id="count">candidates</th><th>best</th>'
            f"<th>optimizer / estimator</th></tr>{''.join(rows)}</table>"
        )
        body = {
            "version": now,
            "summary": summary,
            "views": [{"id": "runs", "title": "Side by side", "figure": figure.to_plotly_json()}],
        }
        return now, to_json(body).encode()

    def page_for(self, state_url: str, title: str, nav: str = "") -> bytes:
        return page(title, state_url=state_url, plotly_src="/plotly.min.js", poll_ms=self.poll_ms, nav=nav).encode()

    def run_page(self, name: str) -> bytes:
        base = f"/run/{quote(name)}"
        links = [] if self.single else ['<a href="/">all runs</a>']
        links += [
            f'<a href="{base}/files/{file}">{file}</a>' for file in ("best.yaml", "report.md", "candidates.jsonl")
        ]
        return self.page_for(f"{base}/state", f"mergekit-evo run {name}", f"<nav>{''.join(links)}</nav>")

    def route(self, raw_path: str) -> tuple[int, str, bytes]:
        """(status, content type, body) for a GET of `raw_path`."""
        parts = urlsplit(raw_path)
        path, query = unquote(parts.path), parse_qs(parts.query)
        since = query.get("since", [""])[0]
        runs = self.runs()
        if path == "/plotly.min.js":
            return 200, "application/javascript", self.plotly_js()
        if path == "/":
            if self.single:
                return 200, TYPES[".html"], self.run_page(next(iter(runs)))
            return 200, TYPES[".html"], self.page_for("/state", "mergekit-evo runs")
        if path == "/state" and not self.single:
            now = self.index_version(runs)
            if since and since == now:
                return 204, "application/json", b""  # nothing changed: no run is read again
            return self._state(self.index_state(runs, now), since)
        match = re.fullmatch(r"/run/([^/]+)/(.*)", path)
        if match is None or match.group(1) not in runs:
            return 404, "text/plain", b"not found"
        name, rest = match.groups()
        if rest == "":
            return 200, TYPES[".html"], self.run_page(name)
        if rest == "state":
            return self._state(self.run_state(name, runs[name]), since)
        if rest.startswith("files/") and SERVED.match(rest[len("files/") :]):
            relative = rest[len("files/") :]
            data = read_inside(runs[name], relative)  # a link or a non-file is a UserError: 500 with its line
            if data is not None:
                return 200, TYPES.get(Path(relative).suffix, "text/plain; charset=utf-8"), data
        return 404, "text/plain", b"not found"

    @staticmethod
    def _state(current: tuple[str, bytes], since: str) -> tuple[int, str, bytes]:
        version_now, body = current
        if since and since == version_now:
            return 204, "application/json", b""
        return 200, "application/json", body


def make_server(dashboard: Dashboard, host: str, port: int) -> ThreadingHTTPServer:
    """The HTTP server (not yet serving); a port in use is one line naming another to try."""
    if not 0 <= port <= 65535:
        raise UserError(f"--port: {port} is not a port; give one from 1 to 65535, or 0 for any free one")
    allowed = allowed_hosts(host)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802  (the name http.server dispatches to)
            self._answer(send_body=True)

        def do_HEAD(self) -> None:  # noqa: N802
            self._answer(send_body=False)

        def _answer(self, send_body: bool) -> None:
            try:
                if not host_allowed(self.headers.get("Host"), allowed):
                    status, kind, body = 421, "text/plain", b"this dashboard answers requests to its own address only"
                else:
                    status, kind, body = dashboard.route(self.path)
            except UserError as e:  # a run folder that became unreadable while the page was open
                status, kind, body = 500, "text/plain", str(e).encode()
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if send_body and status != 204:
                self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # one line at start-up says where it serves; a line per poll would drown it

    try:
        return ThreadingHTTPServer((host, port), Handler)
    except OSError as e:
        raise UserError(
            f"--port: cannot serve on {host}:{port} ({e.strerror}); give another port, or 0 for any free one"
        ) from None


def serve(root: Path, host: str, port: int, log: Callable[[str], None], poll_ms: int = 2000) -> None:
    """Serve until interrupted."""
    server = make_server(Dashboard(root, poll_ms), host, port)
    bound_port = server.server_address[1]
    log(f"dashboard of {root} on http://{host}:{bound_port}/ (read-only; Ctrl-C stops it)")
    if host not in LOCAL_NAMES:
        log(f"note: bound to {host}: anyone who can reach this machine on port {bound_port} can read these runs")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
