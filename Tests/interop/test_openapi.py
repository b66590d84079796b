"""GET /openapi.json: a valid OpenAPI 3.0.3 document that matches the gRPC
API (every RPC of proto/weft/v1 has an operation, every operation is an RPC),
covers the seed's REST design, and whose every route answers on the live
server."""

from __future__ import annotations

import re

import pytest

import weft_helpers as wh

METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
PUBLIC_RPCS = {"/weft.v1.UserService/Register", "/weft.v1.UserService/Login", "/weft.v1.UserService/Refresh",
               # A webhook's URL is its capability (docs/SCHEDULES.md).
               "/weft.v1.TriggerService/DeliverWebhook"}

# The REST routes of the original design (/work/shared/seed), parameter names normalised.
SEED_ROUTES = [
    ("post", "/users/register"), ("post", "/users/login"),
    ("post", "/workflows"), ("get", "/workflows"), ("get", "/workflows/{}"), ("put", "/workflows/{}"),
    ("delete", "/workflows/{}"),
    ("post", "/tasks"), ("get", "/workflows/{}/tasks"), ("get", "/tasks/{}"), ("put", "/tasks/{}"),
    ("delete", "/tasks/{}"),
    ("post", "/workflows/{}/execute"), ("get", "/workflows/{}/executions/{}"),
    ("get", "/workflows/{}/executions/{}/logs"),
    ("get", "/workflows/search"),
    ("post", "/workflows/{}/versions"), ("get", "/workflows/{}/versions"), ("get", "/workflows/{}/versions/{}"),
    ("put", "/workflows/{}/versions/{}/rollback"),
    ("post", "/workflows/{}/schedules"), ("get", "/workflows/{}/schedules"),
    ("delete", "/workflows/{}/schedules/{}"),
    ("post", "/workflows/{}/collaborators"), ("get", "/workflows/{}/collaborators"),
    ("put", "/workflows/{}/collaborators/{}"), ("delete", "/workflows/{}/collaborators/{}"),
    ("post", "/workflows/{}/subscriptions"), ("get", "/workflows/{}/subscriptions"),
    ("delete", "/workflows/{}/subscriptions/{}"),
    ("post", "/workflows/{}/integrations"), ("get", "/workflows/{}/integrations"),
    ("put", "/workflows/{}/integrations/{}"), ("delete", "/workflows/{}/integrations/{}"),
    ("get", "/workflows/{}/stats"), ("get", "/analytics/workflow-executions"),
]


@pytest.fixture(scope="module")
def user(api_server):
    return wh.register_and_login(api_server, "Openapi Reader")


@pytest.fixture(scope="module")
def doc(api_server, user):
    r = user.rest.get("/openapi.json")
    assert r.status == 200, r
    assert (r.header("content-type") or "").startswith("application/json"), r.headers
    return r.json


@pytest.fixture(scope="module")
def operations(doc):
    """[(method, path, operation)] of the document."""
    ops = []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method in METHODS:
                ops.append((method, path, op))
    assert ops
    return ops


@pytest.fixture(scope="module")
def rpcs(protos):
    """{"/weft.v1.Service/Method": MethodDescriptor} of every weft.v1 RPC."""
    out = {}
    for name, svc in wh.v1_services(protos).items():
        for m in svc.methods:
            out[f"/{name}/{m.name}"] = m
    assert len(out) >= 40, sorted(out)
    return out


@pytest.fixture(scope="module")
def messages(protos):
    """{"weft.v1.Name": Descriptor} of every top-level weft.v1 message."""
    out = {}
    for stem in protos.v1.names:
        for msg in getattr(protos.v1, f"{stem}_pb2").DESCRIPTOR.message_types_by_name.values():
            out[msg.full_name] = msg
    return out


def test_document_is_valid_openapi_3_0_3(doc):
    from openapi_spec_validator import validate

    assert doc["openapi"] == "3.0.3"
    validate(doc)  # raises on any violation
    assert doc["info"]["title"] and doc["info"]["version"]


