"""Load generator and probe for bench/server-objects.sh (run by it; see there).

Uploads small random objects (kind `data`, named by the BLAKE3 hex of the body) to one repository
of a running `arca server` over keep-alive HTTP connections from several threads. At each
checkpoint (object count) the uploads pause and it records: the server's VmRSS and VmHWM, the
metadata database's file sizes, the upload rate since the previous checkpoint, the latency of
listing one page of 1000 after a random stored name, of HEAD on a random stored object, and of
walking the whole listing. While uploads run, one more connection also times a HEAD every 0.2 s
and a listing page every 2 s (latency under load). Writes a JSON report and prints one line per
checkpoint.
"""

import argparse
import http.client
import json
import os
import random
import resource
import statistics
import sys
import threading
import time
import urllib.parse

import blake3


def proc_status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "Threads"):
                out[k] = int(v.split()[0])
    return out


def proc_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick


def file_size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


class Client:
    def __init__(self, url, repo, token):
        u = urllib.parse.urlsplit(url)
        self.host, self.port = u.hostname, u.port
        self.base = f"/v1/repos/{repo}"
        self.auth = {"Authorization": f"Bearer {token}"}
        self.conn = None

    def request(self, method, path, body=None, headers=None):
        h = dict(self.auth)
        if headers:
            h.update(headers)
        for attempt in range(5):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
            try:
                self.conn.request(method, self.base + path, body=body, headers=h)
                resp = self.conn.getresponse()
                data = resp.read()
                return resp.status, resp.headers, data
            except (ConnectionError, http.client.HTTPException, TimeoutError, OSError):
                self.conn.close()
                self.conn = None
                if attempt == 4:
                    raise
                time.sleep(0.2)


class Uploader:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.next = 0
        self.done = 0
        self.target = 0
        self.deadline = None
        self.names = []  # 32-byte digests of stored objects, in no particular order
        self.errors = {}
        self.throttled = 0
        self.clients = [Client(args.url, args.repo, args.token) for _ in range(args.threads)]

    def _take(self):
        with self.lock:
            if self.next >= self.target or time.monotonic() >= self.deadline:
                return False
            self.next += 1
            return True

    def _worker(self, client):
        size = self.args.size
        while self._take():
            body = os.urandom(size)
            digest = blake3.blake3(body).digest()
            path = f"/data/{digest.hex()}"
            while True:
                status, headers, data = client.request(
                    "PUT", path, body=body,
                    headers={"Content-Length": str(size), "Content-Type": "application/octet-stream"})
                if status == 429:
                    with self.lock:
                        self.throttled += 1
                    time.sleep(float(headers.get("Retry-After", "1")))
                    continue
                break
            if status in (200, 201):
                with self.lock:
                    self.names.append(digest)
                    self.done += 1
            else:
                with self.lock:
                    key = f"{status} {data[:200].decode(errors='replace')}"
                    self.errors[key] = self.errors.get(key, 0) + 1
                    self.next -= 1  # not stored: another object takes its place
                    if sum(self.errors.values()) > 100:
                        self.deadline = 0

    def _prober(self, stop, rng):
        """While uploads run: a HEAD of a random stored object every 0.2 s, a listing page every 2 s."""
        client = Client(self.args.url, self.args.repo, self.args.token)
        head, page, tick = [], [], 0
        while not stop.wait(0.2):
            with self.lock:
                name = rng.choice(self.names).hex() if self.names else None
            if name is None:
                continue
            t0 = time.perf_counter()
            status, _, _ = client.request("HEAD", f"/data/{name}")
            head.append(time.perf_counter() - t0)
            tick += 1
            if tick % 10 == 0:
                t0 = time.perf_counter()
                status, _, _ = client.request("GET", f"/data/?limit=1000&after={name}")
                page.append(time.perf_counter() - t0)
        self.under_load = (head, page)

    def run_until(self, target, deadline, rng):
        self.target, self.deadline = target, deadline
        threads = [threading.Thread(target=self._worker, args=(c,)) for c in self.clients]
        stop = threading.Event()
        prober = threading.Thread(target=self._prober, args=(stop, random.Random(rng.random())))
        prober.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stop.set()
        prober.join()
        return self.done


def ms(seconds):
    return round(seconds * 1000, 2)


