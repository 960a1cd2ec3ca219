"""vllm-router in front of every replica a host name resolves to, as compose's DNS resolves a
scaled service's name to each of its containers (`docker compose up --scale llamba=3`):

    python replicas.py llamba:8000 [--wait N] -- [vllm-router's flags...]

resolves the name (IPv4), waits until it gives N addresses (the replicas still starting are not
in the DNS yet), then runs vllm-router with `--worker-urls` set to each one's URL. Replicas
added later are not seen: restart the router after scaling (Kubernetes has the router watch
the pods instead)."""
import argparse
import os
import shutil
import socket
import sys
import time


def worker_urls(host: str, port: int) -> list[str]:
    addresses = {info[4][0] for info in socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)}
    return [f"http://{address}:{port}" for address in sorted(addresses)]


def main(argv: list[str]) -> None:
    cut = argv.index("--") if "--" in argv else len(argv)
    ours, theirs = argv[:cut], argv[cut + 1:]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("replicas", help="HOST:PORT, the replicas' service name and port")
    parser.add_argument("--wait", type=int, default=1, help="addresses to wait for (default 1)")
    args = parser.parse_args(ours)
    host, port = args.replicas.rsplit(":", 1)
    while True:
        try:
            urls = worker_urls(host, int(port))
        except socket.gaierror:
            urls = []
        if len(urls) >= args.wait:
            break
        print(f"replicas.py: {host} resolves to {len(urls)} of {args.wait} replicas; waiting", file=sys.stderr)
        time.sleep(1)
    print(f"replicas.py: vllm-router over {' '.join(urls)}", file=sys.stderr)
    router = shutil.which("vllm-router") or "vllm-router"
    os.execv(router, [router, "--worker-urls", *urls, *theirs])


if __name__ == "__main__":
    main(sys.argv[1:])
