"""Store requests of an open dashboard per minute, with 1 and with 5 tabs.

A jobspace holds three unfinished jobs of 20 tasks (nothing runs them, so each one's status is read at
every tick: the case that costs most); ``qubits dashboard``'s app serves it in this process (uvicorn in a thread) over a
CountingJobspace, at its default interval. N clients open the jobs page's event stream (what a tab of
the jobs page opens) and stay for the window; the store requests made meanwhile are counted. The
figure is per open dashboard: the tabs share one poller, so 5 tabs should cost what 1 costs.
"""

from __future__ import annotations

import http.client
import threading
import time
from typing import Any

import qubits
from jobspaces import CountingJobspace, open_jobspace
from qubits.protocol import DASHBOARD_INTERVAL

from ._stores import Store


def _viewer(port: int, topics: list[str], stop: threading.Event, frames: list[int]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=DASHBOARD_INTERVAL * 10)
    conn.request("GET", "/events?" + "&".join(f"topic={t}" for t in topics))
    resp = conn.getresponse()
    assert resp.status == 200, resp.status
    while not stop.is_set():
        line = resp.fp.readline()
        if not line:
            break
        if line.startswith(b"event:"):
            frames.append(1)
    conn.close()


def measure(url: str, *, viewers: int, window: float, topics: list[str]) -> dict[str, Any]:
    """Requests to the store while ``viewers`` clients watch ``topics`` for ``window`` seconds."""
    from qubits.dashboard import create_app, listen, server

    counting = CountingJobspace(open_jobspace(url))
    client = qubits.Client(counting)
    app, hub = create_app(client, interval=DASHBOARD_INTERVAL)
    sock = listen("127.0.0.1", 0)
    port = sock.getsockname()[1]
    web = server(app, hub)
    serving = threading.Thread(target=web.run, kwargs={"sockets": [sock]}, daemon=True)
    serving.start()
    while not web.started:
        time.sleep(0.05)
    stop = threading.Event()
    frames: list[int] = []
    threads = [threading.Thread(target=_viewer, args=(port, topics, stop, frames), daemon=True) for _ in range(viewers)]
    for t in threads:
        t.start()
    time.sleep(DASHBOARD_INTERVAL * 2)  # every tab connected and served its first snapshot
    counting.reset()
    ticks0 = hub.ticks
    time.sleep(window)
    requests = counting.by_kind()
    ticks = hub.ticks - ticks0
    stop.set()
    web.should_exit = True
    serving.join(10)
    client.close()
    total = sum(requests.values())
    return {"viewers": viewers, "window_s": window, "topics": topics, "ticks": ticks, "requests": total,
            "per_minute": round(total * 60 / window, 1), "by_kind": requests, "frames": len(frames)}


def run(store: Store, *, window: float = 60.0, viewers: tuple[int, ...] = (1, 5), jobs: int = 3, tasks: int = 20) -> dict[str, Any]:
    url = store.fresh_url()
    try:
        client = qubits.connect(url)
        for i in range(jobs):
            client.submit_commands([f"echo {i}-{n}" for n in range(tasks)], name=f"bench-dashboard-{i}")
        client.close()
        rows = [{"store": store.name, "jobs": jobs, "tasks_per_job": tasks,
                 **measure(url, viewers=n, window=window, topics=["jobs"])} for n in viewers]
    finally:
        store.discard(url)
    return {"rows": rows, "interval_s": DASHBOARD_INTERVAL, "method": __doc__}
