#!/usr/bin/env python3
"""Server memory over a large catalogue, without waiting for a million uploads.

bench/server-objects.sh uploads objects through the API (about 400 small objects/s on 2 cores,
so 1M takes 45 minutes). The server's memory depends on its catalogue (the SQLite database), not
on the bytes on disk, so this script builds catalogues of N objects directly: it sets a server up
the normal way (tenant, repository, device), stops it, inserts N catalogue rows with SQL (as the
server itself would: counters updated to match), restarts the server and measures its resident
memory idle, after full listing walks, and after random HEADs (which read the catalogue only).

Usage: ARCA=target/release/arca python3 bench/server-catalogue.py 10000 1000000
"""
import json, os, random, re, shutil, sqlite3, statistics, subprocess, sys, tempfile, time
import urllib.request

ARCA = os.environ.get("ARCA", "target/release/arca")
PASSWORD = "catalogue bench password"


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def start(data):
    p = subprocess.Popen(
        [ARCA, "server", "--listen", "127.0.0.1:0", "--data-dir", data, "--scrub-every", "0", "--gc-every", "0",
         "--rate-limit", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "ARCA_ADMIN_PASSWORD": PASSWORD})
    for line in p.stdout:
        m = re.search(r"listening on (\S+)", line)
        if m:
            return p, m.group(1)
    raise SystemExit("server did not start")


def admin(base, token, *args):
    env = {**os.environ, "ARCA_SERVER": base, "ARCA_TOKEN": token, "ARCA_ADMIN_PASSWORD": PASSWORD}
    return subprocess.run([ARCA, *args], env=env, check=True, capture_output=True, text=True).stdout


def get(url, token, method="GET"):
    req = urllib.request.Request(url, method=method, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req) as r:
        return r.read()


def measure(n):
    data = tempfile.mkdtemp(prefix="arca-catalogue-")
    try:
        p, base = start(data)
        admin_token = admin(base, "", "admin", "login", "--user", "admin", "--quiet").strip()
        admin(base, admin_token, "admin", "tenant", "create", "bench")
        admin(base, admin_token, "admin", "repo", "create", "--tenant", "bench", "bench")
        dev = json.loads(admin(base, admin_token, "--json", "admin", "device", "add", "--tenant", "bench", "d",
                               "--repo", "bench"))["token"]
        p.terminate(); p.wait()
        db = sqlite3.connect(os.path.join(data, "arca.db"))
        repo_id, tenant_id = db.execute("SELECT id, tenant_id FROM repositories WHERE name = 'bench'").fetchone()
        rnd = random.Random(n)
        names = sorted("%064x" % rnd.getrandbits(256) for _ in range(n))
        now = int(time.time())
        t0 = time.time()
        db.executemany("INSERT INTO objects (repo_id, kind, name, size, created_at) VALUES (?, 'data', ?, 512, ?)",
                       ((repo_id, x, now) for x in names))
        db.execute("UPDATE repositories SET stored_bytes = ?, object_count = ? WHERE id = ?", (512 * n, n, repo_id))
        db.execute("UPDATE tenants SET stored_bytes = ? WHERE id = ?", (512 * n, tenant_id))
        db.commit(); db.close()
        load_s = time.time() - t0
        db_mib = os.path.getsize(os.path.join(data, "arca.db")) / 2**20
        p, base = start(data)
        time.sleep(1)
        out = {"objects": n, "db_mib": round(db_mib, 1), "sql_load_s": round(load_s, 1)}
        out["rss_idle_mib"] = round(rss(p.pid)[0], 1)
        url = f"{base}/v1/repos/bench/data/"
        walk_times = []
        for i in range(5):
            t = time.time(); after = ""; listed = 0
            while True:
                page = json.loads(get(f"{url}?limit=10000" + (f"&after={after}" if after else ""), dev))
                listed += len(page)
                if len(page) < 10000:
                    break
                after = page[-1]["name"]
            walk_times.append(time.time() - t)
            assert listed == n, (listed, n)
            if i == 0:
                out["rss_after_1_walk_mib"] = round(rss(p.pid)[0], 1)
        out["rss_after_5_walks_mib"] = round(rss(p.pid)[0], 1)
        out["walk_s_median"] = round(statistics.median(walk_times), 2)
        lat = []
        for _ in range(20000):
            x = rnd.choice(names)
            t = time.time(); get(f"{url}{x}", dev, "HEAD"); lat.append((time.time() - t) * 1000)
        lat.sort()
        out["rss_after_20k_heads_mib"], out["hwm_mib"] = (round(v, 1) for v in rss(p.pid))
        out["head_ms_median"] = round(lat[len(lat) // 2], 2)
        out["head_ms_p95"] = round(lat[int(len(lat) * 0.95)], 2)
        t = time.time(); page = get(f"{url}?limit=1000&after={names[n // 2]}", dev); out["list_1000_ms"] = round((time.time() - t) * 1000, 1)
        p.terminate(); p.wait()
        return out
    finally:
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    for n in map(int, sys.argv[1:] or ["10000", "1000000"]):
        print(json.dumps(measure(n)), flush=True)
