"""Organization secrets on real servers: the master key, the API, templates
that read secrets, redaction, masking for viewers and the data directory.

* The API (`/orgs/{orgId}/secrets`): create (201, version 1), list (names and
  metadata only), update (version + 1), delete; names and value sizes at
  their bounds and one past them; admins write, members list, strangers get
  404, anonymous callers 401; no response ever carries a value.
* The master key: a server without one answers secret calls 400
  FAILED_PRECONDITION ("secrets need a master key") and fails tasks that read
  secrets; a key file of 32 raw bytes, 64 hex digits or base64 and the
  WEFT_SECRETS_KEY variable (hex or base64) all work; a key file inside the
  data directory (also through a symlink), readable by others (0644), of the
  wrong length or missing stops the start with a non-zero exit naming it.
* The secret appears nowhere: a server with a key file, tracing on (always_on
  into otlp_receiver.OTLPReceiver) and JSON debug logs runs a workflow that
  sends the secret S in an http header, a URL query parameter and a body to a
  local echo target (which echoes what it got), puts it into a transform
  output and a log line, and into the error of a failing http task.  The
  target did receive S; then S is absent from every API answer (execution,
  list, logs, watch and tail streams, workflow, versions, tasks, audit), from
  the raw bytes of every file of the data directory while the server runs
  and after it stopped, from stdout and stderr, and from every exported span;
  outputs show `[secret:TOKEN]`.
* An external task whose input reads a secret: what the worker reports back
  (its failure, log lines and output echoing the secret) should be redacted
  too.
* An updated value is used by the next execution; a deleted or missing secret
  (or one of another organization) fails the task with a message naming it;
  conditions cannot read secrets.
* Viewers see credential-looking config fields as `[masked]` (workflow,
  list, tasks, versions; REST and gRPC), editors and owners see them; a save
  with a literal credential gets a `warning: 299 weft "..."` header.
* The data directory is 0700 and its files 0600, also after a restart on a
  directory an older version left readable.
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import re
import socket
import stat
import threading
import types
import urllib.parse
import uuid
from pathlib import Path

import grpc
import pytest

import flags_support as fs
import weft_helpers as wh
from otlp_receiver import OTLPReceiver, describe

TIMEOUT = 10
KEY_ID = re.compile(r"^[0-9a-f]{16}$")
SECRET_FIELDS = {"orgId", "name", "version", "keyId", "createdAt", "updatedAt", "updatedBy"}
NO_KEY = "secrets need a master key"
MASK = "[masked]"


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def uid() -> str:
    return uuid.uuid4().hex[:8]


def assert_error(r: wh.RestResponse, status: int, code: int, *fragments: str) -> dict:
    assert r.status == status, r
    body = r.json
    assert body.get("code") == code, body
    for fragment in fragments:
        assert fragment in body.get("message", ""), (fragment, body)
    return body


def write_key(path: Path, content: bytes, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    os.chmod(path, mode)
    return path


def new_key_hex() -> bytes:
    return os.urandom(32).hex().encode()


def make_server(tmp_path_factory, name: str, *args: str, env=None, data_dir: Path | None = None) -> wh.WeftServer:
    base = tmp_path_factory.mktemp(re.sub(r"[^\w-]", "_", name)[:50])
    return wh.WeftServer(wh.weft_bin(), data_dir or base / "data", base / "logs",
                         args=(*wh.API_SERVER_ARGS, *args), name=name, env=env)


def start_must_fail(srv: wh.WeftServer) -> str:
    """Starts `srv`, which must exit non-zero before listening; returns its stderr."""
    try:
        srv.start(timeout=20)
    except RuntimeError:
        pass
    else:
        srv.stop()
        raise AssertionError(f"the server started (listening on {srv.target}); it should have refused to.\n"
                             f"command: {' '.join(srv.command)}\nstderr:\n{srv.stderr_tail()}")
    finally:
        srv.close_files()
    assert srv.returncode not in (None, 0), f"exit code {srv.returncode}; stderr:\n{srv.stderr_tail()}"
    return srv.stderr_text() + srv.stdout_tail()


def secrets_url(org_id: str, name: str = "") -> str:
    return f"/orgs/{org_id}/secrets" + (f"/{name}" if name else "")


def create_secret(user: wh.ApiUser, org_id: str, name: str, value: str) -> dict:
    r = user.rest.post(secrets_url(org_id), {"name": name, "value": value})
    assert r.status == 201, r
    return r.json


def list_secrets(user: wh.ApiUser, org_id: str) -> list:
    r = user.rest.get(secrets_url(org_id))
    assert r.status == 200, r
    return r.json.get("secrets", [])


def terminal(user: wh.ApiUser, wid: str, eid: str) -> dict:
    return fs.wait_status(user, wid, eid, timeout=15)


def ndjson(r: wh.RestResponse) -> list:
    assert r.status == 200, r
    return [json.loads(line) for line in r.body.decode().splitlines() if line.strip()]


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Echo:
    """A threaded HTTP/1.1 server on 127.0.0.1 for http tasks: records every
    request (method, path, query, lower-case headers, body) and answers 200
    JSON echoing them back, so a task's output holds what the target got."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests: list[dict] = []
        echo = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _any(self):
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                url = urllib.parse.urlsplit(self.path)
                seen = {"method": self.command, "path": url.path, "query": url.query,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": body.decode(errors="replace")}
                with echo.lock:
                    echo.requests.append(seen)
                data = json.dumps({"youSent": seen}).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_POST = do_PUT = _any

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def to(self, path: str) -> list[dict]:
        with self.lock:
            return [r for r in self.requests if r["path"] == path]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# ---------------------------------------------------------------------------
# Module fixtures: one server with a key file
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keyfile(tmp_path_factory) -> Path:
    return write_key(tmp_path_factory.mktemp("secrets-key") / "master.key", new_key_hex())


@pytest.fixture(scope="module")
def srv(tmp_path_factory, keyfile, protos):
    s = make_server(tmp_path_factory, "secrets", "--secrets-key-file", str(keyfile))
    s.start(timeout=30)
    yield s
    wh.finish_servers([s])


@pytest.fixture(scope="module")
def echo():
    e = Echo()
    yield e
    e.close()


@pytest.fixture(scope="module")
def team(srv):
    """An organization (admin `admin`) with members `member`, `editor` and
    `viewer`, and an outsider with an organization of their own."""
    admin = wh.register_and_login(srv, "Ada Secrets")
    org_id = wh.own_org_id(srv, admin.token)
    users = {"admin": admin}
    for role in ("member", "editor", "viewer"):
        users[role] = wh.register_and_login(srv, f"{role.capitalize()} Secrets")
        wh.invite_and_accept(srv, admin.token, users[role].token, org_id)
    users["outsider"] = wh.register_and_login(srv, "Otto Outsider")
    return types.SimpleNamespace(org=org_id, **users)


# ---------------------------------------------------------------------------
# 1. The API
# ---------------------------------------------------------------------------


def test_create_list_update_delete_and_no_value_ever_returned(srv, team):
    admin, org = team.admin, team.org
    name = f"API_TOKEN_{uid()}"
    value = f"first-{uuid.uuid4().hex}"
    r = admin.rest.post(secrets_url(org), {"name": name, "value": value})
    assert r.status == 201, r
    created = r.json
    assert set(created) == SECRET_FIELDS, f"a secret shows exactly its metadata: {created}"
    assert (created["orgId"], created["name"], created["version"], created["updatedBy"]) == (org, name, 1, admin.id)
    assert KEY_ID.match(created["keyId"]), created
    assert created["createdAt"] == created["updatedAt"], created
    assert value.encode() not in r.body

    assert_error(admin.rest.post(secrets_url(org), {"name": name, "value": "another-value"}), 409, 6, name)

    listed = [s for s in list_secrets(admin, org) if s["name"] == name]
    assert listed == [created], listed
    member_view = admin.rest.with_token(team.member.token).get(secrets_url(org))
    assert member_view.status == 200 and value.encode() not in member_view.body, member_view
    assert [s for s in member_view.json["secrets"] if s["name"] == name] == [created]

    new_value = f"second-{uuid.uuid4().hex}"
    r = admin.rest.put(secrets_url(org, name), {"value": new_value})
    assert r.status == 200, r
    updated = r.json
    assert set(updated) == SECRET_FIELDS and updated["version"] == 2, updated
    assert (updated["createdAt"], updated["keyId"]) == (created["createdAt"], created["keyId"]), updated
    assert wh.rfc3339_nanos(updated["updatedAt"]) >= wh.rfc3339_nanos(created["updatedAt"]), updated
    assert value.encode() not in r.body and new_value.encode() not in r.body
    r = admin.rest.put(secrets_url(org, name), {"value": new_value + "-3"})
    assert r.status == 200 and r.json["version"] == 3, r
    assert [s["version"] for s in list_secrets(admin, org) if s["name"] == name] == [3]

    # Never a value, in any answer about secrets (also when asked for one).
    for path in (secrets_url(org), secrets_url(org) + f"?name={name}", secrets_url(org, name)):
        got = admin.rest.get(path)
        assert value.encode() not in got.body and new_value.encode() not in got.body, (path, got)

    r = admin.rest.delete(secrets_url(org, name))
    assert r.status in (200, 204), r
    assert [s for s in list_secrets(admin, org) if s["name"] == name] == []
    assert_error(admin.rest.delete(secrets_url(org, name)), 404, 5, name)
    assert_error(admin.rest.put(secrets_url(org, name), {"value": "whatever"}), 404, 5, name)
    # The name is free again.
    assert create_secret(admin, org, name, value)["version"] == 1
    assert admin.rest.delete(secrets_url(org, name)).status in (200, 204)


@pytest.mark.parametrize("name, ok", [
    ("A", True), ("a1_B2", True), ("x" * 64, True),
    ("", False), ("1ABC", False), ("_ABC", False), ("A-B", False), ("A.B", False), ("A B", False),
    ("x" * 65, False), ("ÄBC", False),
])
def test_secret_names_are_checked(team, name, ok):
    r = team.admin.rest.post(secrets_url(team.org), {"name": name, "value": "some-value"})
    if ok:
        assert r.status == 201 and r.json["name"] == name, r
        assert team.admin.rest.delete(secrets_url(team.org, name)).status in (200, 204)
    else:
        body = assert_error(r, 400, 3)
        assert "name" in body["message"], body
        assert name not in [s["name"] for s in list_secrets(team.admin, team.org)]


@pytest.mark.parametrize("size, ok", [(3, False), (4, True), (65536, True), (65537, False), (0, False)])
def test_secret_values_are_4_to_65536_bytes(team, size, ok):
    name = f"SIZE_{size}_{uid()}"
    value = "v" * size
    r = team.admin.rest.post(secrets_url(team.org), {"name": name, "value": value})
    if ok:
        assert r.status == 201, r
        r = team.admin.rest.put(secrets_url(team.org, name), {"value": value})
        assert r.status == 200 and r.json["version"] == 2, r
        if size == 4:  # an update is checked the same way
            assert_error(team.admin.rest.put(secrets_url(team.org, name), {"value": "vvv"}), 400, 3, "value")
        assert team.admin.rest.delete(secrets_url(team.org, name)).status in (200, 204)
    else:
        assert_error(r, 400, 3, "value")
        assert name not in [s["name"] for s in list_secrets(team.admin, team.org)]


def test_admins_write_members_list_strangers_see_nothing(srv, team, protos):
    org = team.org
    name = f"ROLE_{uid()}"
    create_secret(team.admin, org, name, "role-check-value")
    for who in ("member", "editor", "viewer"):
        user = getattr(team, who)
        assert name in [s["name"] for s in list_secrets(user, org)], who
        assert_error(user.rest.post(secrets_url(org), {"name": f"X{uid()}", "value": "nope-nope"}), 403, 7)
        assert_error(user.rest.put(secrets_url(org, name), {"value": "nope-nope"}), 403, 7)
        assert_error(user.rest.delete(secrets_url(org, name)), 403, 7)
    out = team.outsider
    assert_error(out.rest.get(secrets_url(org)), 404, 5)
    assert_error(out.rest.post(secrets_url(org), {"name": f"X{uid()}", "value": "nope-nope"}), 404, 5)
    assert_error(out.rest.put(secrets_url(org, name), {"value": "nope-nope"}), 404, 5)
    assert_error(out.rest.delete(secrets_url(org, name)), 404, 5)
    anon = wh.RestClient(srv)
    assert_error(anon.get(secrets_url(org)), 401, 16)
    assert_error(anon.post(secrets_url(org), {"name": "ANON", "value": "nope-nope"}), 401, 16)
    # Nothing changed.
    assert [(s["name"], s["version"]) for s in list_secrets(team.admin, org) if s["name"] == name] == [(name, 1)]

    # The same over gRPC: the Secret message has no value field at all.
    pb = protos.v1.secrets_pb2
    assert "value" not in pb.Secret.DESCRIPTOR.fields_by_name
    ch = wh.new_channel(srv.target)
    try:
        stub = protos.v1.secrets_pb2_grpc.SecretServiceStub(ch)
        got = stub.ListSecrets(pb.ListSecretsRequest(org_id=org), metadata=wh.grpc_auth(team.viewer), timeout=TIMEOUT)
        assert name in [s.name for s in got.secrets]
        with pytest.raises(grpc.RpcError) as info:
            stub.CreateSecret(pb.CreateSecretRequest(org_id=org, name="GRPC_X", value="nope-nope"),
                              metadata=wh.grpc_auth(team.viewer), timeout=TIMEOUT)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED, info.value
        with pytest.raises(grpc.RpcError) as info:
            stub.ListSecrets(pb.ListSecretsRequest(org_id=org), metadata=wh.grpc_auth(out), timeout=TIMEOUT)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND, info.value
    finally:
        ch.close()


# ---------------------------------------------------------------------------
# 2. The master key
# ---------------------------------------------------------------------------


def test_a_server_without_a_master_key_refuses_secrets(tmp_path_factory, monkeypatch):
    for var in ("WEFT_SECRETS_KEY", "WEFT_SECRETS_KEY_FILE", "WEFT_SECRETS_OLD_KEY_FILES"):
        monkeypatch.delenv(var, raising=False)
    s = make_server(tmp_path_factory, "secrets-nokey")
    s.start(timeout=30)
    try:
        user = wh.register_and_login(s, "Nora Nokey")
        org = wh.own_org_id(s, user.token)
        body = assert_error(user.rest.post(secrets_url(org), {"name": "TOKEN", "value": "abcdefgh"}), 400, 9, NO_KEY)
        assert "--secrets-key-file" in body["message"], body
        assert_error(user.rest.put(secrets_url(org, "TOKEN"), {"value": "abcdefgh"}), 400, 9, NO_KEY)
        assert [s_ for s_ in user.rest.get(secrets_url(org)).json.get("secrets", [])] == []
        # A task that reads a secret fails saying why.
        wf = fs.create_wf(user, [{"key": "t", "name": "T", "action": "transform",
                                  "config": {"output": {"v": "{{ secrets.TOKEN }}"}}, "retry": {"maxAttempts": 1}}])
        done = terminal(user, wf["id"], fs.execute(user, wf["id"]))
        assert done["status"] == "Failed", done
        assert NO_KEY in fs.by_key(done)["t"]["error"], done
    finally:
        wh.finish_servers([s])


def _key_forms(tmp: Path):
    raw = os.urandom(32)
    return {
        "raw file": (["--secrets-key-file", str(write_key(tmp / "raw.key", raw))], {}),
        "hex file": (["--secrets-key-file", str(write_key(tmp / "hex.key", raw.hex().encode() + b"\n"))], {}),
        "base64 file": (["--secrets-key-file", str(write_key(tmp / "b64.key", base64.b64encode(raw) + b"\n"))], {}),
        "hex variable": ([], {"WEFT_SECRETS_KEY": raw.hex()}),
        "base64 variable": ([], {"WEFT_SECRETS_KEY": base64.b64encode(raw).decode()}),
        "file variable": ([], {"WEFT_SECRETS_KEY_FILE": str(write_key(tmp / "env.key", raw.hex().encode()))}),
    }


@pytest.mark.parametrize("form", ["raw file", "hex file", "base64 file", "hex variable", "base64 variable",
                                  "file variable"])
def test_every_form_of_the_master_key_works(tmp_path_factory, monkeypatch, form):
    for var in ("WEFT_SECRETS_KEY", "WEFT_SECRETS_KEY_FILE"):
        monkeypatch.delenv(var, raising=False)
    args, env = _key_forms(tmp_path_factory.mktemp("keyforms"))[form]
    s = make_server(tmp_path_factory, f"secrets-key-{form}", *args, env=env)
    s.start(timeout=30)
    try:
        user = wh.register_and_login(s, "Kim Keyform")
        org = wh.own_org_id(s, user.token)
        value = f"kf-{uuid.uuid4().hex}"
        created = create_secret(user, org, "TOKEN", value)
        assert KEY_ID.match(created["keyId"]), created
        wf = fs.create_wf(user, [{"key": "t", "name": "T", "action": "transform",
                                  "config": {"output": {"v": "{{ secrets.TOKEN }}"}}}])
        done = terminal(user, wf["id"], fs.execute(user, wf["id"]))
        assert done["status"] == "Completed", done
        assert fs.by_key(done)["t"]["output"] == {"v": "[secret:TOKEN]"}, done
    finally:
        wh.finish_servers([s])


@pytest.mark.parametrize("case", ["inside the data dir", "in a subdirectory of the data dir",
                                  "symlink into the data dir", "mode 0644", "mode 0640", "wrong length", "missing"])
def test_bad_key_files_stop_the_start(tmp_path_factory, monkeypatch, case):
    for var in ("WEFT_SECRETS_KEY", "WEFT_SECRETS_KEY_FILE"):
        monkeypatch.delenv(var, raising=False)
    base = tmp_path_factory.mktemp("badkey")
    data = base / "data"
    data.mkdir()
    outside = base / "keys"
    key = {
        "inside the data dir": lambda: write_key(data / "master.key", new_key_hex()),
        "in a subdirectory of the data dir": lambda: write_key(data / "keys" / "master.key", new_key_hex()),
        "symlink into the data dir": lambda: _symlink(outside / "link.key",
                                                      write_key(data / "real.key", new_key_hex())),
        "mode 0644": lambda: write_key(outside / "open.key", new_key_hex(), 0o644),
        "mode 0640": lambda: write_key(outside / "group.key", new_key_hex(), 0o640),
        "wrong length": lambda: write_key(outside / "short.key", os.urandom(20).hex().encode()),
        "missing": lambda: outside / "nowhere.key",
    }[case]()
    s = wh.WeftServer(wh.weft_bin(), data, base / "logs", args=(*wh.API_SERVER_ARGS, "--secrets-key-file", str(key)),
                      name=f"badkey-{case}".replace(" ", "-"))
    text = start_must_fail(s)
    expected = {
        "inside the data dir": "inside the data directory",
        "in a subdirectory of the data dir": "inside the data directory",
        "symlink into the data dir": "inside the data directory",
        "mode 0644": "readable by others",
        "mode 0640": "readable by others",
        "wrong length": "32 bytes",
        "missing": "cannot read",
    }[case]
    assert expected in text, f"{case}: stderr should say {expected!r}:\n{text[-3000:]}"
    if case != "wrong length":
        assert str(key) in text, f"{case}: stderr should name the file {key}:\n{text[-3000:]}"
    assert "listening on" not in text


def _symlink(link: Path, target: Path) -> Path:
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)
    return link


