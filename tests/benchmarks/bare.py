"""The yardsticks: what a bare script does with no syncd in it, run as a process of its own.

    python tests/benchmarks/bare.py get FLEET.json --concurrency C
    python tests/benchmarks/bare.py put FLEET.json --concurrency C
    python tests/benchmarks/bare.py parse DIR

``get``: one ``httpx.AsyncClient`` (``max_connections=C``), C workers, a GET of
/api/phone/config per device. ``put``: GET, PUT of the device's whole account
(multipart ``blob-json``, as syncd sends it), GET again, per device. ``parse``:
every ``*.yaml`` under DIR read and parsed with PyYAML's ``CSafeLoader``.
FLEET.json is a list of ``{"url": ..., "blob": {...}}``. Plain ``asyncio.run``,
as a short script would be written; it exits 1 if any answer is not a success.
Only the standard library, httpx and PyYAML are imported: start-up is part of
what is compared.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

__all__ = ["main"]

CONFIG = "/api/phone/config"


async def _fleet(devices: list[dict[str, Any]], concurrency: int, *, put: bool) -> int:
    import httpx

    failures = 0
    pending = iter(devices)
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30.0, trust_env=False) as client:

        async def worker() -> None:
            nonlocal failures
            for device in pending:
                url = device["url"] + CONFIG
                answers = [await client.get(url)]
                if put:
                    blob = json.dumps(device["blob"], separators=(",", ":")).encode()
                    files = {"blob-json": ("blob-json.json", blob, "application/json")}
                    answers.append(await client.put(url, files=files))
                    answers.append(await client.get(url))
                failures += sum(a.json().get("success") is not True for a in answers)

        await asyncio.gather(*(worker() for _ in range(min(concurrency, len(devices)))))
    return failures


def _parse(root: str) -> int:
    import yaml

    count = 0
    for folder, _, names in os.walk(root):
        for name in names:
            if name.endswith(".yaml"):
                with open(os.path.join(folder, name), encoding="utf-8") as handle:
                    yaml.load(handle.read(), Loader=yaml.CSafeLoader)
                count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bare.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("get", "put", "parse"))
    parser.add_argument("path", help="FLEET.json, or the DIR to parse")
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args(argv)
    if args.what == "parse":
        print(f"{_parse(args.path)} files parsed")
        return 0
    with open(args.path, encoding="utf-8") as handle:
        devices = json.load(handle)
    failures = asyncio.run(_fleet(devices, args.concurrency, put=args.what == "put"))
    print(f"{len(devices)} devices, {failures} failed answers")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
