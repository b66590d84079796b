"""The weft.v1 REST API of Step 2 (users, workflows, tasks, search) against a
real server: status codes, JSON shapes and errors of every seed route that
this step implements, plus auth, isolation between users, paging, etags,
soft delete, search safety and HTTP/2 (h2c prior knowledge).

The JSON printer may or may not emit fields holding their default value
("" / 0 / [] / false), so absent-or-default is accepted where a value is the
default; everything else is checked exactly.
"""

from __future__ import annotations

import base64
import json
import time
import types
import urllib.parse
import uuid

import pytest

import weft_helpers as wh

ERROR_KEYS = {"code", "message", "details"}


# ---------------------------------------------------------------------------
# Fixtures and helpers
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def alice(api_server):
    return wh.register_and_login(api_server, "Alice Example")


@pytest.fixture(scope="module")
def bob(api_server):
    return wh.register_and_login(api_server, "Bob Example")


def word(prefix: str = "w") -> str:
    """A unique search token: letters only, so the tokenizer keeps it whole."""
    return prefix + "".join(chr(ord("a") + int(c, 16) % 26) for c in uuid.uuid4().hex[:10])


def assert_error(r: wh.RestResponse, status: int, code: int, *fragments: str) -> dict:
    assert r.status == status, r
    assert (r.header("content-type") or "").startswith("application/json"), r.headers
    body = r.json
    assert isinstance(body, dict), body
    assert body.get("code") == code, body
    assert isinstance(body.get("message"), str) and body["message"], body
    assert isinstance(body.get("details", None), list), body
    for fragment in fragments:
        assert fragment in body["message"], (fragment, body)
    return body


def create_wf(user: wh.ApiUser, name: str | None = None, description: str = "", tasks=()) -> dict:
    body = {"name": name or f"wf {word()}", "description": description, "tasks": list(tasks)}
    r = user.rest.post("/workflows", body)
    assert r.status == 201, r
    return r.json


def get_wf(user: wh.ApiUser, wid: str) -> dict:
    r = user.rest.get(f"/workflows/{wid}")
    assert r.status == 200, r
    return r.json


def tasks_of(wf: dict) -> list:
    tasks = wf.get("tasks", [])
    assert isinstance(tasks, list), wf
    return tasks


def list_wf(user: wh.ApiUser, **params) -> dict:
    r = user.rest.get("/workflows?" + urllib.parse.urlencode(params))
    assert r.status == 200, r
    body = r.json
    assert isinstance(body.get("workflows", []), list), body
    return body


def search(user: wh.ApiUser, query: str, **params) -> wh.RestResponse:
    return user.rest.get("/workflows/search?" + urllib.parse.urlencode({"query": query, **params}))


def search_ids(user: wh.ApiUser, query: str) -> list:
    r = search(user, query)
    assert r.status == 200, r
    return [hit["workflow"]["id"] for hit in r.json.get("results", [])]


def assert_recent(ts: str) -> None:
    delta = abs(wh.rfc3339_nanos(ts) / 1e9 - time.time())
    assert delta < 300, f"timestamp {ts} is {delta:.0f}s away from now"


def normalize_times(obj):
    """Timestamps compared as instants (exact to the nanosecond), not as text."""
    if isinstance(obj, dict):
        return {k: (wh.rfc3339_nanos(v) if k in ("createdAt", "updatedAt") else normalize_times(v))
                for k, v in obj.items()}
    if isinstance(obj, list):
        return [normalize_times(v) for v in obj]
    return obj


# ---------------------------------------------------------------------------
# Users
# ---------------------------------------------------------------------------


def test_register_returns_201_and_the_user(anon):
    email = wh.unique_email("reg")
    r = anon.post("/users/register", {"email": email, "password": "password123", "name": "John Doe"})
    assert r.status == 201, r
    assert (r.header("content-type") or "").startswith("application/json")
    user = r.json
    assert user["id"].startswith("usr_"), user
    assert len(user["id"]) > len("usr_")
    assert user["email"] == email
    assert user["name"] == "John Doe"
    assert_recent(user["createdAt"])
    assert_recent(user["updatedAt"])
    assert set(user) <= {"id", "email", "name", "createdAt", "updatedAt"}, "no password or hash in the response"


def test_concurrent_registrations_of_one_email(anon):
    import concurrent.futures

    email = wh.unique_email("race")
    body = {"email": email, "password": "password123", "name": "Racer"}
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: anon.post("/users/register", body), range(8)))
    assert sorted(r.status for r in results) == [201] + [409] * 7, results
    assert all(r.json["code"] == 6 for r in results if r.status == 409)


def test_register_duplicate_email_is_409(anon):
    email = wh.unique_email("dup")
    body = {"email": email, "password": "password123", "name": "First"}
    assert anon.post("/users/register", body).status == 201
    assert_error(anon.post("/users/register", {**body, "name": "Second"}), 409, 6)


@pytest.mark.parametrize(
    "body, field",
    [
        ({"email": "not-an-email", "password": "password123", "name": "N"}, "email"),
        ({"email": "nobody@", "password": "password123", "name": "N"}, "email"),
        ({"email": "@example.com", "password": "password123", "name": "N"}, "email"),
        ({"email": "two words@example.com", "password": "password123", "name": "N"}, "email"),
        ({"password": "password123", "name": "N"}, "email"),
        ({"email": "EMAIL", "password": "1234567", "name": "N"}, "password"),
        ({"email": "EMAIL", "name": "N"}, "password"),
        ({"email": "EMAIL", "password": "password123"}, "name"),
        ({"email": "EMAIL", "password": "password123", "name": "   "}, "name"),
    ],
    ids=["no-at", "no-domain", "no-local", "space", "missing-email", "short-password", "missing-password",
         "missing-name", "blank-name"],
)
def test_register_rejects_bad_input(anon, body, field):
    body = {k: (wh.unique_email("bad") if v == "EMAIL" else v) for k, v in body.items()}
    err = assert_error(anon.post("/users/register", body), 400, 3)
    assert field in err["message"].lower(), err
    if "email" in body and field != "email":
        # Nothing was created: the same email can still register.
        ok = anon.post("/users/register", {"email": body["email"], "password": "password123", "name": "Later"})
        assert ok.status == 201, ok


def test_login_returns_token_expiry_and_user(anon, alice):
    r = anon.post("/users/login", {"email": alice.email, "password": alice.password})
    assert r.status == 200, r
    body = r.json
    assert isinstance(body["token"], str) and len(body["token"]) > 20
    expires = wh.rfc3339_nanos(body["expiresAt"]) / 1e9
    assert expires > time.time() + 60, body["expiresAt"]
    assert body["user"]["id"] == alice.id
    assert body["user"]["email"] == alice.email
    assert body["user"]["name"] == alice.name
    # The new token works.
    me = anon.get("/users/me", headers={"Authorization": f"Bearer {body['token']}"})
    assert me.status == 200, me
    assert me.json["id"] == alice.id


@pytest.mark.parametrize("case", ["wrong-password", "unknown-email", "wrong-case-password"])
def test_login_with_wrong_credentials_is_401(anon, alice, case):
    body = {
        "wrong-password": {"email": alice.email, "password": "not the password"},
        "unknown-email": {"email": wh.unique_email("ghost"), "password": alice.password},
        "wrong-case-password": {"email": alice.email, "password": alice.password.upper()},
    }[case]
    assert_error(anon.post("/users/login", body), 401, 16)


def test_login_does_not_reveal_which_part_was_wrong(anon, alice):
    wrong_pw = assert_error(anon.post("/users/login", {"email": alice.email, "password": "nope-nope"}), 401, 16)
    unknown = assert_error(
        anon.post("/users/login", {"email": wh.unique_email("ghost"), "password": "nope-nope"}), 401, 16)
    assert wrong_pw["message"] == unknown["message"]


def test_users_me_returns_the_caller(alice, bob):
    for user in (alice, bob):
        r = user.rest.get("/users/me")
        assert r.status == 200, r
        me = r.json
        assert me["id"] == user.id
        assert me["email"] == user.email
        assert me["name"] == user.name


def test_user_timestamps_read_back_as_registered(alice):
    """createdAt/updatedAt from register are the same instants GET /users/me reports later."""
    me = alice.rest.get("/users/me").json
    assert wh.rfc3339_nanos(me["createdAt"]) == wh.rfc3339_nanos(alice.user["createdAt"]), (
        me["createdAt"], alice.user["createdAt"])
    assert wh.rfc3339_nanos(me["updatedAt"]) == wh.rfc3339_nanos(alice.user["updatedAt"]), (
        me["updatedAt"], alice.user["updatedAt"])


# ---------------------------------------------------------------------------
# Authentication
# ---------------------------------------------------------------------------

PROTECTED_ROUTES = [
    ("GET", "/users/me"),
    ("POST", "/workflows"),
    ("GET", "/workflows"),
    ("GET", "/workflows/search?query=x"),
    ("GET", "/workflows/wf_x"),
    ("PUT", "/workflows/wf_x"),
    ("DELETE", "/workflows/wf_x"),
    ("POST", "/tasks"),
    ("GET", "/workflows/wf_x/tasks"),
    ("GET", "/tasks/tsk_x"),
    ("PUT", "/tasks/tsk_x"),
    ("DELETE", "/tasks/tsk_x"),
    ("POST", "/workflows/wf_x/execute"),
    ("GET", "/workflows/wf_x/executions/exe_x"),
    ("GET", "/workflows/wf_x/executions/exe_x/logs"),
    ("GET", "/analytics/workflow-executions"),
]


@pytest.mark.parametrize("method, path", PROTECTED_ROUTES, ids=[f"{m} {p}" for m, p in PROTECTED_ROUTES])
def test_routes_need_a_bearer_token(anon, method, path):
    body = {} if method in ("POST", "PUT") else None
    r = anon.request(method, path, body)
    err = assert_error(r, 401, 16)
    assert set(err) == ERROR_KEYS, err
    assert err["details"] == []