# ---------------------------------------------------------------------------
# 3. The secret appears nowhere
# ---------------------------------------------------------------------------


def _data_files(data_dir: Path) -> dict:
    out = {}
    for path in sorted(data_dir.rglob("*")):
        if path.is_file():
            out[str(path.relative_to(data_dir))] = path.read_bytes()
    return out


def _forms(secret: bytes) -> dict:
    """The secret as sent, and encoded as base64 and hex (a store that kept
    it merely encoded would still leak it)."""
    return {"raw": secret, "base64": base64.b64encode(secret), "hex": secret.hex().encode()}


def _where(secret: bytes, blobs: dict) -> list:
    return sorted(f"{name} ({form})" for name, blob in blobs.items()
                  for form, needle in _forms(secret).items() if needle in blob)


def test_the_secret_appears_nowhere_but_at_the_target(tmp_path_factory, keyfile, echo, protos):
    secret = uuid.uuid4().hex  # 32 hex characters
    S = secret.encode()
    with OTLPReceiver() as rx:
        s = make_server(tmp_path_factory, "secrets-nowhere", "--secrets-key-file", str(keyfile),
                        "--otel-endpoint", rx.endpoint, "--trace-sampler", "always_on",
                        "--log-format", "json", "--log-level", "debug", env={"OTEL_BSP_SCHEDULE_DELAY": "200"})
        s.start(timeout=30)
        try:
            _secret_nowhere(s, rx, echo, protos, secret, S)
        finally:
            wh.finish_servers([s])
        # After a clean stop (WAL checkpointed into the databases): still nowhere.
        after = _data_files(s.data_dir)
        assert after and "weft.sqlite" in after and "logs.sqlite" in after, sorted(after)
        assert not _where(S, after), f"the secret is in these data files after the stop: {_where(S, after)}"
        out = s.stdout_path.read_bytes() + s.stderr_path.read_bytes()
        assert S not in out, [ln for ln in out.decode(errors="replace").splitlines() if secret in ln][:5]
        assert not [sp for sp in rx.spans() if secret in repr(sp)], describe(
            [sp for sp in rx.spans() if secret in repr(sp)])


