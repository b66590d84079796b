#!/usr/bin/env python3
"""Step-2 latency benchmark: listing and full-text search over N workflows.

    python3 loadtest/bench-list-search.py                      # start weft, seed 100000, measure
    N=2000 WEFT_BIN=/tmp/weft python3 loadtest/bench-list-search.py
    DATA_DIR=/var/tmp/weft-100k python3 loadtest/bench-list-search.py   # keep/reuse a seeded store
    python3 loadtest/bench-list-search.py --port PORT [--pid PID]   # a server seeded by seed_workflows.py

Without --port it starts `$WEFT_BIN serve --host 127.0.0.1 --port 0 --data-dir
DATA_DIR --store-sync SYNC --scrypt-log-n 10` and seeds it with
seed_workflows.py's content (skipped when DATA_DIR already holds that seeding;
extended when it holds fewer). With --port it uses a running server that
seed_workflows.py seeded with the same -n/--seed/--email/--password.

Request types (one keep-alive HTTP/1.1 connection per client, http.client):

  list          GET /workflows?pageSize=50                 (first page, with tasks)
  list-summary  GET /workflows?pageSize=50&summary=true    (first page, no tasks)
  list-walk     pages 2..DEEP_PAGES, following nextPageToken (one pass per client)
  list-deep     page DEEP_PAGES again and again (its token reused)
  search-rare   GET /workflows/search?query=RARE&pageSize=20
  search-common   ... a word found in a large share of the workflows
  search-two      ... two words (all must match; the last is a prefix, as always)
  search-prefix   ... a 3-letter prefix (search-as-you-type)
  search-common-p10  page 10 of the common-word search (offset paging)

Each type is measured with REQUESTS requests per client at each concurrency in
CONCURRENCY (1 = latency on one connection; 4 = four connections at once),
after WARMUP_REQUESTS unmeasured ones. Latency is client-side wall time from
sending the request to the last byte of the body (perf_counter), so it
includes Python's http.client cost (tens of µs). Every response must be 200;
the first one's result count is checked against the document frequency of the
query computed from the generator (FTS5 unicode61 tokens, last word as prefix).
The target: p99 under 20 ms. A row meets it only with no error and the expected
result count (otherwise it measured another query or a failing one); the script
exits 1 when a row has errors or a wrong count.

Loopback only; every measurement is bounded by --max-seconds.
"""

from __future__ import annotations

import argparse
import atexit
import collections
import datetime
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import seed_workflows as sw  # noqa: E402
from weft_process import WeftProcess, cpu_ticks  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
TARGET_P99_MS = 20.0


def env_int(name, default):
    return int(os.environ.get(name, default))


def other_build():
    r = subprocess.run(["pgrep", "-f", "swift-build|swift-frontend|swiftc |clang|cc1"], capture_output=True)
    return r.returncode == 0


def pct(sorted_vals, q):
    if not sorted_vals:
        return None
    return sorted_vals[min(len(sorted_vals) - 1, max(0, math.ceil(q * len(sorted_vals)) - 1))]


# ------------------------------------------------------------------ server

def Server(weft_bin, data_dir, sync, scrypt_log_n, extra, out_dir):
    """`weft serve` with this benchmark's flags; its log is OUT_DIR/weft-list-search.log."""
    return WeftProcess(weft_bin, data_dir, ["--store-sync", sync, "--scrypt-log-n", str(scrypt_log_n)] + extra,
                       out_dir, "list-search")


# ------------------------------------------------------------------ queries

