#!/usr/bin/env python3
"""Check Weft's Grafana dashboards and extract their PromQL.

Usage:
  check_dashboards.py [--dir DIR | FILE.json ...] [--exprs] [--promtool [PATH]]
                      [--query URL]

Without options it validates the structure of every dashboards/*.json
(uid, title, panels, targets with expr, template variables) and prints a
one-line summary per file.

  --exprs        print every PromQL expression, one per line, with Grafana
                 variables substituted so a plain Prometheus accepts it:
                 $__rate_interval / $__interval / $__range -> 1m, and any
                 dashboard variable ($var, ${var}, ${var:fmt}, [[var]]) -> .*
                 with its matcher turned into a regex matcher (= -> =~,
                 != -> !~).
  --var NAME=VALUE
                 substitute VALUE for the dashboard variable NAME instead of
                 .* (repeatable): a plain matcher (label="$NAME") keeps its
                 = or !=, in a regex matcher the value is regex-escaped.
                 Applies to --exprs, --promtool and --query.
  --promtool     write the expressions into a temporary rules file as
                 recording rules (record: check:expr_N) and run
                 `promtool check rules` on it, so each expression is parsed
                 by Prometheus' own parser. Optional PATH of promtool.
  --query URL    evaluate every expression against a running Prometheus
                 (e.g. http://127.0.0.1:9090) via /api/v1/query and fail if
                 any query returns an error (an empty result is fine).

Exit status: 0 when everything passed, 1 on a validation, parse or query
failure, 2 on a usage error. Only the standard library is used.
"""

import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request

BUILTIN_INTERVALS = ("__rate_interval", "__interval", "__range")
# Other Grafana built-ins that might appear in an expression.
BUILTIN_SCALARS = {
    "__interval_ms": "60000",
    "__range_ms": "60000",
    "__range_s": "60",
}

_VAR_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
# $var, ${var}, ${var:format}, [[var]], [[var:format]]
_VAR_RE = re.compile(
    r"\$\{(?P<b>" + _VAR_NAME + r")(?::[^}]*)?\}"
    r"|\[\[(?P<k>" + _VAR_NAME + r")(?::[^\]]*)?\]\]"
    r"|\$(?P<p>" + _VAR_NAME + r")"
)
# label="...$var...", label!="...", label=~"..." or label!~"..." (a matcher
# that may hold a variable)
_MATCHER_RE = re.compile(
    r"(?P<label>" + _VAR_NAME + r")\s*(?P<op>!=|=~|!~|=)(?![=~])\s*\"(?P<val>[^\"]*)\""
)
# RE2 metacharacters, escaped when a --var value goes into a regex matcher.
_REGEX_META = re.compile(r"([\\.+*?()|\[\]{}^$])")


def _var_name(m):
    return m.group("b") or m.group("k") or m.group("p")


def _promql_string(text):
    """Escape text for the inside of a PromQL double-quoted string."""
    return text.replace("\\", "\\\\").replace('"', '\\"')


def substitute(expr, values=None):
    """Turn a Grafana PromQL template into plain PromQL.

    `values` maps dashboard variable names to the value to use (as if that
    single value were selected); any other variable becomes `.*`."""
    values = values or {}

    def fix_matcher(m):
        val, op = m.group("val"), m.group("op")
        names = [_var_name(v) for v in _VAR_RE.finditer(val)]
        if not names:
            return m.group(0)
        if op in ("=", "!=") and all(n in values for n in names):
            # Every variable has a value: the matcher stays exact.
            val = _VAR_RE.sub(lambda v: _promql_string(values[_var_name(v)]), val)
            return '%s%s"%s"' % (m.group("label"), op, val)
        op = {"=": "=~", "!=": "!~"}.get(op, op)

        def regex_value(v):
            name = _var_name(v)
            if name in values:
                return _promql_string(_REGEX_META.sub(r"\\\1", values[name]))
            return v.group(0)  # replaced by .* below

        return '%s%s"%s"' % (m.group("label"), op, _VAR_RE.sub(regex_value, val))

    expr = _MATCHER_RE.sub(fix_matcher, expr)

    def repl(m):
        name = _var_name(m)
        if name in BUILTIN_INTERVALS:
            return "1m"
        if name in BUILTIN_SCALARS:
            return BUILTIN_SCALARS[name]
        if name in values:
            return values[name]
        return ".*"

    return _VAR_RE.sub(repl, expr)


def iter_panels(panels):
    for p in panels or []:
        yield p
        # Collapsed rows keep their children in "panels".
        if p.get("type") == "row":
            yield from iter_panels(p.get("panels"))