def _secret_nowhere(s: wh.WeftServer, rx: OTLPReceiver, echo: Echo, protos, secret: str, S: bytes):
    admin = wh.register_and_login(s, "Sam Secret")
    org = wh.own_org_id(s, admin.token)
    create_secret(admin, org, "TOKEN", secret)
    tag = uid()
    ok_path, bad_port = f"/echo/{tag}", closed_port()
    wf = fs.create_wf(admin, [
        {"key": "call", "name": "Call", "action": "http",
         "config": {"url": echo.url(ok_path) + "?token={{ secrets.TOKEN }}&plain=1", "method": "POST",
                    "headers": {"Authorization": "Bearer {{ secrets.TOKEN }}", "X-Trace-Me": "yes"},
                    "body": {"token": "{{secrets.TOKEN}}", "note": "sent {{ secrets.TOKEN }} here"}}},
        {"key": "shape", "name": "Shape", "action": "transform", "dependsOn": ["call"],
         "config": {"output": {"token": "{{secrets.TOKEN}}", "text": "t={{ secrets.TOKEN }}!",
                               "echoed": "{{ tasks.call.output }}"}}},
        {"key": "say", "name": "Say", "action": "log", "dependsOn": ["shape"],
         "config": {"message": "the token is {{ secrets.TOKEN }} (logged)", "level": "Warning"}},
        {"key": "broken", "name": "Broken", "action": "http", "dependsOn": ["say"],
         "retry": {"maxAttempts": 1, "continueOnFailure": True},
         "config": {"url": f"http://127.0.0.1:{bad_port}/nope/{{{{ secrets.TOKEN }}}}"}},
    ])
    assert S not in json.dumps(wf).encode()
    wid = wf["id"]
    eid = fs.execute(admin, wid)
    done = terminal(admin, wid, eid)
    tasks = fs.by_key(done)

    # It was used: the target got S in the header, the query and the body.
    got = echo.to(ok_path)
    assert len(got) == 1, got
    assert got[0]["headers"].get("authorization") == f"Bearer {secret}", got[0]
    assert urllib.parse.parse_qs(got[0]["query"]).get("token") == [secret], got[0]
    assert json.loads(got[0]["body"]) == {"token": secret, "note": f"sent {secret} here"}, got[0]

    # What the execution shows: redacted, everywhere.
    assert tasks["call"]["status"] == "Completed", done
    assert tasks["shape"]["status"] == "Completed" and tasks["say"]["status"] == "Completed", done
    assert tasks["shape"]["output"]["token"] == "[secret:TOKEN]", tasks["shape"]
    assert tasks["shape"]["output"]["text"] == "t=[secret:TOKEN]!", tasks["shape"]
    echoed = tasks["call"]["output"]["body"]["youSent"]
    assert echoed["headers"]["authorization"] == "Bearer [secret:TOKEN]", echoed
    assert urllib.parse.parse_qs(echoed["query"]).get("token") == ["[secret:TOKEN]"], echoed
    assert json.loads(echoed["body"]) == {"token": "[secret:TOKEN]", "note": "sent [secret:TOKEN] here"}, echoed
    assert tasks["broken"]["status"] == "Failed", done
    assert "[secret:TOKEN]" in tasks["broken"]["error"], tasks["broken"]
    logs = fs.all_logs(admin, wid, eid)
    assert any(e["message"] == "the token is [secret:TOKEN] (logged)" for e in logs), [e["message"] for e in logs]

    # Every answer about it.
    base = f"/workflows/{wid}/executions/{eid}"
    answers = {
        "execution": admin.rest.get(base),
        "executions": admin.rest.get(f"/workflows/{wid}/executions"),
        "logs": admin.rest.get(base + "/logs?pageSize=1000"),
        "watch": admin.rest.get(base + "/watch"),
        "tail": admin.rest.get(base + "/logs/tail"),
        "workflow": admin.rest.get(f"/workflows/{wid}"),
        "workflows": admin.rest.get("/workflows"),
        "tasks": admin.rest.get(f"/workflows/{wid}/tasks"),
        "versions": admin.rest.get(f"/workflows/{wid}/versions"),
        "version 1": admin.rest.get(f"/workflows/{wid}/versions/1"),
        "secrets": admin.rest.get(secrets_url(org)),
        "audit": admin.rest.get(f"/audit?orgId={org}&pageSize=1000"),
    }
    for what, r in answers.items():
        assert r.status == 200, (what, r)
        assert not _where(S, {what: r.body}), f"{what} shows the secret: {r.body.decode(errors='replace')[:3000]}"
    assert "[secret:TOKEN]".encode() in answers["watch"].body, answers["watch"]
    assert "[secret:TOKEN]".encode() in answers["tail"].body, answers["tail"]
    ch = wh.new_channel(s.target)
    try:
        pb = protos.v1.executions_pb2
        stub = protos.v1.executions_pb2_grpc.ExecutionServiceStub(ch)
        reply = stub.GetExecution(pb.GetExecutionRequest(workflow_id=wid, execution_id=eid),
                                  metadata=wh.grpc_auth(admin), timeout=TIMEOUT)
        assert S not in reply.SerializeToString()
        events = list(stub.WatchExecution(pb.WatchExecutionRequest(workflow_id=wid, execution_id=eid),
                                          metadata=wh.grpc_auth(admin), timeout=TIMEOUT))
        assert events and not [e for e in events if S in e.SerializeToString()]
    finally:
        ch.close()

    # The use is audited, by name.
    uses = [e for e in answers["audit"].json["events"] if e["action"] == "secret.use" and e["resourceId"] == eid]
    assert uses and all(e["actorId"] == "system" and e["resourceType"] == "execution" for e in uses), uses
    assert all(e["detail"].get("secrets") == ["TOKEN"] for e in uses), uses
    assert sorted(e["detail"].get("task") for e in uses) == ["broken", "call", "say", "shape"], uses

    # The spans of the execution arrived, none carries S.
    rx.wait_for(lambda spans: [sp for sp in spans if sp.name == "weft.execution"
                               and sp.attr("weft.execution.id") == eid and sp.end_ns], 10,
                f"the weft.execution span of {eid}")
    rx.wait_for(lambda spans: [sp for sp in spans if sp.kind == "CLIENT" and str(sp.attr("url.full", "")).startswith(
        echo.url(ok_path))], 10, "the CLIENT span of the call to the echo target")
    leaked = [sp for sp in rx.spans() if secret in repr(sp)]
    assert not leaked, f"spans carrying the secret:\n{describe(leaked)}"

    # The data files while the server runs (WAL included).
    files = _data_files(s.data_dir)
    assert {"weft.sqlite", "weft.sqlite-wal", "logs.sqlite"} <= set(files), sorted(files)
    assert not _where(S, files), f"the secret is in these data files: {_where(S, files)}"
    # Not on stdout / stderr (JSON debug logs).
    for path in (s.stdout_path, s.stderr_path):
        text = path.read_bytes()
        assert S not in text, [ln for ln in text.decode(errors="replace").splitlines() if secret in ln][:5]
    # Sanity: the needle search works (the store does hold the workflow's reference).
    assert any(b"secrets.TOKEN" in blob for blob in files.values()), "the workflow is not in the data files?"