def _b64(obj) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def _bad_tokens(alice: wh.ApiUser) -> dict:
    header, payload, sig = alice.token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    now = int(time.time())
    expired = {**claims, "iat": now - 7200, "exp": now - 3600}
    return {
        "garbage": "Bearer garbage",
        "empty": "Bearer ",
        "no-scheme": alice.token,
        "basic": "Basic " + base64.b64encode(f"{alice.email}:{alice.password}".encode()).decode(),
        "bad-signature": f"Bearer {header}.{payload}.{sig[:-4]}AAAA",
        "tampered-subject": f"Bearer {header}.{_b64({**claims, 'sub': 'usr_someone_else'})}.{sig}",
        "expired-looking": f"Bearer {header}.{_b64(expired)}.{sig}",
        "alg-none": f"Bearer {_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}.",
        "two-parts": f"Bearer {header}.{payload}",
    }


@pytest.mark.parametrize("kind", ["garbage", "empty", "no-scheme", "basic", "bad-signature", "tampered-subject",
                                  "expired-looking", "alg-none", "two-parts"])
def test_bad_tokens_are_401(anon, alice, kind):
    value = _bad_tokens(alice)[kind]
    for path in ("/users/me", "/workflows"):
        assert_error(anon.get(path, headers={"Authorization": value}), 401, 16)
    # The real token still works.
    assert alice.rest.get("/users/me").status == 200


def test_bearer_scheme_is_case_insensitive(anon, alice):
    r = anon.get("/users/me", headers={"Authorization": f"bearer {alice.token}"})
    assert r.status == 200, r
    assert r.json["id"] == alice.id


# ---------------------------------------------------------------------------
# Workflows: create / get
# ---------------------------------------------------------------------------

FULL_TASKS = [
    {"name": "Fetch order", "action": "http", "description": "GET the order",
     "config": {"url": "https://example.com/orders/1", "method": "GET"},
     "retry": {"maxAttempts": 3, "initialBackoff": "1s", "maxBackoff": "30s", "backoffMultiplier": 2.0,
               "jitter": 0.2, "retryableErrors": ["timeout", "http_5xx"]},
     "timeout": "30s"},
    {"key": "log", "name": "Log it", "action": "log", "config": {"message": "fetched", "level": "Info"},
     "dependsOn": ["fetch_order"]},
]


def test_create_workflow_returns_201_and_full_shape(alice):
    r = alice.rest.post("/workflows", {"name": "Sample Workflow", "description": "This is a sample workflow.",
                                        "tasks": FULL_TASKS})
    assert r.status == 201, r
    assert r.header("etag") == '"1"', r.headers
    wf = r.json
    assert wf["id"].startswith("wf_"), wf
    assert wf["name"] == "Sample Workflow"
    assert wf["description"] == "This is a sample workflow."
    assert wf["ownerId"] == alice.id
    assert wf["version"] == 1
    assert wf["etag"] == "1"
    assert wf["role"] == "owner"
    assert_recent(wf["createdAt"])
    assert wh.rfc3339_nanos(wf["updatedAt"]) >= wh.rfc3339_nanos(wf["createdAt"])

    tasks = tasks_of(wf)
    assert [t["key"] for t in tasks] == ["fetch_order", "log"]
    assert len({t["id"] for t in tasks}) == 2
    for t in tasks:
        assert t["id"].startswith("tsk_"), t
        assert t["workflowId"] == wf["id"]
        assert_recent(t["createdAt"])
        assert_recent(t["updatedAt"])
    fetch, log = tasks
    assert fetch["name"] == "Fetch order"
    assert fetch["description"] == "GET the order"
    assert fetch["action"] == "http"
    assert fetch["config"] == {"url": "https://example.com/orders/1", "method": "GET"}
    assert fetch.get("dependsOn", []) == []
    retry = fetch["retry"]
    assert retry["maxAttempts"] == 3
    assert retry["initialBackoff"] == "1s"
    assert retry["maxBackoff"] == "30s"
    assert retry["backoffMultiplier"] == 2.0
    assert retry["jitter"] == pytest.approx(0.2)
    assert retry["retryableErrors"] == ["timeout", "http_5xx"]
    assert fetch["timeout"] == "30s"
    assert log["name"] == "Log it"
    assert log["action"] == "log"
    assert log["config"] == {"message": "fetched", "level": "Info"}
    assert log["dependsOn"] == ["fetch_order"]
    assert log.get("description", "") == ""


def test_get_workflow_returns_what_create_returned(alice):
    created = alice.rest.post("/workflows", {"name": "Round trip", "description": "d", "tasks": FULL_TASKS})
    assert created.status == 201, created
    r = alice.rest.get(f"/workflows/{created.json['id']}")
    assert r.status == 200, r
    assert r.header("etag") == '"1"', r.headers
    assert normalize_times(r.json) == normalize_times(created.json)


def test_create_workflow_without_tasks(alice):
    wf = create_wf(alice, "Empty one")
    assert tasks_of(wf) == []
    assert wf.get("description", "") == ""
    again = get_wf(alice, wf["id"])
    assert tasks_of(again) == []
    assert again["name"] == "Empty one"


@pytest.mark.parametrize(
    "name, key",
    [("Fetch order", "fetch_order"), ("Log it", "log_it"), ("send   Email!", "send_email"),
     ("Step 2: Transform", "step_2_transform")],
)
def test_task_key_defaults_to_a_slug_of_the_name(alice, name, key):
    wf = create_wf(alice, tasks=[{"name": name, "action": "noop"}])
    assert tasks_of(wf)[0]["key"] == key


def test_every_task_type_is_accepted(alice):
    tasks = [
        {"key": "start", "name": "Start", "action": "noop"},
        {"key": "say", "name": "Say", "action": "log", "config": {"message": "hi"}, "dependsOn": ["start"]},
        {"key": "call", "name": "Call", "action": "http", "config": {"url": "http://example.com/hook"},
         "dependsOn": ["start"]},
        {"key": "wait", "name": "Wait", "action": "delay", "config": {"duration": "5s"}, "dependsOn": ["call"]},
        {"key": "later", "name": "Later", "action": "delay", "config": {"until": "2030-01-01T00:00:00Z"},
         "dependsOn": ["call"]},
        {"key": "shape", "name": "Shape", "action": "transform", "config": {"output": {"ok": True, "n": 1}},
         "dependsOn": ["wait"]},
        {"key": "check", "name": "Check", "action": "condition",
         "config": {"expression": "{{ tasks.shape.output.ok }}", "then": ["yes"], "else": ["no"]},
         "dependsOn": ["shape"]},
        {"key": "yes", "name": "Yes", "action": "external", "config": {"queue": "billing.jobs"},
         "dependsOn": ["check"]},
        {"key": "no", "name": "No", "action": "noop", "dependsOn": ["check"]},
    ]
    r = alice.rest.post("/workflows", {"name": "All types", "tasks": tasks})
    assert r.status == 201, r
    got = tasks_of(r.json)
    assert [t["key"] for t in got] == [t["key"] for t in tasks]
    assert [t["action"] for t in got] == [t["action"] for t in tasks]
    for sent, back in zip(tasks, got):
        assert back.get("config", {}) == sent.get("config", {}), back
        assert back.get("dependsOn", []) == sent.get("dependsOn", []), back


def _t(key, action="noop", config=None, depends=(), **extra):
    task = {"key": key, "name": key, "action": action}
    if config is not None:
        task["config"] = config
    if depends:
        task["dependsOn"] = list(depends)
    task.update(extra)
    return task


INVALID_DEFINITIONS = {
    "unknown-action": [_t("a", "teleport")],
    "unknown-config-key": [_t("a", "noop", {"bogus": 1})],
    "unknown-config-key-http": [_t("a", "http", {"url": "https://x.example", "verb": "GET"})],
    "duplicate-key": [_t("a"), _t("a")],
    "depends-on-unknown": [_t("a", depends=["ghost"])],
    "cycle": [_t("a", depends=["b"]), _t("b", depends=["a"])],
    "long-cycle": [_t("a", depends=["c"]), _t("b", depends=["a"]), _t("c", depends=["b"])],
    "self-dependency": [_t("a", depends=["a"])],
    "http-without-url": [_t("a", "http", {})],
    "http-ftp-url": [_t("a", "http", {"url": "ftp://example.com/file"})],
    "delay-without-duration": [_t("a", "delay", {})],
    "delay-bad-duration": [_t("a", "delay", {"duration": "soon"})],
    "delay-both": [_t("a", "delay", {"duration": "5s", "until": "2030-01-01T00:00:00Z"})],
    "delay-until-not-a-time": [_t("a", "delay", {"until": "tomorrow"})],
    "transform-without-output": [_t("a", "transform", {})],
    "condition-without-expression": [_t("a", "condition", {"then": []})],
    "condition-branch-not-dependent": [_t("a", "condition", {"expression": "true", "then": ["b"]}), _t("b")],
    "condition-branch-unknown": [_t("a", "condition", {"expression": "true", "else": ["zzz"]})],
    "external-without-queue": [_t("a", "external", {})],
    "retry-too-many-attempts": [_t("a", retry={"maxAttempts": 101})],
    "retry-unknown-error-kind": [_t("a", retry={"maxAttempts": 2, "retryableErrors": ["gremlins"]})],
    "negative-timeout": [_t("a", timeout="-1s")],
    "bad-key": [_t("a"), {"key": "1bad key", "name": "x", "action": "noop"}],
}


