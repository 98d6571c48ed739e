"""Logs: one line per event, JSON on request, an access log without query strings, and the
Azure SDK's request logging kept quiet, read from a real `klasblik serve`."""

from __future__ import annotations

import json
import logging
import urllib.request

from klasblik.server.logs import JsonFormatter, OneLineFormatter
from tests.support.azurite import Azurite
from tests.support.live import TOKEN
from tests.support.process import ServerProcess
from tests.support.timing import timeout


def _record_with_traceback() -> logging.LogRecord:
    try:
        raise ValueError("first line\nsecond line")
    except ValueError:
        import sys

        return logging.LogRecord(
            "klasblik.t", logging.ERROR, __file__, 1, "it\nbroke", None, sys.exc_info()
        )


def test_each_record_is_one_line_in_both_formats():
    """A message with line breaks and a traceback still make exactly one line; the JSON
    line keeps the traceback in its own field."""
    record = _record_with_traceback()
    text = OneLineFormatter().format(record)
    assert "\n" not in text and "second line" in text and "Traceback" in text
    line = JsonFormatter().format(record)
    assert "\n" not in line
    data = json.loads(line)
    assert data["message"] == "it\nbroke" and data["level"] == "ERROR"
    assert "ValueError: first line" in data["exc"]


def test_server_logs_json_and_no_query_strings_and_no_azure_headers(tmp_path):
    """`klasblik serve` with log_format = json on Azurite: every log line is one JSON
    object; each request gets an access line with its path but never its query string;
    the Azure SDK's request/response header lines do not appear at INFO."""
    azurite = Azurite()
    azurite.start()
    server = ServerProcess(
        tmp_path,
        env={
            "KLASBLIK_ENROLLMENT_TOKEN": TOKEN,
            "KLASBLIK_LOG_FORMAT": "json",
            "KLASBLIK_LOG_LEVEL": "INFO",
            "KLASBLIK_BLOB_STORE": "azure:logtest",
            "KLASBLIK_AZURE_CONNECTION_STRING": azurite.connection_string,
        },
    )
    try:
        server.wait_healthy()
        for path in ("/livez?code=SECRET-CODE-1", "/readyz?state=SECRET-STATE-2"):
            with urllib.request.urlopen(server.base_url + path, timeout=timeout(5)) as r:
                assert r.status == 200
        assert server.stop() == 0
    finally:
        server.stop()
        azurite.stop()
    log = server.log()
    assert "SECRET-" not in log
    entries = []
    for line in log.splitlines():
        if not line.strip() or line.startswith("Klasblik "):  # the start/stop banners (stdout)
            continue
        entries.append(json.loads(line))  # fails on any line that is not one JSON object
    access = [e for e in entries if e["logger"] == "klasblik.access"]
    paths = {e["http"]["path"] for e in access}
    assert {"/livez", "/readyz"} <= paths
    assert all(e["http"]["status"] == 200 for e in access if e["http"]["path"] == "/livez")
    assert not [e for e in entries if e["logger"].startswith("azure.core.pipeline")], entries
    assert "Request headers" not in log and "Response headers" not in log