def probe(args, up, client, rng):
    """Latencies and sizes with the uploads paused."""
    p = {}
    names = up.names
    # One page of 1000 after a random stored name (the first page when nothing is stored).
    lat, counts = [], []
    for _ in range(args.list_samples):
        after = f"&after={rng.choice(names).hex()}" if names else ""
        t0 = time.perf_counter()
        status, _, data = client.request("GET", f"/data/?limit=1000{after}")
        lat.append(time.perf_counter() - t0)
        assert status == 200, (status, data[:200])
        counts.append(len(json.loads(data)))
    p["list_page_ms_median"] = ms(statistics.median(lat))
    p["list_page_ms_p95"] = ms(sorted(lat)[int(0.95 * (len(lat) - 1))])
    p["list_page_entries_median"] = statistics.median(counts)
    # HEAD of a random stored object (of a missing one when nothing is stored: 404).
    lat = []
    for _ in range(args.head_samples):
        name = rng.choice(names).hex() if names else "0" * 64
        t0 = time.perf_counter()
        status, headers, _ = client.request("HEAD", f"/data/{name}")
        lat.append(time.perf_counter() - t0)
        if names:
            assert status == 200 and headers.get("x-arca-size") == str(args.size), (status, dict(headers))
        else:
            assert status == 404, status
    p["head_status"] = 200 if names else 404
    p["head_ms_median"] = ms(statistics.median(lat))
    p["head_ms_p95"] = ms(sorted(lat)[int(0.95 * (len(lat) - 1))])
    # The whole listing, in pages of 10000 (the largest the server gives).
    if args.walk:
        t0 = time.perf_counter()
        after, total, pages = "", 0, 0
        while True:
            status, _, data = client.request("GET", f"/data/?limit=10000{'&after=' + after if after else ''}")
            assert status == 200, (status, data[:200])
            page = json.loads(data)
            pages += 1
            total += len(page)
            if len(page) < 10000:
                break
            after = page[-1]["name"]
        p["walk_s"] = round(time.perf_counter() - t0, 3)
        p["walk_pages"] = pages
        p["walk_listed"] = total
    st = proc_status(args.pid)
    p["rss_mib"] = round(st["VmRSS"] / 1024, 1)
    p["hwm_mib"] = round(st["VmHWM"] / 1024, 1)
    p["server_threads"] = st["Threads"]
    p["db_mib"] = round(file_size(args.db) / 2**20, 2)
    p["wal_mib"] = round(file_size(args.db + "-wal") / 2**20, 2)
    p["loadavg"] = open("/proc/loadavg").read().split()[:3]
    return p


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--repo", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--db", required=True, help="the SQLite file (sizes only)")
    ap.add_argument("--checkpoints", default="10000,100000,1000000")
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--budget", type=float, default=1500, help="seconds of uploading in all")
    ap.add_argument("--list-samples", type=int, default=20)
    ap.add_argument("--head-samples", type=int, default=200)
    ap.add_argument("--walk", type=int, default=1)
    ap.add_argument("--rss-csv", required=True)
    ap.add_argument("--json", required=True)
    args = ap.parse_args()
    checkpoints = [int(x) for x in args.checkpoints.replace(",", " ").split()]
    rng = random.Random(1)
    up = Uploader(args)
    probe_client = Client(args.url, args.repo, args.token)

    stop_sampling = threading.Event()
    start = time.monotonic()
    csv = open(args.rss_csv, "w")
    csv.write("seconds,objects,vmrss_kib,vmhwm_kib\n")

    def sampler():
        while not stop_sampling.wait(2):
            try:
                st = proc_status(args.pid)
            except OSError:
                return
            csv.write(f"{time.monotonic() - start:.1f},{up.done},{st['VmRSS']},{st['VmHWM']}\n")
            csv.flush()

    threading.Thread(target=sampler, daemon=True).start()

    results = []
    row = {"objects": 0, "rate_per_s": None}
    row.update(probe(args, up, probe_client, rng))
    results.append(row)
    print(json.dumps(row), flush=True)
    deadline = time.monotonic() + args.budget
    upload_seconds = 0.0
    stopped_early = False
    for target in checkpoints:
        before, cpu0 = up.done, proc_cpu(args.pid)
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.monotonic()
        done = up.run_until(target, deadline, rng)
        elapsed = time.monotonic() - t0
        upload_seconds += elapsed
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        n = done - before
        row = {
            "objects": done,
            "target": target,
            "phase_objects": n,
            "phase_s": round(elapsed, 1),
            "rate_per_s": round(n / elapsed, 1) if elapsed > 0 else None,
            "server_cpu_ms_per_object": round((proc_cpu(args.pid) - cpu0) * 1000 / n, 3) if n else None,
            "client_cpu_ms_per_object": round(
                (ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime) * 1000 / n, 3) if n else None,
            "throttled_429": up.throttled,
            "errors": dict(up.errors),
        }
        head, page = up.under_load
        if head:
            row["loaded_head_ms_median"] = ms(statistics.median(head))
            row["loaded_head_ms_p95"] = ms(sorted(head)[int(0.95 * (len(head) - 1))])
            row["loaded_head_samples"] = len(head)
        if page:
            row["loaded_list_page_ms_median"] = ms(statistics.median(page))
            row["loaded_list_page_ms_p95"] = ms(sorted(page)[int(0.95 * (len(page) - 1))])
        row.update(probe(args, up, probe_client, rng))
        if done < target:
            row["stopped_by_budget"] = True
            stopped_early = True
        results.append(row)
        print(json.dumps(row), flush=True)
        if up.errors and sum(up.errors.values()) > 100:
            print("too many upload errors; stopping", file=sys.stderr)
            break
        if stopped_early:
            break
        # Estimate whether the next checkpoint fits in the budget at this phase's rate.
        if row["rate_per_s"]:
            remaining = deadline - time.monotonic()
            nxt = [c for c in checkpoints if c > done]
            if nxt:
                need = (nxt[0] - done) / row["rate_per_s"]
                print(f"# next checkpoint {nxt[0]}: about {need:.0f} s at {row['rate_per_s']}/s; "
                      f"{remaining:.0f} s of the budget left", flush=True)
    stop_sampling.set()
    report = {"threads": args.threads, "size": args.size, "budget_s": args.budget,
              "upload_seconds": round(upload_seconds, 1), "stopped_by_budget": stopped_early,
              "checkpoints": results}
    with open(args.json, "w") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