@pytest.mark.parametrize("case", sorted(INVALID_DEFINITIONS))
def test_invalid_definitions_are_400_naming_the_task(alice, case):
    tasks = INVALID_DEFINITIONS[case]
    prefix = word("inv")
    r = alice.rest.post("/workflows", {"name": f"{prefix} bad", "tasks": tasks})
    err = assert_error(r, 400, 3)
    if case == "bad-key":
        assert "1bad key" in err["message"], err
    else:
        assert '"a"' in err["message"], err
    # Nothing was stored.
    assert list_wf(alice, namePrefix=prefix).get("workflows", []) == []


@pytest.mark.parametrize("body", [{"name": "", "tasks": []}, {"name": "   "}, {"description": "no name"}],
                         ids=["empty", "blank", "missing"])
def test_workflow_name_is_required(alice, body):
    assert_error(alice.rest.post("/workflows", body), 400, 3)


def test_task_without_action_is_400(alice):
    assert_error(alice.rest.post("/workflows", {"name": "x", "tasks": [{"name": "a"}]}), 400, 3)


def test_get_unknown_workflow_is_404(alice):
    err = assert_error(alice.rest.get("/workflows/wf_00000000000000000000000000"), 404, 5)
    assert "no route" not in err["message"]


# ---------------------------------------------------------------------------
# Workflows: list and paging
# ---------------------------------------------------------------------------


def test_list_is_newest_first_with_filters(alice, bob):
    prefix = word("lst")
    made = []
    for i in range(3):
        made.append(create_wf(alice, f"{prefix} item {i}", tasks=[{"name": "only", "action": "noop"}]))
        time.sleep(0.01)
    create_wf(bob, f"{prefix} bobs")

    body = list_wf(alice, namePrefix=prefix)
    got = body["workflows"]
    assert [w["id"] for w in got] == [w["id"] for w in reversed(made)]
    assert all(len(tasks_of(w)) == 1 for w in got), "full listing includes the tasks"
    assert body.get("nextPageToken", "") == ""

    # namePrefix is case-insensitive
    upper = list_wf(alice, namePrefix=prefix.upper())["workflows"]
    assert [w["id"] for w in upper] == [w["id"] for w in reversed(made)]

    # summary=true leaves out the tasks but keeps the rest
    summary = list_wf(alice, namePrefix=prefix, summary="true")["workflows"]
    assert [w["id"] for w in summary] == [w["id"] for w in reversed(made)]
    for w, full in zip(summary, got):
        assert w.get("tasks", []) == []
        assert {k: v for k, v in w.items() if k != "tasks"} == {k: v for k, v in full.items() if k != "tasks"}

    # ownerId
    assert len(list_wf(alice, namePrefix=prefix, ownerId="me")["workflows"]) == 3
    assert len(list_wf(alice, namePrefix=prefix, ownerId=alice.id)["workflows"]) == 3
    assert list_wf(alice, namePrefix=prefix, ownerId=bob.id).get("workflows", []) == []

    # an unrelated prefix finds nothing
    assert list_wf(alice, namePrefix=word("none")).get("workflows", []) == []


def test_list_created_after_and_before(alice):
    prefix = word("time")
    made = []
    for i in range(3):
        made.append(create_wf(alice, f"{prefix} {i}"))
        time.sleep(0.05)

    def mid(a, b):
        n = (wh.rfc3339_nanos(a["createdAt"]) + wh.rfc3339_nanos(b["createdAt"])) // 2
        secs, nanos = divmod(n, 1_000_000_000)
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{nanos:09d}Z"

    m01, m12 = mid(made[0], made[1]), mid(made[1], made[2])
    ids = lambda **kw: [w["id"] for w in list_wf(alice, namePrefix=prefix, **kw).get("workflows", [])]  # noqa: E731
    assert ids(createdAfter=m01) == [made[2]["id"], made[1]["id"]]
    assert ids(createdBefore=m12) == [made[1]["id"], made[0]["id"]]
    assert ids(createdAfter=m01, createdBefore=m12) == [made[1]["id"]]
    assert_error(alice.rest.get("/workflows?createdAfter=yesterday"), 400, 3)


def test_pagination_walk_has_no_gaps_or_duplicates(alice):
    prefix = word("page")
    created = [create_wf(alice, f"{prefix} {i:02d}")["id"] for i in range(25)]
    seen, sizes, token, pages = [], [], "", 0
    last_created = None
    while True:
        params = {"namePrefix": prefix, "pageSize": 10}
        if token:
            params["pageToken"] = token
        body = list_wf(alice, **params)
        page = body.get("workflows", [])
        sizes.append(len(page))
        for w in page:
            ts = wh.rfc3339_nanos(w["createdAt"])
            assert last_created is None or ts <= last_created, "newest first across pages"
            last_created = ts
        seen.extend(w["id"] for w in page)
        token = body.get("nextPageToken", "")
        pages += 1
        assert pages <= 5, f"paging does not end: {sizes}"
        if not token:
            break
    assert sizes == [10, 10, 5]
    assert len(seen) == len(set(seen)), "duplicates across pages"
    assert set(seen) == set(created), "gaps across pages"


def test_page_token_is_bound_to_its_query(alice):
    prefix = word("tok")
    for i in range(3):
        create_wf(alice, f"{prefix} {i}")
    body = list_wf(alice, namePrefix=prefix, pageSize=2)
    token = body["nextPageToken"]
    assert token
    # same filters: fine
    nxt = list_wf(alice, namePrefix=prefix, pageSize=2, pageToken=token)
    assert len(nxt["workflows"]) == 1
    # different filters: rejected
    for params in ({"namePrefix": prefix + "x"}, {"namePrefix": prefix, "summary": "true"}, {}):
        r = alice.rest.get("/workflows?" + urllib.parse.urlencode({**params, "pageSize": 2, "pageToken": token}))
        assert_error(r, 400, 3)


def test_page_token_of_another_user_is_rejected(alice, bob):
    prefix = word("tok")
    for i in range(2):
        create_wf(alice, f"{prefix} {i}")
    token = list_wf(alice, namePrefix=prefix, pageSize=1)["nextPageToken"]
    assert token
    r = bob.rest.get("/workflows?" + urllib.parse.urlencode({"namePrefix": prefix, "pageSize": 1, "pageToken": token}))
    assert_error(r, 400, 3)


@pytest.mark.parametrize("token", ["garbage", "AAAA", "%00", "eyJ9"])
def test_garbage_page_token_is_400(alice, token):
    assert_error(alice.rest.get(f"/workflows?pageToken={token}"), 400, 3)


def test_page_size_bounds(alice):
    assert_error(alice.rest.get("/workflows?pageSize=-1"), 400, 3)
    assert_error(alice.rest.get("/workflows?pageSize=ten"), 400, 3)
    r = alice.rest.get("/workflows?pageSize=5000")
    assert r.status == 200, r
    assert len(r.json.get("workflows", [])) <= 1000
    r = alice.rest.get("/workflows?pageSize=1")
    assert r.status == 200, r
    assert len(r.json["workflows"]) == 1


# ---------------------------------------------------------------------------
# Workflows: update (PUT, full replace) and etags
# ---------------------------------------------------------------------------


def test_update_replaces_the_definition_and_keeps_task_ids(alice):
    wf = create_wf(alice, "Before", "old", tasks=[{"name": "Fetch order", "action": "noop"},
                                                 {"name": "Drop me", "action": "noop"}])
    keep, drop = tasks_of(wf)
    time.sleep(0.01)
    r = alice.rest.put(f"/workflows/{wf['id']}", {
        "name": "After", "description": "new",
        "tasks": [{"id": keep["id"], "name": "Fetch order", "action": "log", "config": {"message": "m"}},
                  {"name": "Brand new", "action": "noop", "dependsOn": ["fetch_order"]}],
    })
    assert r.status == 200, r
    assert r.header("etag") == '"2"', r.headers
    up = r.json
    assert up["id"] == wf["id"]
    assert up["name"] == "After"
    assert up["description"] == "new"
    assert up["version"] == 2
    assert up["etag"] == "2"
    assert up["ownerId"] == alice.id
    assert wh.rfc3339_nanos(up["createdAt"]) == wh.rfc3339_nanos(wf["createdAt"])
    assert wh.rfc3339_nanos(up["updatedAt"]) > wh.rfc3339_nanos(wf["updatedAt"])
    t1, t2 = tasks_of(up)
    assert t1["id"] == keep["id"]
    assert t1["action"] == "log"
    assert t1["config"] == {"message": "m"}
    assert wh.rfc3339_nanos(t1["createdAt"]) == wh.rfc3339_nanos(keep["createdAt"])
    assert t2["id"].startswith("tsk_") and t2["id"] not in (keep["id"], drop["id"])
    assert t2["key"] == "brand_new"
    assert t2["dependsOn"] == ["fetch_order"]
    # The replace is what GET returns now; the dropped task is gone.
    again = get_wf(alice, wf["id"])
    assert normalize_times(again) == normalize_times(up)
    assert_error(alice.rest.get(f"/tasks/{drop['id']}"), 404, 5)


def test_update_with_a_task_id_of_another_workflow_is_400(alice):
    a = create_wf(alice, tasks=[{"name": "A task", "action": "noop"}])
    b = create_wf(alice, tasks=[{"name": "B task", "action": "noop"}])
    foreign = tasks_of(a)[0]["id"]
    r = alice.rest.put(f"/workflows/{b['id']}", {"name": "b", "tasks": [{"id": foreign, "name": "x", "action": "noop"}]})
    assert_error(r, 400, 3, foreign)
    assert get_wf(alice, b["id"])["version"] == 1
    assert get_wf(alice, a["id"])["version"] == 1


def test_update_with_invalid_definition_changes_nothing(alice):
    wf = create_wf(alice, "Stable", tasks=[{"name": "one", "action": "noop"}])
    r = alice.rest.put(f"/workflows/{wf['id']}", {"name": "Changed", "tasks": [_t("a", depends=["a"])]})
    assert_error(r, 400, 3, '"a"')
    assert normalize_times(get_wf(alice, wf["id"])) == normalize_times(wf)


