"""Security properties, tested through the real parts: the engine's exported state, the stack file, the emulator
as `python -m emulator` serves it, and the activated shell's passphrase handling.

* No credential from the environment reaches the state, even with every Google credential variable set.
* A secret config value stays ciphertext in the stack file and in the state.
* The emulator binds loopback by default, bounds request bodies, and keeps objects inside its data dir whatever
  their names.
* The local stack's built-in passphrase is never used for another stack.
"""

from __future__ import annotations

import base64
import binascii
import http.client
import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
import yaml

from emulator.server import serve_in_thread
from emulator.settings import EmulatorSettings
from tests.conftest import REPO, emulator_settings
from tests.e2e.cli import make_project
from tests.e2e.test_activate import clone, shell  # noqa: F401 - `clone` is a fixture

# -- credentials and secrets in the state ------------------------------------------------------------------

CANARY = uuid.uuid4().hex[:12]  # unique per run, so a hit can only come from this run's environment
FAKE_KEY_ID = f"0fake{CANARY}privatekeyid0000000000"
FAKE_EMAIL = f"leak-canary-{CANARY}@fake-project.iam.gserviceaccount.com"
FAKE_KEY_BODY = f"MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQLeakCanary{CANARY}"
FAKE_OAUTH_TOKEN = f"ya29.fake-oauth-{CANARY}-a0AfH6SMBx"
FAKE_CLOUDSDK_TOKEN = f"ya29.fake-cloudsdk-{CANARY}-b1BgI7TNCy"
SECRET_VALUE = f"other-token-plaintext-{CANARY}"
SECRET_DISPLAY_NAME = f"secret-display-name-{CANARY}"
SECRET_STRINGS = (FAKE_KEY_ID, FAKE_EMAIL, FAKE_KEY_BODY, FAKE_OAUTH_TOKEN, FAKE_CLOUDSDK_TOKEN)
# What a real credential looks like, whoever's it is.
CREDENTIAL_PATTERNS = re.compile(r"ya29\.|-----BEGIN [A-Z ]*PRIVATE KEY|\"private_key(_id)?\"|Bearer |"
                                 r"\"refresh_token\"|\"client_secret\"")


def fake_service_account(path: Path) -> Path:
    path.write_text(json.dumps({
        "type": "service_account", "project_id": "fake-project", "private_key_id": FAKE_KEY_ID,
        "private_key": f"-----BEGIN PRIVATE KEY-----\n{FAKE_KEY_BODY}\n-----END PRIVATE KEY-----\n",
        "client_email": FAKE_EMAIL, "client_id": "100000000000000000001",
        "token_uri": "https://oauth2.googleapis.com/token"}))
    return path


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    """A stack `up` against the emulator, run with every Google credential variable set to a fake, and with two
    secret config values: `other:token` (a namespace the program does not read) and a declared key."""
    tmp = tmp_path_factory.mktemp("security")
    with serve_in_thread(emulator_settings(tmp / "emulator")) as served:
        project = make_project(tmp, served.url)
        key_file = fake_service_account(tmp / "fake-service-account.json")
        project.env.update({
            "GOOGLE_APPLICATION_CREDENTIALS": str(key_file),
            "GOOGLE_CREDENTIALS": key_file.read_text(),  # the gcp provider's own variable
            "GOOGLE_OAUTH_ACCESS_TOKEN": FAKE_OAUTH_TOKEN,
            "CLOUDSDK_AUTH_ACCESS_TOKEN": FAKE_CLOUDSDK_TOKEN,
        })
        project.run("config", "set", "--secret", "other:token", SECRET_VALUE)
        project.run("config", "set", "--secret", "translation-tuning:tunedModelDisplayName", SECRET_DISPLAY_NAME)
        up = project.run("up", "--yes", timeout=900)
        assert project.outputs()["state"] == "JOB_STATE_SUCCEEDED"
        yield project, up


