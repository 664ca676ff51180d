"""App start time: `python launch.py` until the UI answers HTTP 200 (warm model cache)."""
from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request

from common import ROOT, write


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    port = free_port()
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "launch.py", "--port", str(port), "--offline"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.perf_counter() - t0 > 300:
                    raise SystemExit("the server did not start")
                time.sleep(0.2)
        seconds = time.perf_counter() - t0
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    write("app_start", {"seconds_to_ui": round(seconds, 2), "target_seconds": 20})


if __name__ == "__main__":
    main()
