"""Three simulated hosts on one shared root and one Redis (tests/support/hosts.py): documents
per second with 3 hosts, then with one SIGKILLed, and how long until the survivors have
ended everything the dead host held (its claims and messages taken over by their reapers).

Each host: a UTS namespace and hostname, `ocr-daemon watch` (polling) and a threads worker
whose engine takes --latency seconds per request (a remote OCR API stand-in); the last
host's watcher clock 3 s ahead. Needs root (unshare) and faketime.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from harness import RedisServer, machine, wait_for
from rows import emit

from tests.support.hosts import drop, make_hosts
from tests.support.pdfs import make_text_pdf, page_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=300)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--stall-timeout", type=float, default=15.0)
    args = parser.parse_args()
    print(f"# hosts, 3 simulated hosts, one killed: {machine()}")
    with tempfile.TemporaryDirectory(prefix="ocrd-hosts-") as tmp:
        root = Path(tmp)
        redis = RedisServer(root / "redis")
        hosts = make_hosts(root, redis, "benchhosts:", 3, "+3s", latency=args.latency,
                           stall_timeout=args.stall_timeout)
        try:
            for host in hosts:
                host.start()
            for host in hosts:
                wait_for(lambda h=host: '"event": "watching"' in h.output(), 60,
                         what=f"{host.name} watching")
            share = hosts[0].env.cfg.watches[0].root
            inbox, outbox = share / "inbox", share / "outbox"
            inbox.mkdir(parents=True, exist_ok=True)
            staged = []
            for n in range(args.documents):
                staged.append(make_text_pdf(root / f"d{n:04d}.pdf",
                                            [page_text(n * 2 + 1), page_text(n * 2 + 2)]))

            def ended() -> int:
                return sum(1 for p in outbox.glob("d*.json")
                           if not p.name.endswith(".progress.json"))

            start = time.monotonic()
            for source in staged:
                drop(inbox, source, source.name)
            third = args.documents // 3
            wait_for(lambda: ended() >= third, 600, interval=0.1, what="a third ended")
            three_hosts = third / (time.monotonic() - start)
            hosts[1].kill()
            killed, at_kill = time.monotonic(), ended()
            wait_for(lambda: ended() >= at_kill + third, 600, interval=0.1,
                     what="another third ended")
            two_hosts = (ended() - at_kill) / (time.monotonic() - killed)
            wait_for(lambda: ended() == args.documents, 900, interval=0.1, what="all ended")
            wait_for(lambda: not any((share / "processing").iterdir()), 300, interval=0.1,
                     what="processing/ empty")
            taken_over = time.monotonic() - killed
        finally:
            for host in hosts:
                host.env.close()
            redis.stop()
    print(f"| measure | value |\n|---|---|\n"
          f"| documents/s, 3 hosts | {three_hosts:.1f} |\n"
          f"| documents/s, 2 hosts after one was SIGKILLed | {two_hosts:.1f} |\n"
          f"| from the kill until every document ended and processing/ was empty "
          f"(stall_timeout {args.stall_timeout:g} s) | {taken_over:.1f} s |")
    emit([("3 hosts, documents/s (2 after one is killed)",
           f"{three_hosts:.1f} ({two_hosts:.1f})", "", None),
          (f"3 hosts, one killed: all ended {args.stall_timeout:g} s stall_timeout",
           f"{taken_over:.1f} s", "", None)])


if __name__ == "__main__":
    main()