def provider_pickles(deployment: dict) -> list[bytes]:
    """The dynamic providers' serialized code (`__provider`, base64 of a pickle) of every resource, decoded."""
    blobs = []
    for resource in deployment["deployment"].get("resources", []):
        for props in (resource.get("inputs", {}), resource.get("outputs", {})):
            value = props.get("__provider")
            if isinstance(value, dict):  # a secret: {"4dabf18193072939515e22adb298388d": ..., "plaintext": "\"...\""}
                value = json.loads(value["plaintext"])
            if isinstance(value, str):
                try:
                    blobs.append(base64.b64decode(value, validate=True))
                except binascii.Error:
                    blobs.append(value.encode())
    return blobs


def test_the_state_holds_no_credential_from_the_environment(deployed):
    project, up = deployed
    exported = project.run("stack", "export", "--show-secrets").stdout
    deployment = json.loads(exported)
    pickles = provider_pickles(deployment)
    assert len(pickles) >= 4  # bucket, two datasets, job
    state_files = [path for path in (project.dir.parent / "state").rglob("*") if path.is_file()]
    assert state_files

    for secret in SECRET_STRINGS:
        assert secret not in exported
        assert all(secret.encode() not in blob for blob in pickles)
        assert all(secret not in path.read_text(errors="replace") for path in state_files), secret
        assert secret not in up.stdout + up.stderr
    assert not CREDENTIAL_PATTERNS.search(exported), CREDENTIAL_PATTERNS.search(exported)
    assert not any(CREDENTIAL_PATTERNS.search(blob.decode("latin-1")) for blob in pickles)


def test_a_secret_config_value_stays_ciphertext(deployed):
    project, _ = deployed
    stack_file = yaml.safe_load((project.dir / f"Pulumi.{project.stack}.yaml").read_text())
    assert SECRET_VALUE not in json.dumps(stack_file)
    assert list(stack_file["config"]["other:token"]) == ["secure"]
    assert stack_file["config"]["other:token"]["secure"].startswith("v1:")

    assert SECRET_VALUE not in project.run("stack", "export").stdout
    assert SECRET_VALUE not in project.run("config").stdout  # the listing shows [secret]
    state_files = [path for path in (project.dir.parent / "state").rglob("*") if path.is_file()]
    assert all(SECRET_VALUE not in path.read_text(errors="replace") for path in state_files)
    # ... and it really is set, and readable with the stack's passphrase.
    assert project.run("config", "get", "other:token").stdout.strip() == SECRET_VALUE


def test_a_declared_key_set_as_secret_stays_secret_in_the_state(deployed):
    project, _ = deployed
    stored = project.run("config", "get", "translation-tuning:tunedModelDisplayName").stdout.strip()
    assert stored == SECRET_DISPLAY_NAME
    assert SECRET_DISPLAY_NAME not in project.run("stack", "export").stdout


# -- the emulator -------------------------------------------------------------------------------------------


def listening_addresses(port: int) -> list[str]:
    """Local addresses of the LISTEN sockets on `port`, from /proc/net/tcp and tcp6 (hex, as the kernel writes)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            fields = row.split()
            address, port_hex = fields[1].rsplit(":", 1)
            if int(port_hex, 16) == port and fields[3] == "0A":  # 0A: LISTEN
                found.append(address)
    return found


def test_the_emulator_listens_on_loopback_only_by_default(tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith("TT_EMULATOR_")}
    assert EmulatorSettings.model_fields["host"].default == "127.0.0.1"
    process = subprocess.Popen([sys.executable, "-m", "emulator", "--port", "0", "--data-dir", str(tmp_path / "data")],
                               cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        first = process.stdout.readline()
        match = re.fullmatch(r"emulator listening on http://(\S+):(\d+)\n", first)
        assert match, first
        host, port = match.group(1), int(match.group(2))
        assert host == "127.0.0.1"
        assert listening_addresses(port) == ["0100007F"]  # 127.0.0.1, and no IPv4 or IPv6 wildcard
        assert requests.get(f"http://127.0.0.1:{port}/_emulator/health", timeout=30).ok
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture
def small_limits(tmp_path):
    """An emulator with small body limits, so oversized requests are cheap to send."""
    settings = emulator_settings(tmp_path / "data").model_copy(update={"max_json_bytes": 64 * 1024,
                                                                       "max_upload_bytes": 256 * 1024})
    with serve_in_thread(settings) as running:
        assert requests.post(f"{running.url}/storage/v1/b?project=p", json={"name": "bkt"}, timeout=30).ok
        yield running


def declared_only(url: str, method: str, path: str, length: int, headers: dict[str, str] | None = None):
    """Send only the headers of a request declaring a `length`-byte body; the answer comes without the body."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.putrequest(method, path)
    for name, value in {"Content-Type": "application/json", "Content-Length": str(length), **(headers or {})}.items():
        connection.putheader(name, value)
    connection.endheaders()
    response = connection.getresponse()
    body = json.loads(response.read())
    connection.close()
    return response.status, body