def test_what_an_external_worker_reports_back_is_redacted(srv, team):
    """An external task's input reads a secret; the worker (the attempt) echoes
    what it was given in its failure, its log lines and its output.  Those are
    the attempt's output, error and log lines: redacted like any other.
    """
    from test_workers import complete, ext, fail, new_queue, poll

    admin, org = team.admin, team.org
    name, secret = f"WORKER_{uid().upper()}", uuid.uuid4().hex
    create_secret(admin, org, name, secret)
    q = new_queue()
    wf = fs.create_wf(admin, [ext("job", q, input={"token": f"{{{{ secrets.{name} }}}}", "note": "plain"},
                                  retry={"maxAttempts": 2, "initialBackoff": "0.05s", "maxBackoff": "0.05s"})])
    eid = fs.execute(admin, wf["id"])

    def lease():
        r = poll(admin, q, wait="5s", lease="30s")
        assert r.status == 200 and r.json.get("task"), r
        return r.json["task"]

    first = lease()
    assert first["input"]["note"] == "plain", first
    r = fail(admin, first["leaseToken"], f"the target refused {json.dumps(first['input'])}", kind="external")
    assert r.status == 200, r
    second = lease()
    assert second["attempt"] == 2, second
    r = complete(admin, second["leaseToken"], {"echo": second["input"], "text": f"got {second['input']['token']}"},
                 [f"worker saw {second['input']['token']}", f"input was {json.dumps(second['input'])}"])
    assert r.status == 200, r
    done = terminal(admin, wf["id"], eid)
    assert done["status"] == "Completed", done

    S = secret.encode()
    base = f"/workflows/{wf['id']}/executions/{eid}"
    answers = {what: admin.rest.get(path) for what, path in (
        ("execution", base), ("logs", base + "/logs?pageSize=1000"), ("tail", base + "/logs/tail"),
        ("watch", base + "/watch"))}
    leaks = {what: r.body.decode(errors="replace")[:1500] for what, r in answers.items()
             if r.status != 200 or _where(S, {what: r.body})}
    files = _where(S, _data_files(srv.data_dir))
    assert not leaks and not files, (
        f"the worker was given the secret and reported it back; it is not redacted in {sorted(leaks)} "
        f"and in the data files {files}:\n" + "\n".join(f"{k}: {v}" for k, v in leaks.items()))
    job = fs.by_key(done)["job"]
    assert job["output"]["echo"]["note"] == "plain", job