def test_update_etag_concurrency(alice):
    wf = create_wf(alice, "Etag")
    path = f"/workflows/{wf['id']}"
    # If-Match with the current etag: fine.
    r = alice.rest.put(path, {"name": "v2"}, headers={"If-Match": '"1"'})
    assert r.status == 200, r
    assert (r.json["version"], r.json["etag"], r.header("etag")) == (2, "2", '"2"')
    # Stale If-Match: 409 ABORTED, nothing changes.
    assert_error(alice.rest.put(path, {"name": "lost"}, headers={"If-Match": '"1"'}), 409, 10)
    # Stale etag in the body: same.
    assert_error(alice.rest.put(path, {"name": "lost", "etag": "1"}), 409, 10)
    # A nonsense etag can never match.
    assert_error(alice.rest.put(path, {"name": "lost", "etag": "banana"}), 409, 10)
    assert get_wf(alice, wf["id"])["name"] == "v2"
    # Current etag in the body: fine.
    r = alice.rest.put(path, {"name": "v3", "etag": "2"})
    assert r.status == 200, r
    assert r.json["version"] == 3
    # No etag at all: unconditional replace.
    r = alice.rest.put(path, {"name": "v4"})
    assert r.status == 200, r
    assert (r.json["version"], r.json["etag"]) == (4, "4")
    got = alice.rest.get(path)
    assert got.header("etag") == '"4"'
    assert got.json["name"] == "v4"


def test_concurrent_unconditional_updates_all_succeed(alice):
    """Without an etag a replace is unconditional: concurrent ones must not fail with ABORTED."""
    import concurrent.futures

    wf = create_wf(alice, "concurrent puts")
    n = 8
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        results = list(pool.map(
            lambda i: alice.rest.put(f"/workflows/{wf['id']}", {"name": f"put {i}"}), range(n)))
    assert [r.status for r in results] == [200] * n, [r for r in results if r.status != 200]
    assert sorted(r.json["version"] for r in results) == list(range(2, n + 2))
    assert get_wf(alice, wf["id"])["version"] == n + 1


def test_update_unknown_workflow_is_404(alice):
    assert_error(alice.rest.put("/workflows/wf_unknown", {"name": "x"}), 404, 5)


def test_update_path_and_body_ids_must_agree(alice):
    wf = create_wf(alice)
    other = create_wf(alice)
    r = alice.rest.put(f"/workflows/{wf['id']}", {"workflowId": other["id"], "name": "x"})
    assert_error(r, 400, 3)
    assert get_wf(alice, other["id"])["version"] == 1
    assert get_wf(alice, wf["id"])["version"] == 1


# ---------------------------------------------------------------------------
# Workflows: delete (soft)
# ---------------------------------------------------------------------------


def test_delete_is_soft_and_hides_the_workflow_everywhere(alice):
    token = word("gone")
    wf = create_wf(alice, f"{token} doomed", tasks=[{"name": "t", "action": "noop"}])
    task_id = tasks_of(wf)[0]["id"]
    assert search_ids(alice, token) == [wf["id"]]

    r = alice.rest.delete(f"/workflows/{wf['id']}")
    assert r.status == 204, r
    assert r.body == b""

    assert_error(alice.rest.get(f"/workflows/{wf['id']}"), 404, 5)
    assert wf["id"] not in [w["id"] for w in list_wf(alice, namePrefix=token).get("workflows", [])]
    assert search_ids(alice, token) == []
    assert_error(alice.rest.get(f"/workflows/{wf['id']}/tasks"), 404, 5)
    assert_error(alice.rest.get(f"/tasks/{task_id}"), 404, 5)
    assert_error(alice.rest.put(f"/workflows/{wf['id']}", {"name": "zombie"}), 404, 5)
    assert_error(alice.rest.post("/tasks", {"workflowId": wf["id"], "name": "n", "action": "noop"}), 404, 5)
    assert_error(alice.rest.delete(f"/workflows/{wf['id']}"), 404, 5)


def test_delete_honours_if_match(alice):
    wf = create_wf(alice)
    alice.rest.put(f"/workflows/{wf['id']}", {"name": "bumped"})  # now etag "2"
    assert_error(alice.rest.delete(f"/workflows/{wf['id']}", headers={"If-Match": '"1"'}), 409, 10)
    assert get_wf(alice, wf["id"])["name"] == "bumped"
    r = alice.rest.delete(f"/workflows/{wf['id']}", headers={"If-Match": '"2"'})
    assert r.status == 204, r
    assert_error(alice.rest.get(f"/workflows/{wf['id']}"), 404, 5)


# ---------------------------------------------------------------------------
# Search
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def search_corpus(alice):
    """Three workflows hit by one word: in the name, the description, a task name."""
    w = word("srch")
    # The name hit is created in the middle, so neither oldest- nor newest-first passes for ranking.
    by_desc = create_wf(alice, "Nightly report", f"sends the {w} summary")
    by_name = create_wf(alice, f"{w} sync", "copies data nightly")
    by_task = create_wf(alice, "Other things", "nothing here",
                        tasks=[{"name": f"Generate {w} PDF", "action": "noop"}])
    return types.SimpleNamespace(word=w, by_name=by_name, by_desc=by_desc, by_task=by_task)


def test_search_finds_names_descriptions_and_task_names_ranked(alice, search_corpus):
    c = search_corpus
    r = search(alice, c.word)
    assert r.status == 200, r
    results = r.json["results"]
    ids = [hit["workflow"]["id"] for hit in results]
    assert sorted(ids) == sorted([c.by_name["id"], c.by_desc["id"], c.by_task["id"]])
    assert ids[0] == c.by_name["id"], "a name hit ranks above description and task-name hits"
    scores = [hit["score"] for hit in results]
    assert all(isinstance(s, (int, float)) for s in scores)
    assert scores == sorted(scores, reverse=True), "best first"
    assert r.json.get("nextPageToken", "") == ""


def test_search_result_shape(alice, search_corpus):
    c = search_corpus
    hit = search(alice, c.word).json["results"][0]
    wf = hit["workflow"]
    assert wf["id"] == c.by_name["id"]
    assert wf["name"] == c.by_name["name"]
    assert wf["description"] == c.by_name["description"]
    assert wf["ownerId"] == alice.id
    assert wf["version"] == 1 and wf["etag"] == "1" and wf["role"] == "owner"
    assert wf.get("tasks", []) == [], "search results leave out the tasks"
    assert isinstance(hit["score"], (int, float))
    assert f"[{c.word}]".lower() in hit["snippet"].lower(), hit["snippet"]
    task_hit = next(h for h in search(alice, c.word).json["results"] if h["workflow"]["id"] == c.by_task["id"])
    assert f"[{c.word}]".lower() in task_hit["snippet"].lower(), task_hit["snippet"]


def test_search_prefix_matches_the_last_word(alice, search_corpus):
    c = search_corpus
    assert search_ids(alice, c.word[:-3])[0] == c.by_name["id"]
    assert search_ids(alice, f"sync {c.word[:-2]}") == [c.by_name["id"]]
    assert search_ids(alice, c.word.upper()) and search_ids(alice, c.word.upper())[0] == c.by_name["id"]


def test_search_needs_every_word(alice, search_corpus):
    c = search_corpus
    both = set(search_ids(alice, f"{c.word} nightly"))
    assert both == {c.by_name["id"], c.by_desc["id"]}
    assert search_ids(alice, f"{c.word} {word('absent')}") == []


def test_search_pages(alice, search_corpus):
    c = search_corpus
    first = search(alice, c.word, pageSize=2)
    assert first.status == 200, first
    page1 = [h["workflow"]["id"] for h in first.json["results"]]
    token = first.json["nextPageToken"]
    assert len(page1) == 2 and token
    second = search(alice, c.word, pageSize=2, pageToken=token)
    assert second.status == 200, second
    page2 = [h["workflow"]["id"] for h in second.json["results"]]
    assert second.json.get("nextPageToken", "") == ""
    assert page1 + page2 == search_ids(alice, c.word)
    # the token belongs to its query
    assert_error(search(alice, "other words", pageSize=2, pageToken=token), 400, 3)


def test_search_is_per_user(alice, bob, search_corpus):
    assert search_ids(bob, search_corpus.word) == []
    mine = create_wf(bob, f"{search_corpus.word} bobs copy")
    assert search_ids(bob, search_corpus.word) == [mine["id"]]
    assert mine["id"] not in search_ids(alice, search_corpus.word)


@pytest.mark.parametrize("query", ["", "   ", "\t\n"], ids=["empty", "spaces", "whitespace"])
def test_search_empty_query_is_400(alice, query):
    assert_error(search(alice, query), 400, 3)


def test_search_without_query_is_400(alice):
    assert_error(alice.rest.get("/workflows/search"), 400, 3)


HOSTILE_QUERIES = [
    '"', '""', '"unterminated', "'", "''", "*", "**", "a*", "* a", "*a", "-", "-a", "+", "^", "^a", ".", ",",
    "(", ")", "()", "(a", "a)", "((((((((((a))))))))))", "{a b}", "[a]", "a:b", "name:a", "description:x",
    "NEAR", "NEAR(a b)", "NEAR(a b, 2)", "a NEAR b", "a NEAR/2 b", "AND", "OR", "NOT", "a AND", "a OR b",
    "NOT a", "a NOT", "a AND NOT b", "\\", "\\\\", "%", "%%", "_", "a%b_c", "@@", "#", "$1", "&", "|", "~",
    "'; DROP TABLE workflows; --", "1' OR '1'='1", "\" OR 1=1 --", "x'); DELETE FROM users; --",
    "ünïcödé 日本語", "日本", "🙂", "🙂🙂 🙂", "\u200b", "\ufeff", "\x00", "a\x00b", "\x1b[31m", "\t\n",
    "null", "undefined", "NaN", "<script>alert(1)</script>", "${jndi:ldap://x}", "{{ tasks.x }}",
    "a " * 300, "x" * 1000, "é" * 500, "srch*" * 50, "a" * 64 + " " + "b" * 64,
]


