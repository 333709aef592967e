"""Run a peer controller in a network namespace of its own, with loopback only.

Argo Rollouts and Flagger serve their metrics and health endpoints on every
interface (":8090", ":8080") and have no flag to bind them to loopback. The
benchmark must not listen beyond 127.0.0.1, so each peer runs in a private
network namespace (`unshare -n`) whose only interface is its own loopback.
The ports it needs on the host's loopback (the API server, Prometheus) are
relayed through Unix sockets, which live in the file system and so cross
network namespaces:

    peer -> 127.0.0.1:P (jail loopback) -> DIR/relay-P.sock -> 127.0.0.1:P (host)

    python -m bench.peers.jail --dir DIR --port P [--port Q ...] --pid-file F -- CMD...

The outer process (host side) serves the sockets and starts the inner one
under `unshare -n`; the inner one brings its loopback up, listens on
127.0.0.1:P, starts CMD and writes CMD's pid to F (for RSS and CPU). SIGTERM
to the outer process stops the whole chain.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import os
import signal
import socket
import struct
import subprocess
import sys
from pathlib import Path

CHUNK = 1 << 16
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1  # <linux/sockios.h>, <net/if.h>


def _socket_path(directory: Path, port: int) -> Path:
    return directory / f"relay-{port}.sock"


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(ConnectionError, OSError):
            writer.close()


async def _splice(
    client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
) -> None:
    await asyncio.gather(_pipe(client[0], upstream[1]), _pipe(upstream[0], client[1]))


async def _outer(directory: Path, ports: list[int], inner: list[str]) -> int:
    async def to_host(port: int) -> asyncio.base_events.Server:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                upstream = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                writer.close()
                return
            await _splice((reader, writer), upstream)

        path = _socket_path(directory, port)
        path.unlink(missing_ok=True)
        return await asyncio.start_unix_server(handle, path=str(path))

    servers = [await to_host(port) for port in ports]
    process = await asyncio.create_subprocess_exec(*inner, stdin=subprocess.DEVNULL)
    return await _supervise(process, servers)


async def _supervise(
    process: asyncio.subprocess.Process, servers: list[asyncio.base_events.Server]
) -> int:
    """Forward SIGTERM/SIGINT to the process as SIGTERM, wait for it, then
    stop relaying."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, process.send_signal, signal.SIGTERM)
    code = await process.wait()
    for server in servers:
        server.close()
    return code


async def _inner(directory: Path, ports: list[int], command: list[str], pid_file: Path) -> int:
    async def from_jail(port: int) -> asyncio.base_events.Server:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                upstream = await asyncio.open_unix_connection(str(_socket_path(directory, port)))
            except OSError:
                writer.close()
                return
            await _splice((reader, writer), upstream)

        return await asyncio.start_server(handle, "127.0.0.1", port)

    servers = [await from_jail(port) for port in ports]
    process = await asyncio.create_subprocess_exec(*command, stdin=subprocess.DEVNULL)
    # Written whole, then renamed: a reader never sees a half-written file.
    partial = pid_file.with_suffix(".partial")
    await asyncio.to_thread(partial.write_text, str(process.pid))
    await asyncio.to_thread(partial.replace, pid_file)
    return await _supervise(process, servers)


def loopback_up() -> None:
    """A new network namespace starts with its loopback down; bring it up
    (what `ip link set lo up` does, without needing iproute2)."""
    ifreq = struct.Struct("16sH14x")  # interface name, flags
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        current = fcntl.ioctl(sock, SIOCGIFFLAGS, ifreq.pack(b"lo", 0))
        flags = ifreq.unpack(current)[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, ifreq.pack(b"lo", flags | IFF_UP))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.peers.jail")
    parser.add_argument("--dir", required=True, type=Path, help="where the relay sockets live")
    parser.add_argument("--port", type=int, action="append", default=[], help="host port to relay")
    parser.add_argument("--pid-file", required=True, type=Path)
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command to run")
    if args.inner:
        loopback_up()
        sys.exit(asyncio.run(_inner(args.dir, args.port, command, args.pid_file)))
    inner = [
        "unshare",
        "--net",
        "--",
        sys.executable,
        "-m",
        "bench.peers.jail",
        "--inner",
        f"--dir={args.dir}",
        f"--pid-file={args.pid_file}",
        *(f"--port={port}" for port in args.port),
        "--",
        *command,
    ]
    sys.exit(asyncio.run(_outer(args.dir, args.port, inner)))


if __name__ == "__main__":
    os.umask(0o077)  # the relay sockets reach the API server: owner only
    main()
