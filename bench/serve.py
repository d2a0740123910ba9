"""croft serve under load, on loopback: simulated agents running workflows while fetching a
large artifact, and the artifact's throughput beside nginx serving the same file.

    sudo .venv/bin/python bench/serve.py [--agents 200] [--artifact-mb 100] [--fetchers 50]

1. `croft serve --no-dhcp` for a site of --agents machines, each with a 3-action workflow.
2. Artifact throughput: --agents downloads of the --artifact-mb file by `curl`, --fetchers at a
   time, from croft and then from nginx (one worker, sendfile) serving the same directory.
3. Load: every agent at once runs its workflow through the agent API (long-poll for the next
   action, a 1 KB log, the state) while also downloading the artifact; request latency p50/p99.
4. croft serve's peak RSS (VmHWM).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

VENV = Path(sys.executable).parent
WORKFLOW = """\
name: bench
tasks:
  - name: t
    actions:
      - {name: one, command: "true"}
      - {name: two, command: "true"}
      - {name: three, command: "true"}
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def make_site(root: Path, agents: int, port: int) -> None:
    (root / "machines").mkdir(parents=True)
    (root / "workflows").mkdir()
    (root / "images").mkdir()
    (root / "site.toml").write_text(
        f'name = "bench"\n[serve]\naddress = "127.0.0.1"\ninterface = "lo"\nnetwork = "127.0.0.0/8"\n'
        f"http_port = {port}\n"
    )
    # Declared (the inventory check wants them), never built: the bench boots nothing.
    for name, kind in (("initrd", "initrd"), ("netboot", "base"), ("agent", "overlay")):
        base = 'base = "netboot"\n' if kind == "overlay" else ""
        (root / "images" / f"{name}.toml").write_text(f'kind = "{kind}"\n{base}')
    (root / "workflows" / "bench.yaml").write_text(WORKFLOW)
    for index in range(agents):
        mac = f"52:54:01:00:{index >> 8:02x}:{index & 255:02x}"
        (root / "machines" / f"m{index:03d}.toml").write_text(
            f'address = "127.1.{index >> 8}.{(index & 255) + 1}"\n[hardware]\nworkflow = "bench"\n'
            f'[[hardware.interfaces]]\nmac = "{mac}"\n'
        )


def add_artifact(root: Path, megabytes: int) -> str:
    import hashlib

    store = root / ".croft" / "images" / "store"
    store.mkdir(parents=True)
    partial = store / "partial"
    digest = hashlib.sha256()
    with partial.open("wb") as file:
        chunk = os.urandom(1 << 20)
        for _ in range(megabytes):
            file.write(chunk)
            digest.update(chunk)
    partial.rename(store / digest.hexdigest())
    return digest.hexdigest()


