"""boto3 against the local review service (`local-aws review-service`).

The real binary is started by the tests on 127.0.0.1:0 and driven with boto3's
`sagemaker-a2i-runtime` and `sagemaker` clients, changing nothing but endpoint_url:
the same calls a Python user of A2I would make.

Run:  LOCAL_AWS_BIN=/path/to/local-aws python3 -m pytest tests/a2i_boto3 -q
"""

import configparser
import datetime as dt
import json
import os
import selectors
import signal
import subprocess
import time
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

ROLE = "arn:aws:iam::000000000000:role/a2i-local"
WORKTEAM = "arn:aws:sagemaker:us-east-1:000000000000:workteam/private-crowd/local"
TEMPLATE = '<crowd-form><crowd-image-classifier name="annotatedResult" categories="[\'beagle\']"></crowd-image-classifier></crowd-form>'
START_DEADLINE_S = 30


def local_aws_bin() -> str:
    path = os.environ.get("LOCAL_AWS_BIN")
    if not path:
        pytest.fail("set LOCAL_AWS_BIN to the local-aws binary (e.g. target/debug/local-aws)")
    if not os.access(path, os.X_OK):
        pytest.fail(f"LOCAL_AWS_BIN={path} is not an executable file")
    return path


class ReviewService:
    """One `local-aws review-service` process on a state directory."""

    def __init__(self, state_dir: Path, output_dir: Path):
        self.state_dir = state_dir
        self.output_dir = output_dir
        self.proc = None
        self.url = None

    def start(self):
        log = open(self.state_dir.parent / "service.log", "ab")
        self.proc = subprocess.Popen(
            [local_aws_bin(), "review-service", "--listen", "127.0.0.1:0",
             "--state-dir", str(self.state_dir), "--output-dir", str(self.output_dir)],
            stdout=subprocess.PIPE, stderr=log,
        )
        line = self._first_line(time.monotonic() + START_DEADLINE_S)
        prefix = "listening on "
        assert line.startswith(prefix), f"unexpected first line {line!r}"
        self.url = line[len(prefix):].strip()
        assert self.url.startswith("http://127.0.0.1:"), self.url
        return self

    def _first_line(self, deadline: float) -> str:
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        buf = b""
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                pytest.fail("review service printed no address in time")
            if sel.select(timeout=left):
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    pytest.fail(f"review service exited with {self.proc.wait()} before listening")
                buf += chunk
        return buf.split(b"\n", 1)[0].decode()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=10) == 0

    def kill(self):
        self.proc.kill()
        self.proc.wait(timeout=10)

    def credentials(self) -> tuple:
        """The key pair the service made at its first start: `<state>/credentials`, an
        AWS shared-credentials file (profile default)."""
        cp = configparser.ConfigParser()
        assert cp.read(self.state_dir / "credentials"), "the service made no credentials file"
        return cp["default"]["aws_access_key_id"], cp["default"]["aws_secret_access_key"]

    def client(self, service: str, credentials: tuple = None):
        key_id, secret = credentials or self.credentials()
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
            config=Config(retries={"max_attempts": 1}),
        )


@pytest.fixture
def service(tmp_path):
    svc = ReviewService(tmp_path / "state", tmp_path / "objects").start()
    yield svc
    if svc.proc.poll() is None:
        svc.stop()


def make_flow(sm, name: str) -> str:
    try:
        ui_arn = sm.describe_human_task_ui(HumanTaskUiName="dog-breed-ui")["HumanTaskUiArn"]
    except sm.exceptions.ResourceNotFound:
        ui_arn = sm.create_human_task_ui(
            HumanTaskUiName="dog-breed-ui", UiTemplate={"Content": TEMPLATE}
        )["HumanTaskUiArn"]
    return sm.create_flow_definition(
        FlowDefinitionName=name,
        RoleArn=ROLE,
        OutputConfig={"S3OutputPath": "s3://review-bucket/a2i"},
        HumanLoopConfig={
            "WorkteamArn": WORKTEAM,
            "HumanTaskUiArn": ui_arn,
            "TaskTitle": "Dog breed",
            "TaskDescription": "Pick the breed",
            "TaskCount": 1,
        },
    )["FlowDefinitionArn"]


def start(a2i, flow_arn: str, name: str, label: str = "beagle"):
    content = json.dumps({"taskObject": "s3://frames/dev-1/e1.jpg", "initialValue": label})
    return a2i.start_human_loop(
        HumanLoopName=name, FlowDefinitionArn=flow_arn, HumanLoopInput={"InputContent": content}
    )


def error_code(excinfo) -> str:
    return excinfo.value.response["Error"]["Code"]