# ---------------------------------------------------------------------------
# 4. Updated, deleted and missing secrets; conditions
# ---------------------------------------------------------------------------


def test_an_updated_value_is_used_and_a_deleted_one_fails_the_task(team, echo):
    admin, org = team.admin, team.org
    name = f"ROTATE_{uid()}"
    first, second = f"one-{uuid.uuid4().hex}", f"two-{uuid.uuid4().hex}"
    create_secret(admin, org, name, first)
    path = f"/rotate/{uid()}"
    wf = fs.create_wf(admin, [{"key": "call", "name": "Call", "action": "http", "retry": {"maxAttempts": 1},
                               "config": {"url": echo.url(path),
                                          "headers": {"X-Api-Key": f"{{{{ secrets.{name} }}}}"}}}])
    assert terminal(admin, wf["id"], fs.execute(admin, wf["id"]))["status"] == "Completed"
    r = admin.rest.put(secrets_url(org, name), {"value": second})
    assert r.status == 200, r
    assert terminal(admin, wf["id"], fs.execute(admin, wf["id"]))["status"] == "Completed"
    assert [q["headers"].get("x-api-key") for q in echo.to(path)] == [first, second]

    assert admin.rest.delete(secrets_url(org, name)).status in (200, 204)
    done = terminal(admin, wf["id"], fs.execute(admin, wf["id"]))
    assert done["status"] == "Failed", done
    assert name in fs.by_key(done)["call"]["error"], done
    assert len(echo.to(path)) == 2, "the task ran without its secret"