# --- grafana/dashboard-linter's rules (github.com/grafana/dashboard-linter),
# implemented here over the JSON so the check needs no Go toolchain. Rule
# names are the linter's; `LINT_EXCLUSIONS` plays the part of its .lint file.

_AGGREGATIONS = {"sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile",
                 "count_values", "group"}
_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool",
             "offset", "inf", "nan"} | _AGGREGATIONS
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_LABEL_LISTS = ("by", "without", "on", "ignoring", "group_left", "group_right")

# (dashboard file name, panel title, rule): why the rule does not apply.
LINT_EXCLUSIONS = {
    **{("weft-operations.json", title, rule):
       "the blackbox exporter's series: their job is the probe job ($probe_job), their instance the probed target"
       for title in ("Black-box availability (30 d)", "Probe budget left (30 d)", "Probe success by target and module",
                     "Probe duration")
       for rule in ("target-job-rule", "target-instance-rule")},
    ("weft-cost.json", "Projected cost per 30 days", "target-rate-interval-rule"):
        "an hour's rate projected to 30 days: the window is the method, not the graph's resolution",
    ("weft-rpc.json", "In-flight RPCs per method", "target-counter-agg-rule"):
        "started minus handled is the calls in flight now: the counters' values, not their rates",
}


def _closing(expr, i, closer):
    """The index of `closer` after expr[i], skipping quoted strings ("…", '…', `…`)."""
    j = i + 1
    while j < len(expr):
        c = expr[j]
        if c in "\"'`":
            j += 1
            while j < len(expr) and expr[j] != c:
                j += 2 if expr[j] == "\\" and c != "`" else 1
        elif c == closer:
            return j
        j += 1
    raise ValueError("no %r after position %d in %r" % (closer, i, expr))