JOBS = "/v1/projects/security-test/locations/us-central1/tuningJobs"


def test_the_default_json_limit_refuses_an_oversized_body_before_reading_it(tmp_path):
    with serve_in_thread(EmulatorSettings(port=0, data_dir=tmp_path / "data")) as served:
        limit = served.state.settings.max_json_bytes
        assert limit == 10 * 1024 * 1024
        # Only the headers are sent: the answer does not wait for the 10 MiB body.
        status, body = declared_only(served.url, "POST", JOBS, limit + 1)
        assert (status, body["error"]["code"], body["error"]["status"]) == (413, 413, "OUT_OF_RANGE")
        assert f"{limit + 1} bytes exceeds the limit of {limit} bytes" in body["error"]["message"]
        # Uploads are bounded too: 1 GiB (the dataset limit) plus slack, tested at a smaller size below.
        assert served.state.settings.max_upload_bytes == 1024**3 + 1024**2


def test_streamed_bodies_over_the_limit_are_cut_off(small_limits):
    url = small_limits.url

    def chunks(total: int):  # a generator: requests sends it chunked, with no Content-Length to trust
        sent = 0
        while sent < total:
            size = min(16 * 1024, total - sent)
            sent += size
            yield b" " * size

    job = requests.post(f"{url}{JOBS}", data=chunks(64 * 1024 + 1), timeout=30,
                        headers={"Content-Type": "application/json"})
    assert job.status_code == 413 and "exceeds the limit of 65536 bytes" in job.json()["error"]["message"]

    media = requests.post(f"{url}/upload/storage/v1/b/bkt/o", params={"uploadType": "media", "name": "big"},
                          data=chunks(256 * 1024 + 1), timeout=30)
    assert media.status_code == 413 and "maximum object size of 262144 bytes" in media.json()["error"]["message"]

    declared = requests.post(f"{url}/upload/storage/v1/b/bkt/o", params={"uploadType": "media", "name": "big"},
                             data=b" " * (256 * 1024 + 1), timeout=30)  # with its Content-Length
    assert declared.status_code == 413
    assert "Upload of 262145 bytes exceeds the maximum object size" in declared.json()["error"]["message"]

    related = (b'--sep\r\nContent-Type: application/json\r\n\r\n{"name": "big"}\r\n--sep\r\n'
               b"Content-Type: application/octet-stream\r\n\r\n" + b"x" * (256 * 1024 + 1) + b"\r\n--sep--\r\n")
    multipart = requests.post(f"{url}/upload/storage/v1/b/bkt/o", params={"uploadType": "multipart"}, timeout=30,
                              headers={"Content-Type": "multipart/related; boundary=sep"},
                              data=(related[start:start + 16384] for start in range(0, len(related), 16384)))
    assert multipart.status_code == 413 and "maximum object size" in multipart.json()["error"]["message"]

    resumable = requests.post(f"{url}/upload/storage/v1/b/bkt/o", params={"uploadType": "resumable"},
                              json={"name": "big"}, headers={"X-Upload-Content-Length": str(256 * 1024 + 1)},
                              timeout=30)
    assert resumable.status_code == 413

    assert requests.get(f"{url}/storage/v1/b/bkt/o", timeout=30).json().get("items", []) == []
    root = small_limits.state.store.root
    assert [path for path in root.rglob("*") if path.is_file()] == []  # no blob, no half-written temp file


# Names GCS itself refuses (https://cloud.google.com/storage/docs/objects#naming): a 400, nothing stored.
REFUSED_NAMES = {"dot": ".", "dot-dot": "..", "line-feed": "a\nb", "carriage-return": "a\rb", "too-long": "x" * 1025,
                 "acme": ".well-known/acme-challenge/token"}