def test_a_missing_secret_fails_the_task_naming_it(team):
    admin = team.admin
    missing = f"NOT_THERE_{uid()}"
    wf = fs.create_wf(admin, [
        {"key": "t", "name": "T", "action": "transform", "retry": {"maxAttempts": 1},
         "config": {"output": {"v": f"x {{{{ secrets.{missing} }}}}"}}},
        {"key": "after", "name": "After", "action": "noop", "dependsOn": ["t"]},
    ])
    done = terminal(admin, wf["id"], fs.execute(admin, wf["id"]))
    assert done["status"] == "Failed", done
    t = fs.by_key(done)["t"]
    assert t["status"] == "Failed" and missing in t["error"], t
    assert fs.by_key(done)["after"]["status"] != "Completed", done
    assert missing in done.get("error", ""), done


def test_another_organizations_secret_is_not_there(team, srv):
    """A secret of org A is invisible to a workflow of org B with the same name."""
    other = team.outsider
    name = f"ORG_ONLY_{uid()}"
    create_secret(team.admin, team.org, name, f"only-a-{uid()}")
    wf = fs.create_wf(other, [{"key": "t", "name": "T", "action": "transform", "retry": {"maxAttempts": 1},
                               "config": {"output": {"v": f"{{{{ secrets.{name} }}}}"}}}])
    done = terminal(other, wf["id"], fs.execute(other, wf["id"]))
    assert done["status"] == "Failed" and name in fs.by_key(done)["t"]["error"], done


