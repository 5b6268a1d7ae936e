"""ExaBGP API process of `bench churn`: replays a stream as announce/withdraw commands.

    python -m routeflow.bench.churnfeed STREAM --asn 65100 --nh4 192.0.2.2 \\
        --nh6 fd00::100 --speed 1 --go FILE --log FILE

It waits for ``--go`` to exist (the bench creates it once the session is up),
then writes one command per update to stdout (ExaBGP reads it) at the
stream's times divided by ``--speed`` (0: as fast as possible), and logs
``index wall_time`` per update to ``--log`` (then ``done``), so the bench can
match each update with the switch. It then sleeps: ExaBGP would start a
process that exits again, replaying the stream twice.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from routeflow.bench.churn import ChurnError, parse_stream


def command(op: str, prefix: str, path: tuple[int, ...], asn: int, nh4: str, nh6: str) -> str:
    hop = nh6 if ":" in prefix else nh4
    if op == "W":
        return f"withdraw route {prefix} next-hop {hop}\n"
    as_path = " ".join(map(str, (asn, *path)))
    return f"announce route {prefix} next-hop {hop} as-path [ {as_path} ]\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m routeflow.bench.churnfeed")
    parser.add_argument("stream")
    parser.add_argument("--asn", type=int, required=True)
    parser.add_argument("--nh4", required=True)
    parser.add_argument("--nh6", default="::")
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument("--go", required=True)
    parser.add_argument("--log", required=True)
    args = parser.parse_args(argv)
    try:
        with open(args.stream) as fh:
            updates = parse_stream(fh, args.stream)
    except (OSError, ChurnError) as err:
        print(f"churnfeed: {err}", file=sys.stderr)
        return 2
    lines = [command(u.op, u.prefix, u.as_path, args.asn, args.nh4, args.nh6) for u in updates]
    while not os.path.exists(args.go):
        time.sleep(0.01)
    out = sys.stdout
    with open(args.log, "w", buffering=1) as log:
        start = time.time()
        for i, (u, line) in enumerate(zip(updates, lines, strict=True)):
            if args.speed > 0:
                delay = start + u.t / args.speed - time.time()
                if delay > 0:
                    time.sleep(delay)
            out.write(line)
            out.flush()
            log.write(f"{i} {time.time():.6f}\n")
        log.write("done\n")
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main())