def test_every_rpc_has_an_operation(operations, rpcs):
    by_grpc = {}
    for method, path, op in operations:
        by_grpc.setdefault(op.get("x-grpc-method"), []).append((method, path, op))
    missing = []
    for full, m in sorted(rpcs.items()):
        ops = by_grpc.get(full, [])
        if not any(op.get("operationId") == m.name for _, _, op in ops):
            missing.append(full)
    assert not missing, f"RPCs without a REST operation: {missing}"


def test_every_operation_is_an_rpc(operations, rpcs):
    problems = []
    for method, path, op in operations:
        grpc_method = op.get("x-grpc-method")
        if grpc_method not in rpcs:
            problems.append((method, path, grpc_method, "not an RPC of weft.v1"))
        elif op.get("operationId") != rpcs[grpc_method].name:
            problems.append((method, path, op.get("operationId"), f"operationId is not {rpcs[grpc_method].name}"))
    assert not problems, problems


def test_operation_ids_are_unique(operations):
    ids = [op["operationId"] for _, _, op in operations]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


def test_seed_routes_are_documented(operations):
    documented = {(m, re.sub(r"\{[^}]+\}", "{}", p)) for m, p, _ in operations}
    missing = [r for r in SEED_ROUTES if r not in documented]
    assert not missing, missing


def test_schemas_follow_the_rpc_messages(doc, operations, rpcs, messages):
    schemas = doc["components"]["schemas"]
    problems = []
    for method, path, op in operations:
        m = rpcs[op["x-grpc-method"]]
        body = op.get("requestBody")
        if body is not None and "x-raw-body-field" in op:
            # A raw-body route (webhooks): any JSON object, sent as is into
            # a bytes field of the request message.
            field = m.input_type.fields_by_camelcase_name.get(op["x-raw-body-field"]) or \
                m.input_type.fields_by_name.get(op["x-raw-body-field"])
            if body["content"]["application/json"]["schema"] != {"type": "object"} or field is None \
                    or field.type != field.TYPE_BYTES:
                problems.append((method, path, "raw request body", op["x-raw-body-field"]))
        elif body is not None:
            ref = body["content"]["application/json"]["schema"]["$ref"]
            path_fields = set(re.findall(r"\{([^}]+)\}", path))
            if path_fields:
                # The body of a route with path parameters is the message
                # without the fields the path sets (grpc-gateway's body "*").
                want_ref = f"#/components/schemas/{m.input_type.full_name}.Body"
                body_fields = set(schemas[want_ref.rsplit("/", 1)[-1]].get("properties", {})) if ref == want_ref else None
                want_fields = {f.json_name for f in m.input_type.fields} - path_fields
                if ref != want_ref or body_fields != want_fields:
                    problems.append((method, path, "request", ref, sorted(want_fields ^ (body_fields or set()))))
            elif ref != f"#/components/schemas/{m.input_type.full_name}":
                problems.append((method, path, "request", ref))
        for status, resp in op["responses"].items():
            if status.startswith("2") and "content" in resp:
                (media,) = resp["content"].values()
                ref = media["schema"]["$ref"]
                if ref != f"#/components/schemas/{m.output_type.full_name}":
                    problems.append((method, path, status, ref))
        if not any(s.startswith("2") for s in op["responses"]):
            problems.append((method, path, "no 2xx response"))
    # every documented message schema has exactly the JSON fields of its proto message
    for name, schema in schemas.items():
        if name not in messages:
            continue
        want = {f.json_name for f in messages[name].fields}
        got = set(schema.get("properties", {}))
        if want != got:
            problems.append((name, "fields", sorted(want ^ got)))
    assert not problems, problems


def test_path_and_security_declarations(operations):
    problems = []
    for method, path, op in operations:
        declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
        in_path = set(re.findall(r"\{([^}]+)\}", path))
        if declared != in_path:
            problems.append((method, path, "path params", declared, in_path))
        public = op["x-grpc-method"] in PUBLIC_RPCS
        has_bearer = any("bearer" in req for req in op.get("security", []))
        if public == has_bearer:
            problems.append((method, path, "security", op.get("security")))
    assert not problems, problems