@pytest.mark.parametrize("expression", ["secrets.TOKEN == 'abc'", "{{ secrets.TOKEN }}",
                                        "input.x == 1 || secrets.TOKEN != ''"])
def test_conditions_cannot_read_secrets(team, expression):
    r = team.admin.rest.post("/workflows", {"name": f"cond {uid()}", "tasks": [
        {"key": "check", "name": "Check", "action": "condition",
         "config": {"expression": expression, "then": ["yes"], "else": []}},
        {"key": "yes", "name": "Yes", "action": "noop", "dependsOn": ["check"]},
    ]})
    body = assert_error(r, 400, 3, "secrets")
    assert "check" in body["message"] and "condition" in body["message"], body


# ---------------------------------------------------------------------------
# 5. Masking for viewers, warnings for literal credentials
# ---------------------------------------------------------------------------


LITERALS = {
    "Authorization": "Bearer lit-auth-7f3a9c",
    "X-Api-Key": "lit-apikey-5e2b1d",
    "Cookie": "sid=lit-cookie-9a8b7c",
    "X-Auth-Token": "lit-xauth-3c4d5e",
}
URL_PASSWORD = "lit-urlpw-6b5a4f"
OUTPUT_LITERALS = {"db_password": "lit-dbpw-1a2b3c", "apiKey": "lit-outkey-4d5e6f", "sessionToken": "lit-sess-7a8b9c",
                   "clientSecret": "lit-csec-2b3c4d"}


def _credential_workflow(owner: wh.ApiUser) -> wh.RestResponse:
    return owner.rest.post("/workflows", {"name": f"creds {uid()}", "tasks": [
        {"key": "call", "name": "Call", "action": "http",
         "config": {"url": f"https://deployer:{URL_PASSWORD}@example.com/hook?x=1", "method": "POST",
                    "headers": {**LITERALS, "Accept": "application/json",
                                "X-Service-Token": "Bearer {{ secrets.PROXY_TOKEN }}"}}},
        {"key": "shape", "name": "Shape", "action": "transform", "dependsOn": ["call"],
         "config": {"output": {**OUTPUT_LITERALS, "note": "plain words", "ref": "{{ secrets.OTHER }}"}}},
    ]})


def test_viewers_see_credentials_masked_editors_and_owners_see_them(srv, team, protos):
    owner = team.admin
    r = _credential_workflow(owner)
    assert r.status == 201, r
    wf = r.json
    wid = wf["id"]
    for user, role in ((team.viewer, "viewer"), (team.editor, "editor")):
        assert owner.rest.post(f"/workflows/{wid}/collaborators", {"userId": user.id, "role": role}).status == 201
    call_id = next(t["id"] for t in wf["tasks"] if t["key"] == "call")
    shape_id = next(t["id"] for t in wf["tasks"] if t["key"] == "shape")
    literals = [*LITERALS.values(), URL_PASSWORD, *OUTPUT_LITERALS.values()]
    paths = [f"/workflows/{wid}", "/workflows", f"/workflows/{wid}/tasks", f"/tasks/{call_id}", f"/tasks/{shape_id}",
             f"/workflows/{wid}/versions", f"/workflows/{wid}/versions/1"]

    def answers(user):
        out = {}
        for path in paths:
            got = user.rest.get(path)
            assert got.status == 200, (path, got)
            out[path] = got
        return out

    for path, got in answers(team.viewer).items():
        shown = [lit for lit in literals if lit.encode() in got.body]
        assert not shown, f"a viewer sees {shown} in GET {path}: {got.body.decode()[:2000]}"
    viewed = team.viewer.rest.get(f"/workflows/{wid}").json
    assert viewed["role"] == "viewer", viewed
    call = next(t for t in viewed["tasks"] if t["key"] == "call")["config"]
    shape = next(t for t in viewed["tasks"] if t["key"] == "shape")["config"]
    assert {k: call["headers"][k] for k in LITERALS} == {k: MASK for k in LITERALS}, call
    assert call["headers"]["Accept"] == "application/json", call
    assert call["headers"]["X-Service-Token"] == "Bearer {{ secrets.PROXY_TOKEN }}", call
    assert call["url"] == f"https://deployer:{MASK}@example.com/hook?x=1", call
    assert call["method"] == "POST", call
    assert {k: shape["output"][k] for k in OUTPUT_LITERALS} == {k: MASK for k in OUTPUT_LITERALS}, shape
    assert (shape["output"]["note"], shape["output"]["ref"]) == ("plain words", "{{ secrets.OTHER }}"), shape
    version = team.viewer.rest.get(f"/workflows/{wid}/versions/1").json
    vcall = next(t for t in version["tasks"] if t["key"] == "call")["config"]
    assert vcall["headers"]["Authorization"] == MASK, version

    for user in (team.editor, owner):
        seen = answers(user)
        for path in (f"/workflows/{wid}", f"/workflows/{wid}/tasks", f"/tasks/{call_id}",
                     f"/workflows/{wid}/versions/1"):
            hidden = [lit for lit in [*LITERALS.values(), URL_PASSWORD] if lit.encode() not in seen[path].body]
            assert not hidden, f"{user.name} should see {hidden} in GET {path}: {seen[path].body.decode()[:1500]}"
        hidden = [lit for lit in OUTPUT_LITERALS.values() if lit.encode() not in seen[f"/tasks/{shape_id}"].body]
        assert not hidden, f"{user.name} should see {hidden} in GET /tasks/{shape_id}"
        mine = user.rest.get(f"/workflows/{wid}").json
        assert [t["config"] for t in mine["tasks"]] == [t["config"] for t in wf["tasks"]], mine

    # gRPC shows the viewer the same masks.
    ch = wh.new_channel(srv.target)
    try:
        stub = protos.v1.workflows_pb2_grpc.WorkflowServiceStub(ch)
        got = stub.GetWorkflow(protos.v1.workflows_pb2.GetWorkflowRequest(workflow_id=wid),
                               metadata=wh.grpc_auth(team.viewer), timeout=TIMEOUT)
        raw = got.SerializeToString()
        assert not [lit for lit in literals if lit.encode() in raw], got
        headers = dict(next(t for t in got.tasks if t.key == "call").config["headers"])
        assert headers["Authorization"] == MASK and headers["Accept"] == "application/json", headers
        mine = stub.GetWorkflow(protos.v1.workflows_pb2.GetWorkflowRequest(workflow_id=wid),
                                metadata=wh.grpc_auth(team.editor), timeout=TIMEOUT)
        assert dict(next(t for t in mine.tasks if t.key == "call").config["headers"])["Authorization"] == \
            LITERALS["Authorization"]
    finally:
        ch.close()