# Queries that are blank once trimmed: 400. (The server's trim counts U+200B
# and U+FEFF as white space too.)  So is a query over 1000 bytes.
BLANK_QUERIES = {"\t\n", "\u200b", "\ufeff"}


def hostile_query_is_400(query: str) -> bool:
    return query in BLANK_QUERIES or len(query.strip().encode()) > 1000


@pytest.fixture(scope="module")
def hostile_corpus(api_server):
    """A fresh user whose only workflow holds none of the words of HOSTILE_QUERIES."""
    user = wh.register_and_login(api_server, "Dana Hostile")
    w = word("srch")
    wf = create_wf(user, f"{w} sync", "copies data nightly")
    return types.SimpleNamespace(user=user, word=w, wf=wf)


def test_search_hostile_queries_never_fail(alice, api_server, search_corpus, hostile_corpus):
    """Query syntax is never interpreted, so every hostile query is plain words
    that must all match: 200 with exactly the matching workflows (none of the
    fresh user's, whose workflow has none of these words), or 400 (code 3)
    for a blank or over-long query.  Alice, with many workflows, gets the same
    status codes."""
    failures = []
    own, w = hostile_corpus.wf["id"], hostile_corpus.word
    cases = [(q, []) for q in HOSTILE_QUERIES]
    cases += [(f"{w} {h}", [own]) for h in ("*", '"', "(", "-")] + [(f"{w} {h}", []) for h in ("NEAR", "OR")]
    for q, want in cases:
        for user in (hostile_corpus.user, alice):
            r = search(user, q)
            if hostile_query_is_400(q):
                if r.status != 400 or r.json.get("code") != 3:
                    failures.append((q, user.name, "want 400 code 3", r))
            elif r.status != 200:
                failures.append((q, user.name, "want 200", r))
            elif user is hostile_corpus.user:
                got = [hit["workflow"]["id"] for hit in r.json.get("results", [])]
                if got != want:
                    failures.append((q, user.name, f"want results {want}", got))
    assert not failures, failures
    assert api_server.running()
    # The index still works afterwards.
    assert search_ids(alice, search_corpus.word)[0] == search_corpus.by_name["id"]


def test_search_operators_are_literal_text(alice, search_corpus):
    """Query syntax is not interpreted: an operator word must itself match."""
    c = search_corpus
    assert search_ids(alice, f"{c.word} OR {word('absent')}") == []
    assert search_ids(alice, f"NOT {c.word}") == []
    assert c.by_name["id"] in search_ids(alice, f'"{c.word}"')
    assert c.by_name["id"] in search_ids(alice, f"({c.word})")
    assert c.by_name["id"] in search_ids(alice, f"{c.word}*")


def test_search_finds_unicode(alice):
    w = word("uni")
    wf = create_wf(alice, f"Ünïcode 日本語 {w}", "naïve café")
    assert search_ids(alice, f"{w} café") == [wf["id"]]
    assert search_ids(alice, f"{w} 日本語") == [wf["id"]]


def test_search_reflects_updates(alice):
    old, new = word("old"), word("new")
    wf = create_wf(alice, f"{old} name")
    assert search_ids(alice, old) == [wf["id"]]
    assert alice.rest.put(f"/workflows/{wf['id']}", {"name": f"{new} name"}).status == 200
    assert search_ids(alice, old) == []
    assert search_ids(alice, new) == [wf["id"]]


def test_search_is_a_literal_route(alice):
    r = alice.rest.put("/workflows/search", {"name": "x"})
    assert_error(r, 405, 12)
    assert "GET" in [m.strip() for m in r.header("allow").split(",")], r.headers
    r = alice.rest.delete("/workflows/search")
    assert r.status == 405, r


# ---------------------------------------------------------------------------
# Tasks (the seed's task-by-task API)
# ---------------------------------------------------------------------------


def test_create_task_adds_it_and_bumps_the_workflow(alice):
    wf = create_wf(alice, tasks=[{"name": "First", "action": "noop"}])
    r = alice.rest.post("/tasks", {"workflowId": wf["id"], "name": "Sample Task",
                                   "description": "This is a sample task.", "action": "delay",
                                   "config": {"duration": "5s"}, "dependsOn": ["first"]})
    assert r.status == 201, r
    assert r.header("etag") == '"2"', r.headers
    task = r.json
    assert task["id"].startswith("tsk_")
    assert task["workflowId"] == wf["id"]
    assert task["key"] == "sample_task"
    assert task["name"] == "Sample Task"
    assert task["description"] == "This is a sample task."
    assert task["action"] == "delay"
    assert task["config"] == {"duration": "5s"}
    assert task["dependsOn"] == ["first"]
    assert_recent(task["createdAt"])
    after = get_wf(alice, wf["id"])
    assert after["version"] == 2 and after["etag"] == "2"
    assert [t["id"] for t in tasks_of(after)] == [tasks_of(wf)[0]["id"], task["id"]]
    got = alice.rest.get(f"/tasks/{task['id']}")
    assert got.status == 200, got
    assert normalize_times(got.json) == normalize_times(task)


def test_create_task_validation(alice):
    wf = create_wf(alice, tasks=[{"name": "First", "action": "noop"}])
    cases = [
        ({"workflowId": wf["id"], "name": "x", "action": "noop", "dependsOn": ["ghost"]}, 400, 3),
        ({"workflowId": wf["id"], "name": "First", "action": "noop"}, 400, 3),  # duplicate key
        ({"workflowId": wf["id"], "name": "x", "action": "warp"}, 400, 3),
        ({"workflowId": wf["id"], "name": "x", "action": "http", "config": {}}, 400, 3),
        ({"workflowId": wf["id"], "name": "", "action": "noop"}, 400, 3),
        ({"name": "x", "action": "noop"}, 400, 3),  # no workflowId
        ({"workflowId": "wf_nope", "name": "x", "action": "noop"}, 404, 5),
    ]
    for body, status, code in cases:
        assert_error(alice.rest.post("/tasks", body), status, code)
    assert get_wf(alice, wf["id"])["version"] == 1


def test_concurrent_task_creates_all_succeed(alice):
    """POST /tasks carries no etag: concurrent adds to one workflow must all land."""
    import concurrent.futures

    wf = create_wf(alice, "concurrent tasks")
    n = 8
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        results = list(pool.map(lambda i: alice.rest.post(
            "/tasks", {"workflowId": wf["id"], "name": f"Task {i}", "action": "noop"}), range(n)))
    assert [r.status for r in results] == [201] * n, [r for r in results if r.status != 201]
    after = get_wf(alice, wf["id"])
    assert after["version"] == n + 1
    assert sorted(t["key"] for t in tasks_of(after)) == sorted(f"task_{i}" for i in range(n))


def test_list_tasks_in_definition_order_with_paging(alice):
    tasks = [{"name": f"Step {i}", "action": "noop"} for i in range(7)]
    wf = create_wf(alice, tasks=tasks)
    want = [t["id"] for t in tasks_of(wf)]
    r = alice.rest.get(f"/workflows/{wf['id']}/tasks")
    assert r.status == 200, r
    assert [t["id"] for t in r.json["tasks"]] == want
    assert r.json.get("nextPageToken", "") == ""

    seen, token, pages = [], "", 0
    while True:
        q = {"pageSize": 3, **({"pageToken": token} if token else {})}
        r = alice.rest.get(f"/workflows/{wf['id']}/tasks?" + urllib.parse.urlencode(q))
        assert r.status == 200, r
        seen.append([t["id"] for t in r.json.get("tasks", [])])
        token = r.json.get("nextPageToken", "")
        pages += 1
        assert pages <= 4
        if not token:
            break
    assert [len(p) for p in seen] == [3, 3, 1]
    assert sum(seen, []) == want
    assert_error(alice.rest.get(f"/workflows/{wf['id']}/tasks?pageToken=junk"), 400, 3)
    assert_error(alice.rest.get(f"/workflows/{wf['id']}/tasks?pageSize=-5"), 400, 3)


def test_list_tasks_of_empty_and_unknown_workflows(alice):
    wf = create_wf(alice)
    r = alice.rest.get(f"/workflows/{wf['id']}/tasks")
    assert r.status == 200, r
    assert r.json.get("tasks", []) == []
    assert_error(alice.rest.get("/workflows/wf_nope/tasks"), 404, 5)


def test_update_task_is_a_full_replace(alice):
    wf = create_wf(alice, tasks=[{"name": "Fetch", "action": "http", "config": {"url": "https://a.example"},
                                  "description": "old", "timeout": "10s"},
                                 {"name": "After", "action": "noop", "dependsOn": ["fetch"]}])
    fetch = tasks_of(wf)[0]
    r = alice.rest.put(f"/tasks/{fetch['id']}", {"name": "Fetch again", "action": "log",
                                                 "config": {"message": "hello"}})
    assert r.status == 200, r
    assert r.header("etag") == '"2"', r.headers
    t = r.json
    assert t["id"] == fetch["id"]
    assert t["workflowId"] == wf["id"]
    assert t["key"] == "fetch", "key is kept when omitted"
    assert t["name"] == "Fetch again"
    assert t["action"] == "log"
    assert t["config"] == {"message": "hello"}
    assert t.get("description", "") == "", "full replace: omitted description is cleared"
    assert "timeout" not in t or t["timeout"] in ("", "0s"), "full replace: omitted timeout is cleared"
    assert wh.rfc3339_nanos(t["createdAt"]) == wh.rfc3339_nanos(fetch["createdAt"])
    after = get_wf(alice, wf["id"])
    assert after["version"] == 2
    assert tasks_of(after)[1]["dependsOn"] == ["fetch"]
    assert normalize_times(alice.rest.get(f"/tasks/{fetch['id']}").json) == normalize_times(t)