# Names GCS accepts, that would escape a folder if an implementation made paths of them.
PATH_LIKE_NAMES = ["../../tt-escape-{tag}", "../../../../../../tmp/tt-escape-{tag}", "/tmp/tt-escape-{tag}",
                   "a/../../tt-escape-{tag}", "..\\..\\tt-escape-{tag}", "tt-escape-{tag}\x00.jsonl", "%2e%2e/tt-{tag}",
                   "./tt-escape-{tag}"]


def upload_media(url: str, bucket: str, name: str, data: bytes) -> requests.Response:
    return requests.post(f"{url}/upload/storage/v1/b/{bucket}/o", params={"uploadType": "media", "name": name},
                         data=data, timeout=30)


@pytest.mark.parametrize("name", REFUSED_NAMES.values(), ids=REFUSED_NAMES.keys())
def test_object_names_gcs_refuses_get_a_400(small_limits, name):
    response = upload_media(small_limits.url, "bkt", name, b"data")
    assert (response.status_code, response.json()["error"]["status"]) == (400, "INVALID_ARGUMENT")
    assert requests.get(f"{small_limits.url}/storage/v1/b/bkt/o", timeout=30).json().get("items", []) == []


def test_path_like_object_names_stay_inside_their_bucket_and_the_data_dir(tmp_path):
    """GCS names are opaque keys in a flat namespace (`../x` and `/x` are valid names there), so the emulator
    accepts them as the service does; it never makes a file path of a name, so none can leave its bucket or
    the data dir."""
    tag = uuid.uuid4().hex[:8]
    names = [name.format(tag=tag) for name in PATH_LIKE_NAMES]
    outside = tmp_path / "outside"
    data_dir = outside / "inside" / "data"
    with serve_in_thread(emulator_settings(data_dir)) as served:
        url = served.url
        for bucket in ("bkt", "other"):
            requests.post(f"{url}/storage/v1/b?project=p", json={"name": bucket}, timeout=30).raise_for_status()
        for index, name in enumerate(names):
            response = upload_media(url, "bkt", name, f"payload {index}".encode())
            assert response.status_code == 200, response.text
            assert response.json()["name"] == name

        listed = requests.get(f"{url}/storage/v1/b/bkt/o", timeout=30).json()["items"]
        assert sorted(item["name"] for item in listed) == sorted(names)
        assert requests.get(f"{url}/storage/v1/b/other/o", timeout=30).json().get("items", []) == []
        for index, name in enumerate(names):  # each one is exactly its own object
            media = requests.get(f"{url}/storage/v1/b/bkt/o/{quote(name, safe='')}", params={"alt": "media"},
                                 timeout=30)
            assert media.content == f"payload {index}".encode()
            assert requests.get(f"{url}/storage/v1/b/other/o/{quote(name, safe='')}", timeout=30).status_code == 404

        # Reading a host file through a name, or through a dataset URI, finds no object.
        for name in ("../../../../../../etc/passwd", "/etc/passwd"):
            read = requests.get(f"{url}/storage/v1/b/bkt/o/{quote(name, safe='')}", params={"alt": "media"},
                                timeout=30)
            assert read.status_code == 404 and b"root:" not in read.content
        job = requests.post(f"{url}{JOBS}", timeout=30, json={
            "baseModel": "translation-llm-002",
            "supervisedTuningSpec": {"trainingDatasetUri": "gs://bkt/../../../../../../etc/passwd"}})
        assert job.status_code == 400 and "does not exist" in job.json()["error"]["message"]
        assert "root:" not in job.text

        # Bucket names are checked too.
        for bucket in ("..", "../evil", "a\x00b", "/abs"):
            created = requests.post(f"{url}/storage/v1/b?project=p", json={"name": bucket}, timeout=30)
            assert created.status_code == 400, (bucket, created.text)

    # On disk: nothing beside the data dir, nothing at any path a name spells, and blobs named by hash only.
    assert [path.name for path in outside.iterdir()] == ["inside"]
    assert [path.name for path in (outside / "inside").iterdir()] == ["data"]
    for base in (data_dir, data_dir / "objects", data_dir / "objects" / "blobs", REPO, Path.cwd(), Path("/")):
        for name in names:
            assert not (base / name.replace("\x00", "")).exists()
    assert not list(Path("/tmp").glob(f"tt-escape-{tag}*"))
    blobs = [path for path in (data_dir / "objects").rglob("*") if path.is_file()]
    assert len(blobs) == len(names)
    assert all(re.fullmatch(r"[0-9a-f]{64}-\d+", path.name) and path.parent.parent.name == "blobs" for path in blobs)