def list_all(a2i, flow_arn: str, page: int, **filters) -> list:
    names, kwargs = [], dict(FlowDefinitionArn=flow_arn, MaxResults=page, **filters)
    while True:
        out = a2i.list_human_loops(**kwargs)
        assert len(out["HumanLoopSummaries"]) <= page
        names += [s["HumanLoopName"] for s in out["HumanLoopSummaries"]]
        if "NextToken" not in out:
            return names
        kwargs["NextToken"] = out["NextToken"]


def test_control_plane_creates_describes_and_deletes_flow_definitions(service):
    sm = service.client("sagemaker")
    flow_arn = make_flow(sm, "dog-review")
    assert flow_arn == "arn:aws:sagemaker:us-east-1:000000000000:flow-definition/dog-review"
    flow = sm.describe_flow_definition(FlowDefinitionName="dog-review")
    assert flow["FlowDefinitionStatus"] == "Active"
    assert flow["OutputConfig"]["S3OutputPath"] == "s3://review-bucket/a2i"
    assert flow["HumanLoopConfig"]["TaskCount"] == 1
    assert isinstance(flow["CreationTime"], dt.datetime)
    ui = sm.describe_human_task_ui(HumanTaskUiName="dog-breed-ui")
    assert ui["HumanTaskUiStatus"] == "Active"
    assert len(ui["UiTemplate"]["ContentSha256"]) == 64
    with pytest.raises(sm.exceptions.ResourceInUse):
        make_flow(sm, "dog-review")
    with pytest.raises(sm.exceptions.ResourceInUse):
        sm.create_human_task_ui(HumanTaskUiName="dog-breed-ui", UiTemplate={"Content": TEMPLATE})
    with pytest.raises(sm.exceptions.ResourceNotFound):
        sm.describe_flow_definition(FlowDefinitionName="no-such-flow")

    a2i = service.client("sagemaker-a2i-runtime")
    start(a2i, flow_arn, "busy")
    with pytest.raises(sm.exceptions.ResourceInUse):
        sm.delete_flow_definition(FlowDefinitionName="dog-review")
    a2i.stop_human_loop(HumanLoopName="busy")
    sm.delete_flow_definition(FlowDefinitionName="dog-review")
    with pytest.raises(sm.exceptions.ResourceNotFound):
        sm.delete_flow_definition(FlowDefinitionName="dog-review")


def test_start_describe_and_a_second_start_is_a_conflict(service):
    flow_arn = make_flow(service.client("sagemaker"), "dog-review")
    a2i = service.client("sagemaker-a2i-runtime")
    arn = start(a2i, flow_arn, "event-0001")["HumanLoopArn"]
    assert arn == "arn:aws:sagemaker:us-east-1:000000000000:human-loop/event-0001"
    with pytest.raises(a2i.exceptions.ConflictException) as e:
        start(a2i, flow_arn, "event-0001", label="pug")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409
    d = a2i.describe_human_loop(HumanLoopName="event-0001")
    assert d["HumanLoopStatus"] == "InProgress"
    assert d["HumanLoopArn"] == arn
    assert d["FlowDefinitionArn"] == flow_arn
    assert "HumanLoopOutput" not in d
    assert abs(d["CreationTime"] - dt.datetime.now(dt.timezone.utc)) < dt.timedelta(minutes=5)


def test_invalid_names_unknown_loops_and_bad_inputs_are_rejected(service):
    flow_arn = make_flow(service.client("sagemaker"), "dog-review")
    a2i = service.client("sagemaker-a2i-runtime")
    for bad in ["Upper", "under_score", "-lead", "trail-", "x" * 64]:
        with pytest.raises(a2i.exceptions.ValidationException):
            start(a2i, flow_arn, bad)
    with pytest.raises(a2i.exceptions.ResourceNotFoundException) as e:
        a2i.describe_human_loop(HumanLoopName="never-started")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(a2i.exceptions.ResourceNotFoundException):
        a2i.stop_human_loop(HumanLoopName="never-started")
    with pytest.raises(a2i.exceptions.ValidationException):
        a2i.start_human_loop(HumanLoopName="ok", FlowDefinitionArn=flow_arn,
                             HumanLoopInput={"InputContent": "not json"})
    with pytest.raises(a2i.exceptions.ValidationException):
        start(a2i, "arn:aws:sagemaker:us-east-1:000000000000:flow-definition/unknown", "ok")
    with pytest.raises(a2i.exceptions.ValidationException):
        a2i.list_human_loops(FlowDefinitionArn=flow_arn, NextToken="not-a-token")


