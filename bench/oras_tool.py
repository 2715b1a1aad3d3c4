"""oras-py as a command, so the benchmark times it like the other tools (own process).

    python3 bench/oras_tool.py push HOST/REPO:TAG FILE
    python3 bench/oras_tool.py pull HOST/REPO:TAG OUTDIR

Credentials, when the endpoint needs them: ECR_BENCH_USERNAME / ECR_BENCH_PASSWORD.
Uses oras-py's defaults (monolithic POST+PUT upload, streamed download), over plain
http (``insecure=True``) as the benchmark's registry is on loopback.
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in ("push", "pull"):
        print(__doc__, file=sys.stderr)
        return 2
    op, target, path = argv
    import oras.client

    client = oras.client.OrasClient(insecure=True)
    user, password = os.environ.get("ECR_BENCH_USERNAME"), os.environ.get("ECR_BENCH_PASSWORD")
    if user and password:  # an endpoint that wants a login (the gateway)
        client.auth.set_basic_auth(user, password)
    if op == "push":
        client.push(files=[path], target=target, disable_path_validation=True, quiet=True)
    else:
        client.pull(target=target, outdir=path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
