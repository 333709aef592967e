"""The peer benchmark's network jail: a peer reaches the host's loopback ports
it is given, and what it serves on every interface stays inside the jail."""

from __future__ import annotations

import asyncio
import socket
import sys
import textwrap
from pathlib import Path

import pytest

from canary.sandbox.cluster import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


async def test_a_jailed_peer_reaches_relayed_ports_and_its_listeners_stay_off_the_host(
    tmp_path: Path,
) -> None:
    async def greet(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hello from the host\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(greet, "127.0.0.1", 0)
    host_port = server.sockets[0].getsockname()[1]
    inside_port = free_port()
    peer = textwrap.dedent(
        f"""
        import socket, time
        with socket.create_connection(("127.0.0.1", {host_port})) as s:
            print(s.makefile().readline().strip(), flush=True)
        listener = socket.socket()
        listener.bind(("0.0.0.0", {inside_port}))  # like the peers' ":8080"
        listener.listen()
        print("listening", flush=True)
        time.sleep(60)
        """
    )
    jail = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.peers.jail",
        f"--dir={tmp_path}",
        f"--pid-file={tmp_path / 'pid'}",
        f"--port={host_port}",
        "--",
        sys.executable,
        "-c",
        peer,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert jail.stdout is not None
        lines = [await asyncio.wait_for(jail.stdout.readline(), 30) for _ in range(2)]
        assert [line.decode().strip() for line in lines] == ["hello from the host", "listening"]
        assert (tmp_path / "pid").read_text().isdigit()
        # The peer listens on every interface of its own namespace: not on the host's.
        with (
            pytest.raises(ConnectionRefusedError),
            socket.create_connection(("127.0.0.1", inside_port), timeout=2),
        ):
            pass
    finally:
        jail.terminate()
        await asyncio.wait_for(jail.wait(), 10)
        server.close()