def test_list_pages_and_filters_by_flow_and_creation_time(service):
    sm = service.client("sagemaker")
    flow_arn, other_arn = make_flow(sm, "dog-review"), make_flow(sm, "other-flow")
    a2i = service.client("sagemaker-a2i-runtime")
    created = []
    for i in range(7):
        start(a2i, flow_arn, f"loop-{i}")
        created.append((f"loop-{i}", a2i.describe_human_loop(HumanLoopName=f"loop-{i}")["CreationTime"]))
    start(a2i, other_arn, "elsewhere")
    names = [n for n, _ in created]

    assert list_all(a2i, flow_arn, 3, SortOrder="Ascending") == names
    assert list_all(a2i, flow_arn, 3, SortOrder="Descending") == names[::-1]
    assert list_all(a2i, other_arn, 3) == ["elsewhere"]
    paged = [s["HumanLoopName"]
             for page in a2i.get_paginator("list_human_loops").paginate(
                 FlowDefinitionArn=flow_arn, SortOrder="Ascending", PaginationConfig={"PageSize": 2})
             for s in page["HumanLoopSummaries"]]
    assert paged == names

    after, before = created[1][1], created[5][1]
    expected = [n for n, t in created if after < t < before]
    assert list_all(a2i, flow_arn, 3, SortOrder="Ascending",
                    CreationTimeAfter=after, CreationTimeBefore=before) == expected
    hour = dt.timedelta(hours=1)
    assert list_all(a2i, flow_arn, 3, CreationTimeAfter=created[-1][1] + hour) == []
    assert list_all(a2i, flow_arn, 3, CreationTimeBefore=created[0][1] - hour) == []
    with pytest.raises(a2i.exceptions.ValidationException):
        a2i.list_human_loops(FlowDefinitionArn=flow_arn, MaxResults=101)


def test_stop_then_delete(service):
    flow_arn = make_flow(service.client("sagemaker"), "dog-review")
    a2i = service.client("sagemaker-a2i-runtime")
    start(a2i, flow_arn, "to-delete")
    with pytest.raises(a2i.exceptions.ValidationException):
        a2i.delete_human_loop(HumanLoopName="to-delete")  # must be stopped first
    a2i.stop_human_loop(HumanLoopName="to-delete")
    assert a2i.describe_human_loop(HumanLoopName="to-delete")["HumanLoopStatus"] == "Stopped"
    a2i.stop_human_loop(HumanLoopName="to-delete")  # stopping again changes nothing
    a2i.delete_human_loop(HumanLoopName="to-delete")
    with pytest.raises(a2i.exceptions.ResourceNotFoundException):
        a2i.describe_human_loop(HumanLoopName="to-delete")
    with pytest.raises(a2i.exceptions.ResourceNotFoundException):
        a2i.delete_human_loop(HumanLoopName="to-delete")
    assert list_all(a2i, flow_arn, 10) == []


def test_state_survives_sigkill_and_restart(service):
    sm = service.client("sagemaker")
    flow_arn = make_flow(sm, "dog-review")
    a2i = service.client("sagemaker-a2i-runtime")
    for i in range(4):
        start(a2i, flow_arn, f"kept-{i}")
    a2i.stop_human_loop(HumanLoopName="kept-0")
    service.kill()  # SIGKILL: only what was fsynced before each answer survives

    service.start()
    a2i = service.client("sagemaker-a2i-runtime")
    assert list_all(a2i, flow_arn, 3, SortOrder="Ascending") == [f"kept-{i}" for i in range(4)]
    assert a2i.describe_human_loop(HumanLoopName="kept-0")["HumanLoopStatus"] == "Stopped"
    assert a2i.describe_human_loop(HumanLoopName="kept-3")["HumanLoopStatus"] == "InProgress"
    with pytest.raises(a2i.exceptions.ConflictException):
        start(a2i, flow_arn, "kept-1")
    assert service.client("sagemaker").describe_flow_definition(
        FlowDefinitionName="dog-review")["FlowDefinitionStatus"] == "Active"


def test_only_requests_signed_with_the_services_own_keys_are_served(service):
    path = service.state_dir / "credentials"
    assert path.stat().st_mode & 0o777 == 0o600
    key_id, secret = service.credentials()
    assert key_id.startswith("LOCAL") and len(secret) == 40
    other = service.client("sagemaker-a2i-runtime", ("AKIAIOSFODNN7EXAMPLE", secret))
    with pytest.raises(other.exceptions.ClientError) as e:
        other.list_human_loops(FlowDefinitionArn="arn:aws:sagemaker:us-east-1:000000000000:flow-definition/x")
    assert error_code(e) == "UnrecognizedClientException"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    wrong = service.client("sagemaker", (key_id, "not-the-secret"))
    with pytest.raises(wrong.exceptions.ClientError) as e:
        wrong.describe_human_task_ui(HumanTaskUiName="x")
    assert error_code(e) == "InvalidSignatureException"
    # The same keys are kept across restarts.
    service.stop()
    service.start()
    assert service.credentials() == (key_id, secret)
    with pytest.raises(service.client("sagemaker").exceptions.ResourceNotFound):
        service.client("sagemaker").describe_human_task_ui(HumanTaskUiName="x")

