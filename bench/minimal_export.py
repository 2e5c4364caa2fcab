"""`python -m bench.minimal_export`: the least a Python exporter can do, as a yardstick.

For each file of a list: read it, hash it (sha256), and append two tar members to one POSIX
tar, the file and a small JSON member naming its digest, with the standard library's
``tarfile`` headers. No manifest, no records, no splits, no index. It shows what the same
per-file work costs in Python before any of allen-mirror's own, next to ``tar cf``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tarfile
from pathlib import Path, PurePosixPath

BLOCK = 512


def member(name: str, body: bytes) -> bytes:
    """A tar member: header, body, padding to the next block."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(body), 0, 0o644
    return info.tobuf(format=tarfile.USTAR_FORMAT) + body + b"\0" * (-len(body) % BLOCK)


def export(root: Path, paths: list[str], target: Path) -> None:
    with target.open("wb") as out:
        for path in paths:
            body = (root / path).read_bytes()
            key = PurePosixPath(path).stem
            meta = {"key": key, "path": path, "sha256": hashlib.sha256(body).hexdigest()}
            out.write(member(f"{key}.jpg", body))
            out.write(member(f"{key}.json", json.dumps(meta).encode()))
        out.write(b"\0" * (2 * BLOCK))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.minimal_export", description=__doc__)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--files", type=Path, required=True, help="paths under --root, a line each")
    parser.add_argument("--to", type=Path, required=True)
    args = parser.parse_args(argv)
    paths = [line for line in args.files.read_text().splitlines() if line]
    export(args.root, paths, args.to)


if __name__ == "__main__":
    main()
