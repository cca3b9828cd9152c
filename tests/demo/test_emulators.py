"""The emulators the demo and the tests run, where their own behaviour would make a test lie."""

from __future__ import annotations

import socket
import urllib.request

from orchestrator.demo.emulators import GCS_IDLE_TIMEOUT_S, HOST, GcsEmulator


def test_a_stalled_client_does_not_block_the_gcs_emulator(gcs_emulator: GcsEmulator) -> None:
    """gcp-storage-emulator serves one connection at a time: a client that connects and then stops
    (a job under SIGSTOP) held it until restart. With the launcher's idle timeout the next client
    is answered once the stalled one times out."""
    stalled = [socket.create_connection((HOST, gcs_emulator.port)) for _ in range(2)]
    try:
        stalled[1].sendall(b"GET /storage/v1/b?project=test HTTP/1.1\r\n")  # a request cut mid-header
        url = f"{gcs_emulator.endpoint}/storage/v1/b?project=test"
        with urllib.request.urlopen(url, timeout=3 * GCS_IDLE_TIMEOUT_S + 5) as answer:
            assert answer.status == 200
            assert answer.read().startswith(b"{")
    finally:
        for sock in stalled:
            sock.close()