def test_documented_response_schemas_match_real_responses(doc, user):
    """Real JSON validates against the documented schemas (unknown fields forbidden where declared)."""
    from openapi_schema_validator import OAS30Validator

    def check(obj, schema_name):
        schema = {"$ref": f"#/components/schemas/{schema_name}", "components": doc["components"]}
        errors = sorted(OAS30Validator(schema).iter_errors(obj), key=str)
        assert not errors, (schema_name, [e.message for e in errors[:5]])

    r = user.rest.post("/workflows", {"name": "schema check", "description": "d", "tasks": [
        {"name": "Fetch", "action": "http", "config": {"url": "https://example.com"}, "timeout": "3s",
         "retry": {"maxAttempts": 2, "initialBackoff": "1s"}},
        {"name": "Next", "action": "noop", "dependsOn": ["fetch"]}]})
    assert r.status == 201, r
    check(r.json, "weft.v1.Workflow")
    check(user.rest.get("/workflows").json, "weft.v1.ListWorkflowsResponse")
    check(user.rest.get("/workflows/search?query=schema").json, "weft.v1.SearchWorkflowsResponse")
    check(user.rest.get(f"/workflows/{r.json['id']}/tasks").json, "weft.v1.ListTasksResponse")
    check(user.rest.get("/users/me").json, "weft.v1.User")
    err = user.rest.get("/workflows/wf_missing")
    assert err.status == 404
    check(err.json, "Error")
    # and a wrong shape is caught, so the checks above mean something
    with pytest.raises(AssertionError):
        check({"id": 5, "bogusField": True}, "weft.v1.Workflow")


def _fill(path: str) -> str:
    return re.sub(r"\{([^}]+)\}", lambda m: f"dummy_{m.group(1)}", path)


def test_every_documented_route_answers(operations, api_server, user):
    """Each documented path+method is routed and implemented: nothing answers
    404 "no route", 405 or 5xx (501 included)."""
    anon = wh.RestClient(api_server)
    problems = []
    # Logout ends the session whose token the loop uses: it goes last.
    for method, path, op in sorted(operations, key=lambda o: (o[1] == "/users/logout", o[1], o[0])):
        url = _fill(path)
        body = {} if "requestBody" in op else None
        label = f"{method.upper()} {url}"
        streams = any("application/x-ndjson" in (resp.get("content") or {})
                      for resp in op.get("responses", {}).values() if isinstance(resp, dict))
        try:
            # A live stream with nothing to say yet (the caller's notification
            # stream) sends its head with its first message: an open, silent
            # stream is routed (a missing route answers at once).
            r = (user.rest if not streams else
                 wh.RestClient(api_server, user.rest.token, timeout=3.0)).request(method.upper(), url, body)
        except TimeoutError:
            if not streams:
                raise
            r2 = anon.request(method.upper(), url, body)
            if r2.status != 401 or r2.json.get("code") != 16:
                problems.append((label, "without a token", r2))
            continue
        try:
            payload = r.json if r.body else {}
        except AssertionError:
            problems.append((label, r))
            continue
        # Every service is implemented (analytics, the last, in Step 10): no 501.
        if 200 <= r.status < 300 or r.status in (400, 409):
            pass
        elif r.status == 404:
            if payload.get("code") != 5 or "no route" in payload.get("message", ""):
                problems.append((label, r))
        else:
            problems.append((label, r))
        if r.status >= 400 and not isinstance(payload.get("code"), int):
            problems.append((label, "error without a code", r))
        # without a token, protected operations are 401 (and public ones are not)
        if op["x-grpc-method"] not in PUBLIC_RPCS:
            r2 = anon.request(method.upper(), url, body)
            if r2.status != 401 or r2.json.get("code") != 16:
                problems.append((label, "without a token", r2))
    assert not problems, problems
    assert api_server.running()