def test_update_task_errors(alice):
    wf = create_wf(alice, tasks=[{"name": "One", "action": "noop"}, {"name": "Two", "action": "noop"}])
    one, two = tasks_of(wf)
    assert_error(alice.rest.put(f"/tasks/{one['id']}", {"name": "One"}), 400, 3, "action")
    assert_error(alice.rest.put(f"/tasks/{one['id']}", {"name": "One", "action": "noop", "dependsOn": ["one"]}),
                 400, 3, '"one"')
    assert_error(alice.rest.put(f"/tasks/{one['id']}", {"name": "One", "action": "noop", "key": "two"}), 400, 3)
    assert_error(alice.rest.put(f"/tasks/{one['id']}", {"name": "One", "action": "noop"},
                                headers={"If-Match": '"7"'}), 409, 10)
    assert_error(alice.rest.put("/tasks/tsk_nope", {"name": "x", "action": "noop"}), 404, 5)
    assert normalize_times(get_wf(alice, wf["id"])) == normalize_times(wf)
    r = alice.rest.put(f"/tasks/{two['id']}", {"name": "Two", "action": "noop", "etag": "1"})
    assert r.status == 200, r


def test_delete_task(alice):
    wf = create_wf(alice, tasks=[{"name": "Base", "action": "noop"},
                                 {"name": "Leaf", "action": "noop", "dependsOn": ["base"]}])
    base, leaf = tasks_of(wf)
    err = assert_error(alice.rest.delete(f"/tasks/{base['id']}"), 400, 9, '"base"')
    assert "leaf" in err["message"]
    assert get_wf(alice, wf["id"])["version"] == 1
    assert_error(alice.rest.delete(f"/tasks/{leaf['id']}", headers={"If-Match": '"9"'}), 409, 10)

    r = alice.rest.delete(f"/tasks/{leaf['id']}")
    assert r.status == 204, r
    assert r.body == b""
    assert_error(alice.rest.get(f"/tasks/{leaf['id']}"), 404, 5)
    assert_error(alice.rest.delete(f"/tasks/{leaf['id']}"), 404, 5)
    after = get_wf(alice, wf["id"])
    assert after["version"] == 2
    assert [t["id"] for t in tasks_of(after)] == [base["id"]]
    # with no dependents left, base can go too
    assert alice.rest.delete(f"/tasks/{base['id']}", headers={"If-Match": '"2"'}).status == 204
    assert tasks_of(get_wf(alice, wf["id"])) == []


def test_get_unknown_task_is_404(alice):
    err = assert_error(alice.rest.get("/tasks/tsk_00000000000000000000000000"), 404, 5)
    assert "no route" not in err["message"]


# ---------------------------------------------------------------------------
# Two users: nothing of one is visible to the other
# ---------------------------------------------------------------------------


def test_other_users_workflows_are_invisible(alice, bob):
    wf = create_wf(alice, word("priv"), "alice only", tasks=[{"name": "secret", "action": "noop"}])
    wid, tid = wf["id"], tasks_of(wf)[0]["id"]
    unknown = "wf_00000000000000000000000000"

    def same_as_unknown(r, probe):
        err = assert_error(r, 404, 5)
        ref = probe.json
        # the answer about an existing-but-foreign workflow looks like one about a missing one
        assert err["message"].replace(wid, "ID") == ref["message"].replace(unknown, "ID"), (err, ref)

    same_as_unknown(bob.rest.get(f"/workflows/{wid}"), bob.rest.get(f"/workflows/{unknown}"))
    same_as_unknown(bob.rest.put(f"/workflows/{wid}", {"name": "pwned"}),
                    bob.rest.put(f"/workflows/{unknown}", {"name": "pwned"}))
    same_as_unknown(bob.rest.delete(f"/workflows/{wid}"), bob.rest.delete(f"/workflows/{unknown}"))
    assert_error(bob.rest.get(f"/workflows/{wid}/tasks"), 404, 5)
    assert_error(bob.rest.get(f"/tasks/{tid}"), 404, 5)
    assert_error(bob.rest.put(f"/tasks/{tid}", {"name": "x", "action": "noop"}), 404, 5)
    assert_error(bob.rest.delete(f"/tasks/{tid}"), 404, 5)
    assert_error(bob.rest.post("/tasks", {"workflowId": wid, "name": "x", "action": "noop"}), 404, 5)
    assert wid not in [w["id"] for w in list_wf(bob, pageSize=1000).get("workflows", [])]
    assert list_wf(bob, ownerId=alice.id).get("workflows", []) == []
    assert search_ids(bob, wf["name"]) == []
    # Alice's workflow is untouched.
    assert normalize_times(get_wf(alice, wid)) == normalize_times(wf)


# ---------------------------------------------------------------------------
# Bad requests
# ---------------------------------------------------------------------------


def test_unknown_json_field_is_400_naming_it(alice):
    assert_error(alice.rest.post("/workflows", {"name": "x", "colour": "red"}), 400, 3, "colour")
    assert_error(alice.rest.post("/workflows", {"name": "x", "tasks": [{"name": "a", "action": "noop",
                                                                        "flavour": 1}]}), 400, 3, "flavour")
    assert_error(alice.rest.post("/users/login", {"email": "a@b.co", "password": "x", "remember": True}),
                 400, 3, "remember")


@pytest.mark.parametrize(
    "body, fragment",
    [({"name": 5}, "name: expected a string, got a number"),
     ({"name": ["x"]}, "name: expected a string, got an array"),
     ({"name": "x", "tasks": {}}, "tasks: expected an array, got an object"),
     ({"name": "x", "tasks": ["a"]}, "tasks[0]: expected an object, got a string"),
     ({"name": "x", "tasks": [{"name": "a", "action": "noop"}, {"name": "b", "action": "noop", "dependsOn": "a"}]},
      "tasks[1].dependsOn: expected an array, got a string"),
     ({"name": "x", "tasks": [{"name": "a", "action": "noop", "timeout": 30}]}, "tasks[0].timeout: expected a duration"),
     ({"name": "x", "tasks": [{"name": "a", "action": "noop", "retry": {"maxAttempts": "lots"}}]},
      "tasks[0].retry.maxAttempts: expected a whole number"),
     ({"name": "x", "tasks": [{"name": "a", "action": "noop", "config": "nope"}]},
      "tasks[0].config: expected an object, got a string"),
     ({"name": None}, "name must not be empty")],
    ids=["number", "array", "tasks-object", "tasks-strings", "depends-string", "timeout-number",
         "retry-string", "config-string", "null-name"],
)
def test_wrong_json_types_are_400_naming_the_field(alice, body, fragment):
    assert_error(alice.rest.post("/workflows", body), 400, 3, fragment)


def test_wrong_query_and_enum_values_name_the_field(alice):
    assert_error(alice.rest.get("/workflows?pageSize=abc"), 400, 3, "pageSize: expected a whole number")
    assert_error(alice.rest.get("/workflows?createdAfter=yesterday"), 400, 3, "createdAfter", "RFC 3339")
    wf = create_wf(alice)
    assert_error(alice.rest.post(f"/workflows/{wf['id']}/collaborators", {"userId": alice.id, "role": "boss"}),
                 400, 3, 'role: "boss" is not one of "viewer", "editor", "owner"')


@pytest.mark.parametrize("raw", [b"{not json", b'{"name": "x",}', b'{"name": "x", "tasks": [],}',
                                 b'{"name": "x", "tasks": [{"name": "a", "action": "noop"},]}', b'{"name": "x"',
                                 b"\xff\xfe", b"nul", b'{"name": "x"} trailing', b"{'name': 'x'}", b'{name: "x"}'],
                         ids=["garbage", "trailing-comma", "trailing-comma-2", "trailing-comma-array", "unterminated",
                              "bad-utf8", "bare-word", "trailing", "single-quotes", "unquoted-key"])
def test_malformed_json_is_400(alice, raw):
    assert_error(alice.rest.post("/workflows", raw=raw), 400, 3)


@pytest.mark.parametrize("raw", [b"[]", b'[{"name": "x"}]', b'"x"', b"42", b"null", b"true"])
def test_non_object_body_is_400(alice, raw):
    assert_error(alice.rest.post("/workflows", raw=raw), 400, 3)


@pytest.mark.parametrize("ctype", ["application/x-www-form-urlencoded", "text/plain", "multipart/form-data; boundary=x",
                                   "application/xml"])
def test_non_json_content_type_is_415(alice, ctype):
    r = alice.rest.post("/workflows", raw=b"name=x", content_type=ctype)
    assert r.status == 415, r
    assert r.json["code"] == 3


def test_keep_alive_connection_serves_several_requests(api_server, alice):
    import http.client

    conn = http.client.HTTPConnection(api_server.host, api_server.port, timeout=10)
    auth = {"Authorization": f"Bearer {alice.token}"}
    try:
        for method, path, body, want in [
            ("GET", "/users/me", None, 200),
            ("POST", "/workflows", b"{bad json", 400),
            ("POST", "/workflows", json.dumps({"name": "keep-alive"}).encode(), 201),
            ("GET", "/workflows/wf_missing", None, 404),
            ("GET", "/users/me", None, 200),
        ]:
            headers = dict(auth, **({"Content-Type": "application/json"} if body else {}))
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            assert resp.status == want, (method, path, resp.status, data[:300])
            assert json.loads(data)
    finally:
        conn.close()