WARNING_RE = re.compile(r'^299 weft "literal credentials in (?P<where>.+): store them as organization secrets '
                        r'and write \{\{secrets\.NAME\}\}"$')


def test_a_literal_credential_gets_a_warning_header(team, protos):
    owner = team.admin
    r = _credential_workflow(owner)
    assert r.status == 201, r
    m = WARNING_RE.match(r.header("warning") or "")
    assert m, f"warning header: {r.header('warning')!r}"
    assert "task call" in m["where"] and "Authorization" in m["where"], m["where"]
    wid = r.json["id"]

    # Secret references only: no warning.
    clean = owner.rest.post("/workflows", {"name": f"clean {uid()}", "tasks": [
        {"key": "call", "name": "Call", "action": "http",
         "config": {"url": "https://example.com/hook", "headers": {"Authorization": "Bearer {{secrets.API_TOKEN}}",
                                                                   "Accept": "application/json"}}}]})
    assert clean.status == 201 and clean.header("warning") is None, clean.headers

    # An update that adds a literal credential is warned about too.
    got = owner.rest.get(f"/workflows/{clean.json['id']}").json
    got["tasks"][0]["config"]["headers"]["X-Api-Key"] = "lit-upd-1234"
    upd = owner.rest.put(f"/workflows/{clean.json['id']}", got)
    assert upd.status == 200, upd
    m = WARNING_RE.match(upd.header("warning") or "")
    assert m and "X-Api-Key" in m["where"], upd.headers
    # A literal only in a URL's user info.
    url_only = owner.rest.post("/workflows", {"name": f"url {uid()}", "tasks": [
        {"key": "get", "name": "Get", "action": "http", "config": {"url": "https://bob:pw-lit-99@example.com/"}}]})
    assert url_only.status == 201, url_only
    m = WARNING_RE.match(url_only.header("warning") or "")
    assert m and "task get" in m["where"] and "url" in m["where"], url_only.headers
    # A task added through the task API.
    task = owner.rest.post("/tasks", {"workflowId": clean.json["id"], "key": "more", "name": "More", "action": "http",
                                      "config": {"url": "https://example.com/more",
                                                 "headers": {"X-Auth-Token": "lit-task-5678"}}})
    assert task.status == 201, task
    m = WARNING_RE.match(task.header("warning") or "")
    assert m and "task more" in m["where"] and "X-Auth-Token" in m["where"], task.headers
    # Over gRPC the warning is response metadata.
    ch = wh.new_channel(owner.rest.server.target)
    try:
        pb = protos.v1.workflows_pb2
        stub = protos.v1.workflows_pb2_grpc.WorkflowServiceStub(ch)
        req = pb.CreateWorkflowRequest(name=f"grpc creds {uid()}", tasks=[protos.v1.tasks_pb2.Task(
            key="call", name="Call", action="http",
            config=wh.proto_struct({"url": "https://example.com/", "headers": {"Cookie": "sid=lit-grpc-42"}}))])
        _, call = stub.CreateWorkflow.with_call(req, metadata=wh.grpc_auth(owner), timeout=TIMEOUT)
        warning = dict(call.initial_metadata() or ()).get("warning", "")
        m = WARNING_RE.match(warning)
        assert m and "Cookie" in m["where"], call.initial_metadata()
    finally:
        ch.close()
    # The workflow was stored as sent (the warning refuses nothing).
    stored = owner.rest.get(f"/workflows/{wid}").json
    assert next(t for t in stored["tasks"] if t["key"] == "call")["config"]["headers"]["Authorization"] == \
        LITERALS["Authorization"]


# ---------------------------------------------------------------------------
# 6. The data directory
# ---------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _assert_private(data: Path):
    assert _mode(data) == 0o700, f"data directory {data} has mode {oct(_mode(data))}"
    files = {p.name: _mode(p) for p in data.iterdir() if p.is_file()}
    for name in ("weft.sqlite", "weft.sqlite-wal", "logs.sqlite", "logs.sqlite-wal", "auth-keys.json"):
        assert name in files, f"{name} missing from {sorted(files)}"
    loose = {name: oct(mode) for name, mode in files.items() if mode != 0o600}
    assert not loose, f"files of the data directory not 0600: {loose}"


def test_the_data_directory_is_private(srv, team):
    # (the `team` fixture made the server write: users, organizations)
    _assert_private(srv.data_dir)


def test_a_restart_tightens_what_was_left_readable(tmp_path):
    r = fs.Restartable(tmp_path, "secrets-perms")
    try:
        first = r.start()
        wh.register_and_login(first, "Perm Check")
        r.stop_clean(first)
        os.chmod(r.data, 0o755)
        for p in r.data.iterdir():
            if p.is_file():
                os.chmod(p, 0o644)
        (r.data / "notes.txt").write_text("left by an operator")
        os.chmod(r.data / "notes.txt", 0o644)
        second = r.start()
        wh.register_and_login(second, "Perm Again")
        _assert_private(r.data)
    finally:
        r.teardown()