def pick_queries(n, seed, overrides):
    """Document frequencies from the generator; picks rare/common/two-word/prefix queries."""
    t0 = time.monotonic()
    docs = [frozenset(map(sys.intern, sw.doc_tokens(w))) for w in sw.generate(n, seed)]
    df = collections.Counter()
    for toks in docs:
        df.update(toks)
    objects = [o for o in sw.OBJECTS if o.isalnum()]
    processes = list(sw.PROCESSES)

    def fts_df(query):
        words = "".join(c if c.isalnum() else " " for c in query.lower()).split()
        if not words:
            return 0
        head, last = words[:-1], words[-1]
        expansion = {t for t in df if t.startswith(last)}
        return sum(1 for toks in docs if all(w in toks for w in head) and not expansion.isdisjoint(toks))

    q = {}
    q["common"] = overrides.get("common") or max(objects, key=lambda w: (df[w], w))
    if overrides.get("rare"):
        q["rare"] = overrides["rare"]
    else:
        target = max(3, n // 10_000)
        codes = set(sw.CODENAMES)
        vocab = sorted(df)
        # The query's last word is a prefix: skip codenames that begin a longer token.
        extended = {t for t, nxt in zip(vocab, vocab[1:]) if nxt.startswith(t)}
        cands = [t for t in df if t in codes and t not in extended]
        q["rare"] = min(cands, key=lambda t: (abs(df[t] - target), t)) if cands else "zzzz"
    if overrides.get("two"):
        q["two"] = overrides["two"]
    else:
        top_o = sorted(objects, key=lambda w: -df[w])[:12]
        top_p = sorted(processes, key=lambda w: -df[w])[:12]
        pairs = collections.Counter()
        for toks in docs:
            os_ = [o for o in top_o if o in toks]
            ps_ = [p for p in top_p if p in toks]
            for o in os_:
                for p in ps_:
                    pairs[(o, p)] += 1
        target = max(5, n // 100)  # ~1 % of the workflows
        o, p = min(pairs, key=lambda k: (abs(pairs[k] - target), k)) if pairs else ("invoice", "sync")
        q["two"] = f"{o} {p}"
    if overrides.get("prefix"):
        q["prefix"] = overrides["prefix"]
    else:
        # A 3-letter start of a popular word (search-as-you-type), matching closest to 5 % of the workflows.
        starts = []
        for w in sorted(objects, key=lambda w: -df[w])[:30] + sorted(processes, key=lambda w: -df[w])[:15]:
            if w[:3] not in starts:
                starts.append(w[:3])
        target = n * 0.05
        prefix_df = {p: fts_df(p) for p in starts}
        q["prefix"] = min(starts, key=lambda p: (abs(prefix_df[p] - target), p))
    out = {k: (v, fts_df(v)) for k, v in q.items()}
    print(f"[bench] queries from {n} generated workflows in {time.monotonic() - t0:.1f} s: "
          + ", ".join(f"{k} {v!r} ({d} matches, {100 * d / max(1, n):.2g} %)" for k, (v, d) in out.items()),
          file=sys.stderr)
    return out


# ------------------------------------------------------------------ measuring

def first_json(client, path):
    status, body = client.request("GET", path)
    if status != 200:
        raise SystemExit(f"GET {path}: HTTP {status}: {body[:300]!r}")
    return json.loads(body)


def walk_token(client, base_path, pages):
    """Follows nextPageToken pages-1 times; returns (token of page `pages`, per-page latencies)."""
    token, lats = "", []
    for _ in range(pages - 1):
        path = base_path + (("&pageToken=" + urllib.parse.quote(token)) if token else "")
        t0 = time.perf_counter()
        status, body = client.request("GET", path)
        lats.append(time.perf_counter() - t0)
        if status != 200:
            raise SystemExit(f"GET {path}: HTTP {status}: {body[:300]!r}")
        token = json.loads(body).get("nextPageToken", "")
        if not token:
            return None, lats
    return token, lats


def measure(host, port, token, kind, path, requests, conc, warmup, max_seconds, pid, walk_pages=0):
    """Runs `conc` clients; returns latencies (s), wall time, errors, CPU ticks."""
    lats, errors, first_err = [], 0, [None]
    lock = threading.Lock()
    start = {}

    def at_start():  # run once, when every client has warmed up and before any is released
        start["busy0"], start["c0"], start["t0"] = other_build(), cpu_ticks(pid), time.perf_counter()
    barrier = threading.Barrier(conc + 1, action=at_start)
    cut = [False]

    def client_fn():
        nonlocal errors
        c = sw.Client(host, port, token, timeout=max_seconds + 30)
        mine, errs = [], 0
        try:
            if kind == "walk":
                for _ in range(warmup):
                    c.request("GET", path)
                barrier.wait()
                _, mine = walk_token(c, path, walk_pages + 1)
                mine = mine[1:]  # pages 2..walk_pages
            else:
                for _ in range(warmup):
                    c.request("GET", path)
                barrier.wait()
                end = time.monotonic() + max_seconds
                for _ in range(requests):
                    if time.monotonic() > end:
                        cut[0] = True
                        break
                    t0 = time.perf_counter()
                    status, body = c.request("GET", path)
                    dt = time.perf_counter() - t0
                    if status == 200:
                        mine.append(dt)
                    else:
                        errs += 1
                        if first_err[0] is None:
                            first_err[0] = f"HTTP {status}: {body[:200]!r}"
        except threading.BrokenBarrierError:
            return
        except SystemExit as e:
            errs += 1
            first_err[0] = first_err[0] or str(e)
        finally:
            c.close()
            with lock:
                lats.extend(mine)
                errors += errs

    threads = [threading.Thread(target=client_fn, daemon=True) for _ in range(conc)]
    for t in threads:
        t.start()
    try:
        barrier.wait(timeout=max_seconds + 60)
    except threading.BrokenBarrierError:
        raise SystemExit(f"{path}: warm-up did not finish in time")
    busy0, c0, t0 = start["busy0"], start["c0"], start["t0"]  # taken before the measured requests began
    for t in threads:
        t.join(max_seconds + 60)
    wall = time.perf_counter() - t0
    c1 = cpu_ticks(pid)
    busy = busy0 or other_build()
    return {"lats": sorted(lats), "wall": wall, "errors": errors, "first_error": first_err[0],
            "cpu_ticks": (c1 - c0) if c0 is not None and c1 is not None else None,
            "truncated": cut[0], "contended": busy}


def main():
    ap = argparse.ArgumentParser(description="List/search latency over N seeded workflows (Step 2).",
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="use this running server (default: start WEFT_BIN)")
    ap.add_argument("--pid", type=int, default=0, help="pid of that server, for CPU per request")
    ap.add_argument("-n", type=int, default=env_int("N", 100_000), help="seeded workflows (env N, default 100000)")
    ap.add_argument("--seed", type=int, default=env_int("SEED", 1))
    ap.add_argument("--email", default=os.environ.get("SEED_EMAIL", "seed@bench.weft.test"))
    ap.add_argument("--password", default=os.environ.get("SEED_PASSWORD", "bench-password-1"))
    ap.add_argument("--requests", type=int, default=env_int("REQUESTS", 300), help="per client and type (default 300)")
    ap.add_argument("--concurrency", default=os.environ.get("CONCURRENCY", "1 4"), help='default "1 4"')
    ap.add_argument("--warmup", type=int, default=env_int("WARMUP_REQUESTS", 20), help="unmeasured requests per client")
    ap.add_argument("--page-size", type=int, default=env_int("PAGE_SIZE", 50))
    ap.add_argument("--search-page-size", type=int, default=env_int("SEARCH_PAGE_SIZE", 20))
    ap.add_argument("--deep-pages", type=int, default=env_int("DEEP_PAGES", 50))
    ap.add_argument("--types", default=os.environ.get("TYPES", ""), help="subset of request types (default all)")
    ap.add_argument("--rare", default=os.environ.get("QUERY_RARE"))
    ap.add_argument("--common", default=os.environ.get("QUERY_COMMON"))
    ap.add_argument("--two", default=os.environ.get("QUERY_TWO"))
    ap.add_argument("--prefix", default=os.environ.get("QUERY_PREFIX"))
    ap.add_argument("--max-seconds", type=float, default=float(os.environ.get("MAX_SECONDS", 120)),
                    help="bound per type and concurrency (default 120)")
    ap.add_argument("--seed-threads", type=int, default=env_int("SEED_THREADS", 8))
    ap.add_argument("--seed-timeout", type=float, default=float(os.environ.get("SEED_TIMEOUT", 3600)))
    ap.add_argument("--json", help="also write the results as JSON to this file")
    a = ap.parse_args()

    weft_bin = os.environ.get("WEFT_BIN", ".build/release/weft")
    sync = os.environ.get("SYNC", "normal")
    out_dir = os.environ.get("OUT_DIR") or tempfile.mkdtemp(prefix="weft-bench-ls.", dir="/tmp")
    os.makedirs(out_dir, exist_ok=True)
    data_dir = os.environ.get("DATA_DIR")
    keep = os.environ.get("KEEP_DATA") == "1" or bool(data_dir)
    data_dir = data_dir or os.path.join(out_dir, "data")
    server = None
    n_eff = a.n
    pid = a.pid

    def cleanup():
        if server:
            server.stop()
        if server and not keep:
            shutil.rmtree(data_dir, ignore_errors=True)
    atexit.register(cleanup)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    port = a.port
    if not port:
        if not os.access(weft_bin, os.X_OK):
            raise SystemExit(f"no executable at {weft_bin} (build with: swift build -c release), or pass --port")
        os.makedirs(data_dir, exist_ok=True)
        server = Server(weft_bin, data_dir, sync, env_int("SCRYPT_LOG_N", 10),
                        os.environ.get("WEFT_ARGS", "").split(), out_dir)
        port, pid = server.port, server.pid
        print(f"[bench] weft pid {pid}, port {port}, data {data_dir}, --store-sync {sync}", file=sys.stderr)
        token = sw.login(a.host, port, a.email, a.password)
        marker = os.path.join(data_dir, ".bench-seed.json")
        have = 0
        if os.path.exists(marker):
            m = json.load(open(marker))
            if m.get("seed") == a.seed and m.get("email") == a.email:
                have = int(m.get("n", 0))
            else:
                raise SystemExit(f"{data_dir} was seeded differently ({m}); use another DATA_DIR")
        if have < a.n:
            need = a.n - have
            print(f"[bench] seeding workflows {have}..{a.n - 1} with {a.seed_threads} connections", file=sys.stderr)
            r = sw.seed(a.host, port, token, need, a.seed, a.seed_threads, start=have, timeout=a.seed_timeout)
            print(f"[bench] seeded {r['created']} in {r['elapsed_s']:.1f} s: {r['rate_per_s']:.0f} workflows/s, "
                  f"{r['errors']} errors" + (f" (first: {r['first_error']})" if r["first_error"] else ""),
                  file=sys.stderr)
            if r["created"] != need:
                raise SystemExit("seeding incomplete: the store now holds a partial seeding; use a fresh DATA_DIR")
            have += need
            json.dump({"n": have, "seed": a.seed, "email": a.email}, open(marker, "w"))
        elif have > a.n:
            print(f"[bench] {data_dir} holds {have} seeded workflows (more than -n {a.n}); using {have}",
                  file=sys.stderr)
        n_eff = have
    else:
        token = sw.login(a.host, port, a.email, a.password)

    queries = pick_queries(n_eff, a.seed, {"rare": a.rare, "common": a.common, "two": a.two, "prefix": a.prefix})
    ps, sps = a.page_size, a.search_page_size
    full_pages = n_eff // ps
    if a.deep_pages > full_pages:
        print(f"[bench] note: {n_eff} workflows fill {full_pages} pages of {ps}; deep page {a.deep_pages} -> {full_pages}",
              file=sys.stderr)
        a.deep_pages = max(2, full_pages)
    qs = lambda q: urllib.parse.quote(q)
    list_path = f"/workflows?pageSize={ps}"
    types = [
        ("list", f"first page, pageSize={ps}", list_path, None),
        ("list-summary", f"first page, pageSize={ps}, summary=true", list_path + "&summary=true", None),
        ("list-walk", f"pages 2-{a.deep_pages} following nextPageToken", list_path, None),
        ("list-deep", f"page {a.deep_pages}, token reused", None, None),
        ("search-rare", f"rare word {queries['rare'][0]!r}", f"/workflows/search?query={qs(queries['rare'][0])}&pageSize={sps}",
         queries["rare"][1]),
        ("search-common", f"common word {queries['common'][0]!r}",
         f"/workflows/search?query={qs(queries['common'][0])}&pageSize={sps}", queries["common"][1]),
        ("search-two", f"two words {queries['two'][0]!r}", f"/workflows/search?query={qs(queries['two'][0])}&pageSize={sps}",
         queries["two"][1]),
        ("search-prefix", f"prefix {queries['prefix'][0]!r}",
         f"/workflows/search?query={qs(queries['prefix'][0])}&pageSize={sps}", queries["prefix"][1]),
        ("search-common-p10", f"common word, page 10 (offset {9 * sps})", None, queries["common"][1]),
    ]
    if a.types:
        want = a.types.replace(",", " ").split()
        types = [t for t in types if t[0] in want]

    # Resolve tokens and check the first response of every type.
    count_problem = {}  # type -> why its first response does not have the expected results
    c = sw.Client(a.host, port, token)
    for i, (name, label, path, matches) in enumerate(types):
        if name == "list-deep":
            tok, _ = walk_token(c, list_path, a.deep_pages)
            if tok is None:
                print(f"[bench] warning: fewer than {a.deep_pages} pages; list-deep skipped", file=sys.stderr)
                types[i] = None
                continue
            path = f"{list_path}&pageToken={urllib.parse.quote(tok)}"
        elif name == "search-common-p10":
            base = f"/workflows/search?query={qs(queries['common'][0])}&pageSize={sps}"
            tok, _ = walk_token(c, base, 10)
            if tok is None:
                print("[bench] warning: the common-word search has fewer than 10 pages; skipped", file=sys.stderr)
                types[i] = None
                continue
            path = f"{base}&pageToken={urllib.parse.quote(tok)}"
        if name == "list-walk":
            types[i] = (name, label, path, matches, None)
            continue
        d = first_json(c, path)
        items = d.get("results", d.get("workflows", []))
        got = len(items)
        if name.startswith("search") and matches is not None:
            expect = min(sps, max(0, matches - (9 * sps if name.endswith("p10") else 0)))
            if got != expect:
                count_problem[name] = f"{got} results on the page, expected {expect} from {matches} generated matches"
                print(f"[bench] warning: {name}: {count_problem[name]} (is the server seeded with -n {n_eff} "
                      f"--seed {a.seed}?)", file=sys.stderr)
        if name in ("list", "list-summary") and got != min(ps, n_eff):
            count_problem[name] = f"{got} workflows on the first page, expected {min(ps, n_eff)}"
            print(f"[bench] warning: {name}: {count_problem[name]}", file=sys.stderr)
        if name == "list-summary" and any(w.get("tasks") for w in items):
            count_problem[name] = "summary=true still returned tasks"
            print("[bench] warning: summary=true still returned tasks", file=sys.stderr)
        types[i] = (name, label, path, matches, got)
    c.close()
    types = [t for t in types if t]

    rows = []
    for conc in [int(x) for x in a.concurrency.split()]:
        for name, label, path, matches, got in types:
            walk = name == "list-walk"
            r = measure(a.host, port, token, "walk" if walk else "get", path, a.requests, conc,
                        0 if walk else a.warmup, a.max_seconds, pid, walk_pages=a.deep_pages)
            lats = r["lats"]
            n_ok = len(lats)
            ms = lambda v: None if v is None else v * 1e3
            row = {
                "type": name, "what": label, "concurrency": conc, "requests": n_ok, "errors": r["errors"],
                "results": got, "matches": matches,
                "p50_ms": ms(pct(lats, 0.50)), "p95_ms": ms(pct(lats, 0.95)), "p99_ms": ms(pct(lats, 0.99)),
                "max_ms": ms(lats[-1] if lats else None),
                "req_per_s": (n_ok / r["wall"]) if r["wall"] > 0 else None,
                "cpu_us_per_req": (r["cpu_ticks"] / CLK_TCK * 1e6 / n_ok) if r["cpu_ticks"] is not None and n_ok else None,
                "truncated": r["truncated"], "contended": r["contended"], "first_error": r["first_error"],
                "count_problem": count_problem.get(name),
            }
            rows.append(row)
            print(f"[bench] c={conc} {name}: {n_ok} ok, p50 {row['p50_ms'] or 0:.2f} ms, "
                  f"p99 {row['p99_ms'] or 0:.2f} ms" + (f", {r['errors']} errors ({r['first_error']})" if r["errors"] else "")
                  + (" TRUNCATED" if r["truncated"] else ""), file=sys.stderr)

    # ------------------------------------------------------------------ report
    fmt = lambda v, s, unit="": "n/a" if v is None else format(v, s) + unit
    print()
    print(f"Weft list/search latency, {datetime.date.today().isoformat()}, {platform.machine()}, {os.cpu_count()} cores, "
          f"{os.path.basename(weft_bin) if server else f'server on port {port}'}; {n_eff} workflows (seed {a.seed}), "
          f"{a.requests} requests per client and type after {a.warmup} warm-up, HTTP/1.1 keep-alive, "
          f"client-side latency (Python http.client).")
    print()
    print("| request | what | clients | n | results | matches | p50 | p95 | p99 | max | req/s | server CPU / req | p99 < 20 ms |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|")
    for r in rows:
        ok = (r["p99_ms"] is not None and r["p99_ms"] < TARGET_P99_MS and not r["errors"] and r["requests"]
              and not r["count_problem"])
        print("| %s | %s | %d | %d%s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            r["type"], r["what"], r["concurrency"], r["requests"],
            (" (%d err)" % r["errors"]) if r["errors"] else "",
            "" if r["results"] is None else r["results"], "" if r["matches"] is None else r["matches"],
            fmt(r["p50_ms"], ".2f", " ms"), fmt(r["p95_ms"], ".2f", " ms"), fmt(r["p99_ms"], ".2f", " ms"),
            fmt(r["max_ms"], ".2f", " ms"), fmt(r["req_per_s"], ".0f"), fmt(r["cpu_us_per_req"], ".0f", " µs"),
            "yes" if ok else "**no**" + (" (errors)" if r["errors"] else " (wrong results)" if r["count_problem"] else "")))
    print()
    print("`results` = items on the measured page; `matches` = workflows matching the query in the generated data."
          + (" `list-walk` is one pass per client over pages 2-%d (its n is the page count)." % a.deep_pages
             if any(r["type"] == "list-walk" for r in rows) else ""))
    for r in rows:
        if r["errors"] or r["count_problem"]:
            print(f"Not a valid measurement: {r['type']} with {r['concurrency']} client(s): "
                  + "; ".join(x for x in ((f"{r['errors']} errors (first: {r['first_error']})" if r["errors"] else ""),
                                          r["count_problem"] or "") if x) + ".")
    if any(r["truncated"] for r in rows):
        print("Some measurements hit --max-seconds and were cut short (n is lower than requested).")
    if any(r["contended"] for r in rows):
        print("Contended: a compiler process was running during some measurements; rerun on an idle machine.")
    tsv = os.path.join(out_dir, "results.tsv")
    with open(tsv, "w") as f:
        keys = list(rows[0].keys()) if rows else []
        f.write("\t".join(keys) + "\n")
        for r in rows:
            f.write("\t".join("" if r[k] is None else str(r[k]) for k in keys) + "\n")
    if a.json:
        json.dump({"n": n_eff, "seed": a.seed, "queries": queries, "rows": rows}, open(a.json, "w"), indent=1)
    print(f"\nRaw results: {tsv}")
    return 0 if all(not r["errors"] and not r["count_problem"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