def test_json_content_type_with_charset_is_fine(alice):
    r = alice.rest.post("/workflows", raw=json.dumps({"name": "charset"}).encode(),
                        content_type="application/json; charset=utf-8")
    assert r.status == 201, r


def test_body_over_4_mib_is_413(alice, api_server):
    raw = b'{"name": "big", "description": "' + b"x" * (4 * 1024 * 1024 + 16) + b'"}'
    r = alice.rest.post("/workflows", raw=raw)
    assert r.status == 413, r
    assert api_server.running()
    # just under the limit is not rejected for its size: it reaches validation,
    # which refuses the description as too long (10,000 characters at most)
    raw = b'{"name": "big", "description": "' + b"x" * (4 * 1024 * 1024 - 64) + b'"}'
    r = alice.rest.post("/workflows", raw=raw)
    assert_error(r, 400, 3, "description is longer than")
    assert api_server.running()


@pytest.mark.parametrize("path", ["/nope", "/workflows/wf_x/nope", "/users", "/users/me/extra", "/task",
                                  "/v1/workflows", "/workflows/wf_x/tasks/tsk_y"])
def test_unknown_path_is_404(alice, path):
    err = assert_error(alice.rest.get(path), 404, 5)
    assert "no route" in err["message"], err


@pytest.mark.parametrize(
    "method, path, allowed",
    [
        ("DELETE", "/workflows", {"GET", "POST"}),
        ("PATCH", "/workflows", {"GET", "POST"}),
        ("POST", "/workflows/wf_x", {"GET", "PUT", "DELETE"}),
        ("PATCH", "/tasks/tsk_x", {"GET", "PUT", "DELETE"}),
        ("GET", "/tasks", {"POST"}),
        ("GET", "/users/register", {"POST"}),
        ("GET", "/users/login", {"POST"}),
        ("POST", "/users/me", {"GET"}),
        ("POST", "/workflows/wf_x/tasks", {"GET"}),
        ("GET", "/workflows/wf_x/execute", {"POST"}),
    ],
)
def test_wrong_method_is_405_with_allow(alice, method, path, allowed):
    r = alice.rest.request(method, path, {} if method in ("POST", "PUT", "PATCH") else None)
    assert_error(r, 405, 12)
    allow = {m.strip() for m in (r.header("allow") or "").split(",") if m.strip()}
    assert allowed <= allow, (allow, allowed)
    assert method not in allow


# ---------------------------------------------------------------------------
# Collaborators: roles per workflow
# ---------------------------------------------------------------------------


def test_collaborator_roles_govern_access(alice, bob, api_server):
    carol = wh.register_and_login(api_server, "Carol Example")
    name = f"shared {word()}"
    wf = create_wf(alice, name, tasks=[{"name": "a", "action": "noop"}])
    wid = wf["id"]
    coll = f"/workflows/{wid}/collaborators"
    # No role: invisible.
    assert_error(bob.rest.get(f"/workflows/{wid}"), 404, 5)
    # Collaborators must be members of the workflow's organization (by consent).
    for member in (bob, carol):
        wh.invite_and_accept(api_server, alice.token, member.token, wf["orgId"])
    # Viewer: can read, list and search, cannot change.
    r = alice.rest.post(coll, {"userId": bob.id, "role": "viewer"})
    assert r.status == 201, r
    assert r.json["userId"] == bob.id and r.json["role"] == "viewer" and r.json["email"] == bob.email, r.json
    assert_error(alice.rest.post(coll, {"userId": bob.id, "role": "editor"}), 409, 6, "already a collaborator")
    got = bob.rest.get(f"/workflows/{wid}")
    assert got.status == 200 and got.json["role"] == "viewer", got
    assert wid in [w["id"] for w in list_wf(bob)["workflows"]]
    assert wid in search_ids(bob, name.split()[1])
    assert_error(bob.rest.put(f"/workflows/{wid}", {"name": "mine now"}), 403, 7, "viewer")
    assert_error(bob.rest.post("/tasks", {"workflowId": wid, "name": "x", "action": "noop"}), 403, 7)
    assert_error(bob.rest.post(coll, {"userId": carol.id, "role": "viewer"}), 403, 7)
    # Editor: can change, cannot delete or manage roles.
    r = alice.rest.put(f"{coll}/{bob.id}", {"role": "editor"})
    assert r.status == 200 and r.json["role"] == "editor", r
    r = bob.rest.put(f"/workflows/{wid}", {"name": name, "tasks": tasks_of(get_wf(alice, wid))})
    assert r.status == 200 and r.json["version"] == 2 and r.json["role"] == "editor", r
    assert_error(bob.rest.delete(f"/workflows/{wid}"), 403, 7, "owner")
    assert_error(bob.rest.put(f"{coll}/{bob.id}", {"role": "viewer"}), 403, 7)
    # The list shows the owner first, then collaborators.
    listed = bob.rest.get(coll)
    assert listed.status == 200, listed
    assert [(c["userId"], c["role"]) for c in listed.json["collaborators"]] == [(alice.id, "owner"), (bob.id, "editor")]
    # Bad grants.
    assert_error(alice.rest.post(coll, {"userId": "usr_nobody", "role": "viewer"}), 404, 5)
    assert_error(alice.rest.post(coll, {"userId": carol.id, "role": "owner"}), 400, 3, "owner")
    assert_error(alice.rest.post(coll, {"userId": carol.id}), 400, 3, "role")
    assert_error(alice.rest.post(coll, {"userId": carol.id, "role": "admin"}), 400, 3)
    assert_error(alice.rest.post(coll, {"userId": alice.id, "role": "viewer"}), 400, 3, "owns")
    assert_error(alice.rest.put(f"{coll}/{carol.id}", {"role": "viewer"}), 404, 5)
    assert_error(alice.rest.delete(f"{coll}/{alice.id}"), 400, 9, "owner")
    # A collaborator may leave; then the workflow is invisible again.
    r = bob.rest.delete(f"{coll}/{bob.id}")
    assert r.status == 204 and r.body == b"", r
    assert_error(bob.rest.get(f"/workflows/{wid}"), 404, 5)
    assert_error(alice.rest.delete(f"{coll}/{bob.id}"), 404, 5)


# ---------------------------------------------------------------------------
# Versions and rollback
# ---------------------------------------------------------------------------


def test_versions_list_get_label_and_rollback(alice, bob):
    v1 = create_wf(alice, "versioned", tasks=[{"name": "a", "action": "noop"}])
    wid = v1["id"]
    a_id = v1["tasks"][0]["id"]
    r = alice.rest.put(f"/workflows/{wid}", {"name": "versioned", "tasks": [
        {"name": "b", "action": "noop"}, {"name": "c", "action": "log", "dependsOn": ["b"]}]})
    assert r.status == 200 and r.json["version"] == 2, r
    r = alice.rest.put(f"/workflows/{wid}", {"name": "versioned v3", "tasks": tasks_of(r.json)[:1]})
    assert r.status == 200 and r.json["version"] == 3, r
    # Newest first, paged.
    page = alice.rest.get(f"/workflows/{wid}/versions?pageSize=2")
    assert page.status == 200, page
    assert [v["version"] for v in page.json["versions"]] == [3, 2]
    assert page.json["nextPageToken"]
    rest = alice.rest.get(f"/workflows/{wid}/versions?pageSize=2&pageToken={page.json['nextPageToken']}")
    assert [v["version"] for v in rest.json["versions"]] == [1] and rest.json["nextPageToken"] == "", rest.json
    first = rest.json["versions"][0]
    assert first["name"] == "versioned" and [t["name"] for t in first["tasks"]] == ["a"]
    assert first["createdBy"] == alice.id and first["id"].startswith("ver_")
    # By number or by id.
    assert alice.rest.get(f"/workflows/{wid}/versions/1").json["id"] == first["id"]
    assert alice.rest.get(f"/workflows/{wid}/versions/{first['id']}").json["version"] == 1
    assert_error(alice.rest.get(f"/workflows/{wid}/versions/99"), 404, 5)
    assert_error(bob.rest.get(f"/workflows/{wid}/versions"), 404, 5)
    # Label the current version.
    labelled = alice.rest.post(f"/workflows/{wid}/versions", {"label": "release 1"})
    assert labelled.status == 201 and labelled.json["version"] == 3 and labelled.json["label"] == "release 1", labelled
    # Roll back to version 1: a new version 4 with version 1's definition and task ids.
    rolled = alice.rest.put(f"/workflows/{wid}/versions/1/rollback", {})
    assert rolled.status == 200, rolled
    assert rolled.json["version"] == 4 and rolled.json["label"] == "rollback to version 1", rolled.json
    now = get_wf(alice, wid)
    assert now["version"] == 4 and now["name"] == "versioned"
    assert [(t["id"], t["name"]) for t in tasks_of(now)] == [(a_id, "a")]
    assert_error(alice.rest.put(f"/workflows/{wid}/versions/ver_nope/rollback", {}), 404, 5)
    assert_error(bob.rest.put(f"/workflows/{wid}/versions/1/rollback", {}), 404, 5)


# ---------------------------------------------------------------------------
# Analytics (Step 10): every route authenticated and answered, none 501
# (test_analytics.py checks what they answer)
# ---------------------------------------------------------------------------

ANALYTICS_ROUTES = [
    ("GET", "/workflows/{w}/stats", 200),
    ("GET", "/workflows/{w}/stats?window=hour", 200),
    ("GET", "/analytics/workflow-executions", 200),
    ("GET", "/analytics/workflow-executions?timeZone=Europe/Berlin&workflowId={w}", 200),
    ("GET", "/workflows/{w}/insights", 200),
    ("GET", "/executions/exe_unknown/prediction", 404),
    ("GET", "/workflows/{w}/budget", 404),
    ("DELETE", "/workflows/{w}/budget", 404),
    ("GET", "/orgs/{o}/budget", 404),
]