def throughput(url: str, count: int, fetchers: int, size: int) -> float:
    """GB/s for `count` downloads of `url` by curl, `fetchers` at a time."""
    started = time.perf_counter()
    script = f'seq {count} | xargs -P {fetchers} -I{{}} curl -s -f -o /dev/null "{url}"'
    subprocess.run(["sh", "-c", script], check=True)
    return count * size / (time.perf_counter() - started) / 1e9


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def agents_run(base: str, tokens: list[str], artifact_url: str) -> list[float]:
    """Every agent's workflow through the agent API, each also downloading the artifact."""
    import aiohttp

    latencies: list[float] = []

    async def timed(
        session: aiohttp.ClientSession,
        method: str,
        path: str,
        token: str,
        data: str | None = None,
        json: object = None,
    ) -> tuple[int, object]:
        started = time.perf_counter()
        headers = {"Authorization": f"Bearer {token}"}
        async with session.request(method, base + path, headers=headers, data=data, json=json) as reply:
            body = await reply.json() if reply.status == 200 else None
        latencies.append(time.perf_counter() - started)
        return reply.status, body

    async def agent(session: aiohttp.ClientSession, token: str) -> None:
        while True:
            status, action = await timed(session, "GET", "/agent/v1/next?wait=10", token)
            if status == 410:
                return
            if status != 200:
                continue
            assert isinstance(action, dict)
            await timed(session, "POST", f"/agent/v1/actions/{action['id']}/log", token, data="x" * 1024)
            await timed(
                session,
                "POST",
                f"/agent/v1/actions/{action['id']}/state",
                token,
                json={"status": "success", "exit_status": 0, "message": ""},
            )

    async def download(session: aiohttp.ClientSession) -> None:
        async with session.get(artifact_url) as reply:
            async for _ in reply.content.iter_chunked(1 << 20):
                pass

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=600)
    ) as session:
        await asyncio.gather(
            *(agent(session, token) for token in tokens), *(download(session) for _ in tokens)
        )
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--artifact-mb", type=int, default=100)
    parser.add_argument("--fetchers", type=int, default=50)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="croft-bench-serve-"))
    port, nginx_port = free_port(), free_port()
    make_site(work / "site", args.agents, port)
    digest = add_artifact(work / "site", args.artifact_mb)
    size = args.artifact_mb << 20
    log = (work / "serve.log").open("wb")
    server = subprocess.Popen(
        [str(VENV / "croft"), "--site", str(work / "site"), "serve", "--no-dhcp"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    nginx_conf = work / "nginx.conf"
    nginx_conf.write_text(
        f"daemon off; worker_processes 1; pid {work}/nginx.pid; error_log {work}/nginx.error.log;\n"
        "events { worker_connections 1024; }\n"
        f"http {{ access_log off; sendfile on; server {{ listen 127.0.0.1:{nginx_port}; "
        f"root {work}/site/.croft/images/store; }} }}\n"
    )
    os.chmod(work, 0o755)
    nginx = subprocess.Popen(["nginx", "-c", str(nginx_conf)])
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{base}/artifacts/{digest}", timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise SystemExit(f"croft serve did not answer:\n{(work / 'serve.log').read_text()}")
        print(f"croft serve for {args.agents} machines; a {args.artifact_mb} MB artifact", flush=True)
        croft_gbps = throughput(f"{base}/artifacts/{digest}", args.agents, args.fetchers, size)
        nginx_gbps = throughput(f"http://127.0.0.1:{nginx_port}/{digest}", args.agents, args.fetchers, size)

        def croft(*argv: str) -> str:
            return subprocess.run(
                [str(VENV / "croft"), "--site", str(work / "site"), *argv],
                capture_output=True,
                text=True,
                check=True,
            ).stdout

        started = time.perf_counter()
        for index in range(args.agents):
            croft("workflow", "create", f"m{index:03d}")
        create_seconds = time.perf_counter() - started
        # The agents' tokens, as their kernel command lines would carry them (the boot script
        # has none here: the bench builds no netboot images).
        from croft.workflows.store import WorkflowStore

        database = WorkflowStore(f"sqlite:///{work / 'site' / '.croft' / 'serve' / 'workflows.db'}")
        tokens = [workflow.token for workflow in database.all()]
        database.close()
        started = time.perf_counter()
        latencies = asyncio.run(agents_run(base, tokens, f"{base}/artifacts/{digest}"))
        load_seconds = time.perf_counter() - started
        statuses = croft("workflow", "list")
        succeeded = sum(1 for line in statuses.splitlines() if " success" in line)
        latencies.sort()
        p50 = statistics.median(latencies) * 1000
        p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
        rows = [
            ("artifact throughput, croft serve", f"{croft_gbps:.2f} GB/s"),
            ("artifact throughput, nginx (sendfile)", f"{nginx_gbps:.2f} GB/s"),
            ("croft / nginx", f"{croft_gbps / nginx_gbps:.2f}x"),
            ("workflows created (croft workflow create)", f"{args.agents} in {create_seconds:.1f} s"),
            (
                "agents at once, workflows + artifact",
                f"{succeeded}/{args.agents} succeeded in {load_seconds:.1f} s",
            ),
            (
                "agent API latency under that load",
                f"p50 {p50:.1f} ms, p99 {p99:.1f} ms ({len(latencies)} requests)",
            ),
            ("croft serve peak RSS", f"{peak_rss_mb(server.pid):.0f} MB"),
        ]
        for label, value in rows:
            print(f"{label:<44} {value}")
    finally:
        server.terminate()
        nginx.terminate()
        server.wait()
        nginx.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