# -- the local passphrase ---------------------------------------------------------------------------------------

MESSAGE = ("error: stack 'dev' encrypts its secrets with a passphrase: export PULUMI_CONFIG_PASSPHRASE (or "
           "PULUMI_CONFIG_PASSPHRASE_FILE) first; only the local stack has a built-in one")


def test_the_local_passphrase_is_never_used_for_another_stack(clone):  # noqa: F811 - the imported fixture
    dev_file = clone / "Pulumi.dev.yaml"
    committed = dev_file.read_text()

    # 1. No passphrase exported: every command that would open dev's secrets stops, however dev is named,
    #    and even while `local` (which has the built-in passphrase) is the selected stack.
    attempts = ["preview --stack dev", "up --yes -s dev", "stack init dev",
                "config set --secret other:token x --stack=dev", "config get other:token -sdev",
                "refresh --yes --stack dev", "-s dev preview"]
    script = ". tools/pulumi/activate && pulumi stack select --create local && " + "; ".join(
        f"pulumi {command}; echo \"rc=$?\"" for command in attempts)
    result = shell(clone, script)
    assert result.stdout.count("rc=1") == len(attempts), result.stdout + result.stderr
    assert [line for line in result.stderr.splitlines() if line != "Created stack 'local'"] == [MESSAGE] * len(attempts)
    assert not list((clone / ".pulumi-state").rglob("dev.json"))
    assert dev_file.read_text() == committed

    # 2. The activated shell does not export the built-in passphrase: no child process can pick it up.
    env = shell(clone, ". tools/pulumi/activate && env && echo \"local=$TT_LOCAL_PASSPHRASE\"")
    local_passphrase = env.stdout.strip().splitlines()[-1].removeprefix("local=")
    assert local_passphrase
    assert local_passphrase not in env.stdout.strip().rsplit("\n", 1)[0]
    assert "PULUMI_CONFIG_PASSPHRASE" not in env.stdout

    # 3. The user's own passphrase is passed through unchanged: dev is created and encrypted with it, while a
    #    local-stack command in the same shell still gets the built-in one.
    own = f"users-own-dev-passphrase-{CANARY}"
    made = shell(clone, ". tools/pulumi/activate && pulumi stack init dev && "
                        "pulumi config set --secret other:token dev-secret --stack dev && "
                        "pulumi stack select local && pulumi config set --secret other:token local-secret",
                 PULUMI_CONFIG_PASSPHRASE=own)
    assert made.returncode == 0, made.stdout + made.stderr
    assert "encryptionsalt: v1:" in dev_file.read_text()

    def config_get(stack: str, passphrase: str) -> subprocess.CompletedProcess:
        # `command pulumi`: the engine itself, without the activate function choosing a passphrase.
        return shell(clone, f". tools/pulumi/activate && command pulumi config get other:token --stack {stack}",
                     PULUMI_CONFIG_PASSPHRASE=passphrase)

    assert config_get("dev", own).stdout.strip() == "dev-secret"
    assert config_get("local", local_passphrase).stdout.strip() == "local-secret"
    wrong = config_get("dev", local_passphrase)
    assert wrong.returncode != 0 and "incorrect passphrase" in wrong.stderr

    # 4. Decided: a passphrase the user exports is theirs to choose, so the function passes even the local one
    #    through unchanged rather than second-guessing it; what it never does is substitute the built-in one.
    #    Exported for dev, the local passphrase therefore opens nothing there.
    explicit = shell(clone, ". tools/pulumi/activate && pulumi config get other:token --stack dev",
                     PULUMI_CONFIG_PASSPHRASE=local_passphrase)
    assert explicit.returncode != 0 and "incorrect passphrase" in explicit.stderr
    assert shell(clone, ". tools/pulumi/activate && pulumi config get other:token --stack dev",
                 PULUMI_CONFIG_PASSPHRASE=own).stdout.strip() == "dev-secret"
