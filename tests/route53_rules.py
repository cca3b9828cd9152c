"""Route 53's change-batch rules in front of moto, which does not enforce them.

Real Route 53 refuses a whole ChangeResourceRecordSets batch (InvalidChangeBatch, nothing applied)
when a DELETE does not match an existing record exactly (name, type, set identifier, TTL and
every value) or a CREATE names a record that exists. moto 5 deletes by name and type whatever the
values, and lets a CREATE duplicate a record (checked in
``tests/control/test_vantage.py::test_moto_alone_does_not_enforce_route53_batch_rules``), so the
Route 53 backend's fence (a DELETE of the exact value read, in the same batch as the weights)
cannot be tested on moto alone. :class:`Route53Rules` is an HTTP proxy to moto that checks those
two rules on every change batch, against the records moto holds, and answers Route 53's error
when one is broken; everything else passes through unchanged. Requests through it are handled one
at a time, so a check and the change it lets through are atomic, as they are at Route 53.
"""

from __future__ import annotations

import http.client
import re
import threading
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3

from orchestrator.demo.processes import free_port

__all__ = ["Route53Rules"]

_NS = "{https://route53.amazonaws.com/doc/2013-04-01/}"
_CHANGE_PATH = re.compile(r"^/2013-04-01/hostedzone/([^/]+)/rrset/?$")


def _text(node: ET.Element | None, tag: str) -> str | None:
    found = node.find(f"{_NS}{tag}") if node is not None else None
    return found.text if found is not None else None


def _key(name: str, rtype: str, set_id: str | None) -> tuple[str, str, str | None]:
    return (name.lower().rstrip(".") + ".", rtype, set_id)


class Route53Rules:
    """An HTTP proxy on 127.0.0.1:``port`` to moto at ``upstream`` (``http://127.0.0.1:N``)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.refused = 0  # batches refused by the rules
        self._lock = threading.Lock()
        self._route53 = boto3.client("route53", endpoint_url=upstream, region_name="us-east-1")
        rules = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def do_GET(self) -> None:
                rules._forward(self, b"")

            def do_DELETE(self) -> None:
                rules._forward(self, b"")

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                match = _CHANGE_PATH.match(self.path)
                with rules._lock:
                    problem = rules._check(match.group(1), body) if match else None
                    if problem is not None:
                        rules.refused += 1
                        rules._refuse(self, problem)
                        return
                    rules._forward(self, body)

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="route53-rules")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Route53Rules:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _records(self, zone: str) -> dict[tuple[str, str, str | None], dict[str, Any]]:
        records: dict[tuple[str, str, str | None], dict[str, Any]] = {}
        pages = self._route53.get_paginator("list_resource_record_sets").paginate(HostedZoneId=zone)
        for page in pages:
            for record in page["ResourceRecordSets"]:
                records[_key(record["Name"], record["Type"], record.get("SetIdentifier"))] = record
        return records

    def _check(self, zone: str, body: bytes) -> str | None:
        """Route 53's reason for refusing the batch, or None when it would accept it."""
        root = ET.fromstring(body)  # our own client's request, on loopback
        existing = self._records(zone)
        for change in root.iter(f"{_NS}Change"):
            action = _text(change, "Action")
            rrset = change.find(f"{_NS}ResourceRecordSet")
            name, rtype = _text(rrset, "Name") or "", _text(rrset, "Type") or ""
            key = _key(name, rtype, _text(rrset, "SetIdentifier"))
            held = existing.get(key)
            if action == "CREATE" and held is not None:
                return (
                    f"Tried to create resource record set [name='{name}', type='{rtype}'] "
                    "but it already exists"
                )
            if action == "DELETE":
                values = sorted(
                    v.text or "" for v in (rrset.iter(f"{_NS}Value") if rrset is not None else [])
                )
                ttl = _text(rrset, "TTL")
                if (
                    held is None
                    or sorted(r["Value"] for r in held.get("ResourceRecords", [])) != values
                    or str(held.get("TTL")) != ttl
                ):
                    return (
                        f"Tried to delete resource record set [name='{name}', type='{rtype}'] but the "
                        "values provided do not match the current values"
                    )
                del existing[key]
            if action in ("CREATE", "UPSERT"):
                existing[key] = {}
        return None

    def _refuse(self, handler: BaseHTTPRequestHandler, message: str) -> None:
        body = (
            '<?xml version="1.0"?>\n'
            '<ErrorResponse xmlns="https://route53.amazonaws.com/doc/2013-04-01/"><Error>'
            f"<Type>Sender</Type><Code>InvalidChangeBatch</Code><Message>{message}</Message>"
            "</Error><RequestId>route53-rules</RequestId></ErrorResponse>"
        ).encode()
        handler.send_response(400)
        handler.send_header("Content-Type", "text/xml")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def _forward(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        host, _, port = self.upstream.removeprefix("http://").partition(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        try:
            headers = {
                k: v for k, v in handler.headers.items() if k.lower() not in ("host", "content-length")
            }
            headers["Content-Length"] = str(len(body))
            conn.request(handler.command, handler.path, body=body or None, headers=headers)
            response = conn.getresponse()
            data = response.read()
            handler.send_response(response.status)
            for key, value in response.getheaders():
                if key.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
                    handler.send_header(key, value)
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
        finally:
            conn.close()