def selectors(expr):
    """The vector selectors of a PromQL expression: (metric name, matcher text,
    function the selector is the direct argument of or None, range or None)."""
    found = []
    i, n = 0, len(expr)
    parens = []  # per open parenthesis: (is a label list, function name or None)
    last = ""
    while i < n:
        c = expr[i]
        if c in "\"'`":
            j = i + 1
            while j < n and expr[j] != c:
                j += 2 if expr[j] == "\\" and c != "`" else 1
            i = j + 1
            last = '""'
            continue
        if c in "[{":
            i = _closing(expr, i, "]" if c == "[" else "}") + 1
            continue
        if c == "(":
            parens.append((last in _LABEL_LISTS, last if _IDENT.fullmatch(last or "-") else None))
            last = "("
            i += 1
            continue
        if c == ")":
            if parens:
                parens.pop()
            last = ")"
            i += 1
            continue
        if c == "$":
            m = re.match(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?", expr[i:])
            i += len(m.group(0)) if m else 1
            continue
        m = _IDENT.match(expr, i)
        if m and (i == 0 or not (expr[i - 1].isalnum() or expr[i - 1] in "._")):
            word, j = m.group(0), m.end()
            k = j
            while k < n and expr[k] == " ":
                k += 1
            in_labels = bool(parens and parens[-1][0])
            if in_labels or word.lower() in _KEYWORDS or (k < n and expr[k] == "("):
                last = word.lower() if word.lower() in _KEYWORDS else word
                i = j
                continue
            matchers, rng = "", None
            if k < n and expr[k] == "{":
                close = _closing(expr, k, "}")
                matchers, k = expr[k + 1:close], close + 1
            r = re.match(r"\s*\[([^\]]+)\]", expr[k:])
            if r:
                rng = r.group(1)
            function = parens[-1][1] if parens else None
            found.append((word, matchers, function, rng))
            last = word
            i = j
            continue
        if m:
            i = m.end()
            last = m.group(0)
            continue
        if not c.isspace():
            last = c
        i += 1
    return found


def lint(path, dash):
    """grafana/dashboard-linter's rules for one dashboard; a list of errors."""
    name = os.path.basename(path)
    errors = []

    def excluded(title, rule):
        return (name, title, rule) in LINT_EXCLUSIONS

    queried = [p for p in iter_panels(dash.get("panels", [])) if isinstance(p, dict) and p.get("type") not in ("row", "text")]
    if not queried:
        return []  # text only (Weft / Runbook): no queries, so no variables or targets to lint
    variables = {v.get("name"): v for v in dash.get("templating", {}).get("list", []) if isinstance(v, dict)}
    ds = variables.get("datasource")
    if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        errors.append("template-datasource-rule: no `datasource` variable of type datasource for prometheus")
    for var in ("job", "instance"):
        v = variables.get(var)
        if not v or v.get("type") != "query":
            errors.append("template-%s-rule: no `%s` query variable" % (var, var))
            continue
        if (v.get("datasource") or {}).get("uid") not in ("${datasource}", "$datasource"):
            errors.append("template-%s-rule: `%s` does not query the `datasource` variable" % (var, var))
        if not v.get("multi") or not v.get("includeAll"):
            errors.append("template-%s-rule: `%s` must allow several values and All" % (var, var))
    for p in queried:
        title = p.get("title") or "<untitled>"
        where = "panel %r" % title
        if (p.get("datasource") or {}).get("uid") not in ("${datasource}", "$datasource"):
            errors.append("panel-datasource-rule: %s does not use the `datasource` variable" % where)
        if not (p.get("description") or "").strip():
            errors.append("panel-title-description-rule: %s has no description" % where)
        if p.get("type") in ("timeseries", "stat", "gauge", "bargauge") and not (
                (p.get("fieldConfig") or {}).get("defaults", {}).get("unit")):
            errors.append("panel-units-rule: %s has no unit" % where)
        for t in p.get("targets", []):
            expr = t.get("expr") if isinstance(t, dict) else None
            if not isinstance(expr, str):
                continue
            for metric, matchers, function, rng in selectors(expr):
                if 'job=~"$job"' not in matchers and not excluded(title, "target-job-rule"):
                    errors.append("target-job-rule: %s: %s has no job=~\"$job\"" % (where, metric))
                # Recording rules of the SLO are aggregated by job: no instance left.
                if not metric.startswith("weft:") and 'instance=~"$instance"' not in matchers \
                        and not excluded(title, "target-instance-rule"):
                    errors.append("target-instance-rule: %s: %s has no instance=~\"$instance\"" % (where, metric))
                if rng is not None and function in ("rate", "irate", "increase") \
                        and rng not in ("$__rate_interval", "$__range") \
                        and not excluded(title, "target-rate-interval-rule"):
                    errors.append("target-rate-interval-rule: %s: %s(%s[%s]) should use $__rate_interval"
                                  % (where, function, metric, rng))
                if metric.endswith("_total") and function not in ("rate", "irate", "increase", "resets", "changes") \
                        and not excluded(title, "target-counter-agg-rule"):
                    errors.append("target-counter-agg-rule: %s: the counter %s is not in rate/irate/increase"
                                  % (where, metric))
    return ["%s: %s" % (path, e) for e in errors]


def check_dashboard(path, seen_uids):
    """Return (errors, [(panel title, raw expr)])."""
    errors = []
    exprs = []

    def err(msg):
        errors.append("%s: %s" % (path, msg))

    try:
        with open(path, encoding="utf-8") as f:
            dash = json.load(f)
    except (OSError, ValueError) as e:
        err("cannot load JSON: %s" % e)
        return errors, exprs
    if not isinstance(dash, dict):
        err("top level is not an object")
        return errors, exprs

    uid = dash.get("uid")
    if not isinstance(uid, str) or not uid:
        err("missing or empty uid")
    elif len(uid) > 40:
        err("uid %r is longer than 40 characters" % uid)
    elif uid in seen_uids:
        err("uid %r also used by %s" % (uid, seen_uids[uid]))
    else:
        seen_uids[uid] = path
    if not isinstance(dash.get("title"), str) or not dash["title"].strip():
        err("missing or empty title")
    if not isinstance(dash.get("schemaVersion"), int):
        err("missing integer schemaVersion")

    variables = {}
    templating = dash.get("templating", {})
    tlist = templating.get("list", []) if isinstance(templating, dict) else None
    if not isinstance(tlist, list):
        err("templating.list is not a list")
        tlist = []
    for v in tlist:
        name = v.get("name") if isinstance(v, dict) else None
        if not isinstance(name, str) or not name:
            err("template variable without a name")
            continue
        if name in variables:
            err("template variable %r defined twice" % name)
        variables[name] = v
        if v.get("type") == "query":
            q = v.get("query")
            qs = q.get("query") if isinstance(q, dict) else q
            if not isinstance(qs, str) or not qs.strip():
                err("query variable %r has no query" % name)

    def check_refs(where, text):
        for m in _VAR_RE.finditer(text):
            name = _var_name(m)
            if name.startswith("__"):
                continue
            if name not in variables:
                err("%s references undefined variable $%s" % (where, name))

    def check_ds(where, ds):
        if isinstance(ds, dict) and isinstance(ds.get("uid"), str):
            check_refs(where + " datasource", ds["uid"])
        elif isinstance(ds, str):
            check_refs(where + " datasource", ds)

    panels = dash.get("panels")
    if not isinstance(panels, list) or not panels:
        err("no panels")
        return errors, exprs

    ids = {}
    for p in iter_panels(panels):
        if not isinstance(p, dict):
            err("panel is not an object")
            continue
        title = p.get("title") or "<untitled>"
        where = "panel %r" % title
        pid = p.get("id")
        if not isinstance(pid, int):
            err("%s has no integer id" % where)
        elif pid in ids:
            err("%s reuses id %d of panel %r" % (where, pid, ids[pid]))
        else:
            ids[pid] = title
        gp = p.get("gridPos")
        if not (isinstance(gp, dict) and all(isinstance(gp.get(k), int) for k in ("h", "w", "x", "y"))):
            err("%s has no complete gridPos" % where)
        elif gp["x"] + gp["w"] > 24:
            err("%s is wider than the 24-column grid" % where)
        if p.get("type") == "row":
            continue
        if not p.get("title"):
            err("panel id %s has no title" % pid)
        if p.get("type") == "text":
            content = (p.get("options") or {}).get("content")
            if not isinstance(content, str) or not content.strip():
                err("%s is a text panel without content" % where)
            continue
        check_ds(where, p.get("datasource"))
        targets = p.get("targets")
        if not isinstance(targets, list) or not targets:
            err("%s has no targets" % where)
            continue
        refids = set()
        for t in targets:
            if not isinstance(t, dict):
                err("%s has a target that is not an object" % where)
                continue
            ref = t.get("refId")
            if ref in refids:
                err("%s has duplicate refId %r" % (where, ref))
            refids.add(ref)
            check_ds(where, t.get("datasource"))
            expr = t.get("expr")
            if not isinstance(expr, str) or not expr.strip():
                err("%s target %r has no expr" % (where, ref))
                continue
            check_refs(where, expr)
            exprs.append((title, expr))
    errors.extend(lint(path, dash))
    return errors, exprs


def run_promtool(exprs, promtool):
    """Parse each expression with promtool via a rules file. Returns bool."""
    fd, path = tempfile.mkstemp(prefix="weft-dash-", suffix=".rules.yml")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("groups:\n  - name: weft_dashboard_exprs\n    rules:\n")
            for i, e in enumerate(exprs):
                # A JSON string is a valid YAML double-quoted scalar.
                f.write("      - record: check:expr_%d\n" % i)
                f.write("        expr: %s\n" % json.dumps(e))
        proc = subprocess.run([promtool, "check", "rules", path],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=60)
        out = proc.stdout.strip()
        if proc.returncode != 0:
            print("promtool check rules failed:\n" + out, file=sys.stderr)
            # Point at the offending expressions when promtool names them.
            for m in re.finditer(r"check:expr_(\d+)", out):
                i = int(m.group(1))
                if i < len(exprs):
                    print("  check:expr_%d = %s" % (i, exprs[i]), file=sys.stderr)
            return False
        print("promtool: %d expressions parsed (%s)" % (len(exprs), out.splitlines()[-1] if out else "ok"),
              file=sys.stderr)
        return True
    finally:
        os.unlink(path)


def run_queries(exprs, base_url):
    ok = True
    url = base_url.rstrip("/") + "/api/v1/query"
    for i, e in enumerate(exprs):
        data = urllib.parse.urlencode({"query": e}).encode()
        try:
            with urllib.request.urlopen(url, data=data, timeout=30) as r:
                body = json.load(r)
        except urllib.error.HTTPError as he:
            try:
                body = json.load(he)
            except ValueError:
                body = {"status": "error", "error": str(he)}
        except (urllib.error.URLError, OSError, ValueError) as ue:
            print("query %d: cannot reach %s: %s" % (i, url, ue), file=sys.stderr)
            return False
        if body.get("status") != "success":
            ok = False
            print("query %d failed: %s\n  %s" % (i, body.get("error"), e), file=sys.stderr)
    if ok:
        print("query: %d expressions evaluated without error at %s" % (len(exprs), base_url), file=sys.stderr)
    return ok


def check_runbook(alerts_path, runbook_path):
    """Every alert of alerts.yml links its own section of docs/RUNBOOK.md (a
    panel of the Weft / Runbook dashboard, weft-runbook.json, titled as the
    alert) and a dashboard of this directory, and every alert section of the
    runbook belongs to an alert."""
    if not os.path.exists(alerts_path) or not os.path.exists(runbook_path):
        return []
    here = os.path.dirname(os.path.abspath(alerts_path))
    alerts_text = open(alerts_path, encoding="utf-8").read()
    runbook = open(runbook_path, encoding="utf-8").read()
    board_path = os.path.join(here, "weft-runbook.json")
    panels = {}
    if os.path.exists(board_path):
        panels = {p.get("id"): p for p in json.load(open(board_path, encoding="utf-8")).get("panels", [])}
    uids = set()
    for path in glob.glob(os.path.join(here, "*.json")):
        try:
            uids.add(json.load(open(path, encoding="utf-8")).get("uid"))
        except ValueError:
            pass
    alerts = re.findall(r"^\s*- alert: (\S+)$", alerts_text, re.M)
    links = re.findall(r"^\s*runbook_url: (\S+)$", alerts_text, re.M)
    boards = re.findall(r"^\s*dashboard_url: (\S+)$", alerts_text, re.M)
    sections = {h for h in re.findall(r"^## (Weft\S+)$", runbook, re.M)}
    errors = []
    if len(links) != len(alerts) or len(boards) != len(alerts):
        errors.append("%s: %d alerts but %d runbook_url and %d dashboard_url annotations"
                      % (alerts_path, len(alerts), len(links), len(boards)))
    for alert, link, board in zip(alerts, links, boards):
        m = re.match(r"^https?://[^/]+.*/d/weft-runbook/weft-runbook\?viewPanel=(\d+)$", link)
        panel = panels.get(int(m.group(1))) if m else None
        if not panel or panel.get("title") != alert:
            errors.append("%s: alert %s: runbook_url %s is not the panel of its section on Weft / Runbook"
                          % (alerts_path, alert, link))
        m = re.match(r"^https?://[^/]+.*/d/([a-z0-9-]+)/[a-z0-9-]+$", board)
        if not m or m.group(1) not in uids:
            errors.append("%s: alert %s: dashboard_url %s names no dashboard of %s" % (alerts_path, alert, board, here))
        if alert not in sections:
            errors.append("%s: no section '## %s' for alert %s" % (runbook_path, alert, alert))
    for section in sorted(sections - set(alerts)):
        errors.append("%s: section '## %s' names no alert of %s" % (runbook_path, section, alerts_path))
    return errors


def main(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="*", help="dashboard JSON files (default: DIR/*.json)")
    ap.add_argument("--dir", default=here, help="directory of dashboards (default: this script's)")
    ap.add_argument("--exprs", action="store_true", help="print substituted PromQL, one per line")
    ap.add_argument("--promtool", nargs="?", const="promtool", default=None, metavar="PATH",
                    help="parse every expression with `promtool check rules`")
    ap.add_argument("--query", metavar="URL", help="evaluate every expression against a Prometheus")
    ap.add_argument("--var", action="append", default=[], metavar="NAME=VALUE",
                    help="value for dashboard variable NAME instead of .* (repeatable)")
    args = ap.parse_args(argv)
    values = {}
    for item in args.var:
        name, sep, value = item.partition("=")
        if not sep or not re.fullmatch(_VAR_NAME, name):
            print("--var wants NAME=VALUE, got %r" % item, file=sys.stderr)
            return 2
        values[name] = value

    files = args.files or sorted(glob.glob(os.path.join(args.dir, "*.json")))
    if not files:
        print("no dashboards found in %s" % args.dir, file=sys.stderr)
        return 1

    failed = False
    seen_uids = {}
    all_exprs = []
    for path in files:
        errors, exprs = check_dashboard(path, seen_uids)
        for e in errors:
            print(e, file=sys.stderr)
        failed = failed or bool(errors)
        print("%s: %s, %d expressions" % (path, "FAIL" if errors else "ok", len(exprs)), file=sys.stderr)
        all_exprs.extend(substitute(e, values) for _, e in exprs)

    if not args.files:
        for e in check_runbook(os.path.join(args.dir, "alerts.yml"),
                               os.path.join(args.dir, os.pardir, "docs", "RUNBOOK.md")):
            print(e, file=sys.stderr)
            failed = True

    # De-duplicate, keeping order.
    uniq = list(dict.fromkeys(all_exprs))
    if args.exprs:
        for e in uniq:
            print(e)
    if args.promtool and uniq:
        promtool = shutil.which(args.promtool) or args.promtool
        if not os.path.exists(promtool):
            print("promtool not found: %s" % args.promtool, file=sys.stderr)
            return 1
        failed = (not run_promtool(uniq, promtool)) or failed
    if args.query and uniq:
        failed = (not run_queries(uniq, args.query)) or failed
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