@pytest.fixture(scope="module")
def alices_workflow(alice):
    return create_wf(alice, "analytics target")


@pytest.mark.parametrize("method, template, status", ANALYTICS_ROUTES,
                         ids=[f"{m} {p}" for m, p, _ in ANALYTICS_ROUTES])
def test_analytics_routes_answer_after_auth(api_server, alice, anon, alices_workflow, method, template, status):
    path = template.replace("{w}", alices_workflow["id"]).replace("{o}", alices_workflow["orgId"])
    assert_error(anon.request(method, path), 401, 16)
    r = alice.rest.request(method, path)
    if status == 200:
        assert r.status == 200 and isinstance(r.json, dict), r
    else:
        assert_error(r, status, 5)


def test_analytics_budget_lifecycle_over_rest(alice, bob, anon, alices_workflow):
    wid = alices_workflow["id"]
    path = f"/workflows/{wid}/budget"
    assert_error(anon.put(path, {"monthlyLimitUsd": 5}), 401, 16)
    assert_error(bob.rest.put(path, {"monthlyLimitUsd": 5}), 404, 5)
    r = alice.rest.put(path, {"monthlyLimitUsd": 5, "timeZone": "Europe/Berlin"})
    assert r.status == 200, r
    assert (r.json["scope"], r.json["scopeId"], r.json["monthlyLimitUsd"]) == ("workflow", wid, 5), r.json
    assert alice.rest.get(path).json["timeZone"] == "Europe/Berlin"
    r = alice.rest.delete(path)
    assert r.status == 204 and r.body == b"", r
    assert_error(alice.rest.get(path), 404, 5)


# ---------------------------------------------------------------------------
# HTTP/2 (h2c, prior knowledge)
# ---------------------------------------------------------------------------


def _h2_request(server, method, path, token, body=None):
    headers = [(":method", method), (":scheme", "http"), (":path", path), (":authority", server.target),
               ("authorization", f"Bearer {token}"), ("accept", "application/json")]
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers += [("content-type", "application/json"), ("content-length", str(len(data)))]
    with wh.H2Client(server) as client:
        client.handshake()
        sid = client.start_call(path, body=data, headers=headers)
        res = client.wait_stream(sid, timeout=10)
    assert res.ended and res.reset_code is None, res
    return int(res.header(":status")), dict(res.headers), res.data


def test_rest_over_http2_prior_knowledge(api_server, alice):
    status, headers, data = _h2_request(api_server, "POST", "/workflows", alice.token,
                                        {"name": "over h2", "tasks": [{"name": "Fetch order", "action": "noop"}]})
    assert status == 201, data
    assert headers.get("content-type", "").startswith("application/json")
    assert headers.get("etag") == '"1"'
    wf = json.loads(data)
    assert wf["name"] == "over h2"
    assert tasks_of(wf)[0]["key"] == "fetch_order"

    status, headers, data = _h2_request(api_server, "GET", f"/workflows/{wf['id']}", alice.token)
    assert status == 200, data
    assert json.loads(data)["id"] == wf["id"]
    # and the same resource over HTTP/1.1
    assert get_wf(alice, wf["id"])["name"] == "over h2"

    status, headers, data = _h2_request(api_server, "GET", "/workflows/wf_missing", alice.token)
    assert status == 404
    assert json.loads(data)["code"] == 5
    status, headers, data = _h2_request(api_server, "GET", "/users/me", "garbage")
    assert status == 401
    assert json.loads(data)["code"] == 16
    status, _, data = _h2_request(api_server, "DELETE", f"/workflows/{wf['id']}", alice.token)
    assert status == 204 and data == b""


# ---------------------------------------------------------------------------
# Regressions from review: hostile tokens, queries and ids
# ---------------------------------------------------------------------------


def _forged_token(query: str, cursor: str) -> str:
    import hashlib

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return b64(f"1|{b64(hashlib.sha256(query.encode()).digest()[:6])}|{cursor}".encode())


@pytest.mark.parametrize("cursor", ["9223372036854775807", "-1", "99999999999999999999", "abc"])
def test_forged_page_tokens_are_400_and_the_server_survives(alice, cursor):
    wf = create_wf(alice, tasks=[{"name": "a", "action": "noop"}])
    wid = wf["id"]
    cases = [
        (f"/workflows/{wid}/tasks", f"{alice.id}|{wid}"),
        (f"/workflows/{wid}/collaborators", f"{alice.id}|collaborators|{wid}"),
        ("/workflows/search?query=hello", f"{alice.id}|hello"),
    ]
    for path, query in cases:
        sep = "&" if "?" in path else "?"
        assert_error(alice.rest.get(f"{path}{sep}pageToken={_forged_token(query, cursor)}"), 400, 3, "page_token")
    assert alice.rest.get(f"/workflows/{wid}").status == 200


def test_search_is_not_crowded_out_by_other_users(alice, bob, api_server):
    term = word("crowd")
    mine = create_wf(alice, f"alpha {term}")
    carol = wh.register_and_login(api_server, "Carol Crowd")
    for i in range(1005):
        r = carol.rest.post("/workflows", {"name": f"{term} {i}"})
        assert r.status == 201, r
    assert search_ids(alice, term) == [mine["id"]]
    # Carol's own results are capped by the ranking window, and pages never repeat.
    seen, token = [], ""
    for _ in range(10):  # 1000 results in pages of 400: three pages; more means paging never ends
        r = search(carol, term, pageSize=400, pageToken=token)
        assert r.status == 200, r
        seen += [hit["workflow"]["id"] for hit in r.json["results"]]
        token = r.json["nextPageToken"]
        if not token:
            break
    else:
        raise AssertionError(f"search paging never ended ({len(seen)} results so far)")
    assert len(seen) == len(set(seen)) == 1000


@pytest.mark.parametrize("query", ["\u0d4e\"", "\u0d4e\" OR \u0d4e\"\"", "a\u0301\"b", "\"\u200d\"", "x\u0000y"])
def test_search_query_text_is_never_fts_syntax(alice, hostile_corpus, query):
    r = search(alice, query)
    assert r.status == 200, r
    # Literal words that are in no workflow of the fresh user: nothing found.
    r = search(hostile_corpus.user, query)
    assert r.status == 200, r
    assert r.json.get("results", []) == [], r


def test_path_ids_cannot_be_overridden_by_proto_names(alice, bob):
    a = create_wf(alice, "mine")
    b = create_wf(alice, "other")
    assert_error(alice.rest.get(f"/workflows/{a['id']}?workflow_id={b['id']}"), 400, 3)
    assert_error(alice.rest.put(f"/workflows/{a['id']}", {"workflow_id": b["id"], "name": "x"}), 400, 3)
    assert_error(alice.rest.delete(f"/workflows/{a['id']}?workflow_id={b['id']}"), 400, 3)
    assert get_wf(alice, b["id"])["name"] == "other"


def test_strangers_cannot_tell_a_task_exists(alice, bob):
    wf = create_wf(alice, tasks=[{"name": "secret", "action": "noop"}])
    tid = wf["tasks"][0]["id"]
    unknown = assert_error(bob.rest.get("/tasks/tsk_00000000000000000000000000"), 404, 5)
    got = assert_error(bob.rest.get(f"/tasks/{tid}"), 404, 5)
    assert got["message"] == unknown["message"].replace("tsk_00000000000000000000000000", tid)
    body = {"workflowId": "wf_x", "name": "n", "action": "noop"}
    assert_error(bob.rest.put(f"/tasks/{tid}", body), 404, 5, f"task {tid} not found")
    assert_error(bob.rest.delete(f"/tasks/{tid}"), 404, 5, f"task {tid} not found")


def test_nul_characters_are_rejected(alice, anon):
    assert_error(alice.rest.post("/workflows", {"name": "zz\u0000hidden"}), 400, 3, "NUL")
    assert_error(alice.rest.post("/workflows", {"name": "ok", "tasks": [{"name": "\u0000", "action": "noop"}]}), 400, 3, "NUL")
    assert_error(anon.post("/users/register", {"email": wh.unique_email("nul"), "password": "long enough", "name": "a\u0000b"}),
                 400, 3, "NUL")


def test_query_values_true_and_false_stay_strings_where_fields_are_strings(alice):
    wf = create_wf(alice, "true story")
    assert alice.rest.get("/workflows/search?query=true").status == 200
    assert wf["id"] in search_ids(alice, "true")
    assert alice.rest.get("/workflows?namePrefix=false").status == 200
    r = alice.rest.get("/workflows?summary=true&namePrefix=true")
    assert r.status == 200 and [w["id"] for w in r.json["workflows"]] == [wf["id"]]
    assert r.json["workflows"][0]["tasks"] == []


def test_if_match_star_means_any_version(alice):
    wf = create_wf(alice)
    r = alice.rest.put(f"/workflows/{wf['id']}", {"name": "renamed"}, headers={"If-Match": "*"})
    assert r.status == 200 and r.json["version"] == 2, r


@pytest.mark.parametrize("expression", ["(" * 50000 + "true", "!" * 50000 + "true", "{{ " + "(" * 5000 + " }}",
                                        "true && " * 5000 + "true"])
def test_hostile_expressions_are_400_not_a_crash(alice, expression):
    tasks = [{"key": "check", "name": "check", "action": "condition", "config": {"expression": expression, "then": ["yes"]}},
             {"key": "yes", "name": "yes", "action": "noop", "dependsOn": ["check"]}]
    assert_error(alice.rest.post("/workflows", {"name": "hostile", "tasks": tasks}), 400, 3)
    body = {"name": "hostile", "tasks": [{"name": "t", "action": "transform", "config": {"output": "{{ " + "(" * 20000 + "x }}"}}]}
    assert_error(alice.rest.post("/workflows", body), 400, 3)
    assert alice.rest.get("/users/me").status == 200

