"""A TCP relay that holds every chunk for a fixed time in each direction: a slow network link
on the path, for tests (run it inside a router's namespace).

    python -m tests.helpers.delayrelay LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT DELAY_S
"""

from __future__ import annotations

import asyncio
import sys


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    try:
        while data := await reader.read(65536):
            await asyncio.sleep(delay)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def main(host: str, port: int, target: str, target_port: int, delay: float) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(target, target_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer, delay), _pipe(up_reader, writer, delay))

    server = await asyncio.start_server(handle, host, port)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    h, p, t, tp, d = sys.argv[1:6]
    asyncio.run(main(h, int(p), t, int(tp), float(d)))
