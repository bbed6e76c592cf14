"""The SAM template (template.yaml, statemachine/, samconfig.toml): linted by cfn-lint and the AWS SAM CLI
(`sam validate --lint`, `sam validate`, offline), transformed by the SAM translator and linted again, and
checked against the code and settings it points at.

Every value is the template's own: parameters resolve to their ``Default``, pseudo parameters to fixed
stand-ins, resources to their logical ids (a resource's name or ARN only exists once deployed). Each
structural check is a function of the template that raises AssertionError; ``test_check_can_fail`` runs
each one on a mutated copy and requires it to fail.

aws-sam-cli lives in its own venv (its pins conflict with requirements-dev.lock): scripts/sam-venv.sh.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import json
import os
import re
import stat
import subprocess
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml
from conftest import REPO, tool
from lambda_support import EVENTS, render

from pipelines.core.engine import rules_in_force
from pipelines.core.registry import load_registry

TEMPLATE = REPO / "template.yaml"
SAMCONFIG = REPO / "samconfig.toml"
SAM_VENV = REPO / ".venv-sam"
PSEUDO = {
    "AWS::Partition": "aws",
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "123456789012",
    "AWS::URLSuffix": "amazonaws.com",
}


def sam_venv(name: str) -> str:
    path = SAM_VENV / "bin" / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run scripts/sam-venv.sh (installs aws-sam-cli into .venv-sam)")
    return str(path)


def cfn_lint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("cfn-lint"), "--format", "json", "--", str(path)], capture_output=True, text=True, timeout=300
    )


def offline_env(home: Path) -> dict[str, str]:
    """An environment for the SAM CLI with dummy credentials in which any AWS API call fails: the AWS
    endpoint and every proxy point at a closed local port, so a command that needs AWS cannot pass."""
    dead = "http://127.0.0.1:9"
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),  # SAM CLI writes ~/.aws-sam/metadata.json; keep it out of the real home
        "LANG": "C.UTF-8",
        "SAM_CLI_TELEMETRY": "0",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": PSEUDO["AWS::Region"],
        "AWS_REGION": PSEUDO["AWS::Region"],
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ENDPOINT_URL": dead,
        "AWS_MAX_ATTEMPTS": "1",
        "HTTP_PROXY": dead,
        "HTTPS_PROXY": dead,
    }


# -- reading the template -------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """YAML loader that accepts CloudFormation's short-form tags (!Ref, !GetAtt, !Sub ...)."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {suffix: value}


_Loader.add_multi_constructor("!", _tag)


def template() -> dict[str, Any]:
    return yaml.load(TEMPLATE.read_text(), Loader=_Loader)


@dataclass
class Stack:
    """The template (and the state machine definition it names), with values resolved to its defaults."""

    t: dict[str, Any]
    asl: str
    samconfig: dict[str, Any] = field(default_factory=lambda: tomllib.loads(SAMCONFIG.read_text()))

    @classmethod
    def load(cls) -> Stack:
        t = template()
        uri = t["Resources"]["PrefixBatchStateMachine"]["Properties"]["DefinitionUri"]
        return cls(t, (REPO / uri).read_text())

    @property
    def res(self) -> dict[str, Any]:
        return self.t["Resources"]

    def props(self, logical_id: str) -> dict[str, Any]:
        return self.res[logical_id]["Properties"]

    def default(self, name: str) -> Any:
        spec = self.t["Parameters"][name]
        assert "Default" in spec, f"parameter {name} has no Default"
        return spec["Default"]

    def of_type(self, type_: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.res.items() if v["Type"] == type_}

    def _name(self, name: str) -> str:
        if name in PSEUDO:
            return PSEUDO[name]
        if name == "AWS::StackName":
            return str(self.samconfig["default"]["global"]["parameters"]["stack_name"])
        if name in self.t["Parameters"]:
            value = self.default(name)
            return ",".join(map(str, value)) if isinstance(value, list) else str(value)
        assert name in self.res, f"!Ref {name}: no such parameter or resource"
        return name.lower()  # a resource's name only exists once deployed: its logical id stands in

    def resolve(self, node: Any) -> Any:
        if isinstance(node, list):
            return [self.resolve(n) for n in node]
        if not isinstance(node, dict):
            return node
        if set(node) == {"Ref"}:
            return self._name(node["Ref"])
        if set(node) == {"GetAtt"}:
            res, attr = node["GetAtt"]
            assert res in self.res, f"!GetAtt {res}.{attr}: no such resource"
            return f"{res}.{attr}"
        if set(node) == {"Sub"}:
            text, extra = (node["Sub"], {}) if isinstance(node["Sub"], str) else node["Sub"]

            def sub(m: re.Match[str]) -> str:
                name = m.group(1)
                if name in extra:
                    return str(self.resolve(extra[name]))
                if "." in name and not name.startswith("AWS::"):
                    return self.resolve({"GetAtt": name.split(".", 1)})
                return self._name(name)

            return re.sub(r"\$\{([^}!]+)\}", sub, text)
        if set(node) == {"FindInMap"}:
            mapping, key, sub_key = (str(self.resolve(n)) for n in node["FindInMap"])
            return self.t["Mappings"][mapping][key][sub_key]
        return {k: self.resolve(v) for k, v in node.items()}

    def definition(self) -> dict[str, Any]:
        """The state machine definition after CloudFormation's DefinitionSubstitutions."""
        subs = self.props("PrefixBatchStateMachine")["DefinitionSubstitutions"]
        values = {k: str(self.resolve(v)) for k, v in subs.items()}
        used = set(re.findall(r"\$\{(\w+)\}", self.asl))
        assert used == set(values), f"placeholders {sorted(used)} != substitutions {sorted(values)}"
        text = re.sub(r"\$\{(\w+)\}", lambda m: values[m.group(1)], self.asl)
        return yaml.safe_load(text)

    def env(self) -> dict[str, str]:
        variables = self.props("Function")["Environment"]["Variables"]
        return {k: str(self.resolve(v)) for k, v in variables.items()}


_FN = {
    "GetAtt",
    "Sub",
    "FindInMap",
    "Equals",
    "Not",
    "Contains",
    "If",
    "Join",
    "Select",
    "Split",
    "And",
    "Or",
}


def to_cfn(node: Any) -> Any:
    """Back from the loader's short names ({"GetAtt": ...}) to CloudFormation's ({"Fn::GetAtt": ...})."""
    if isinstance(node, list):
        return [to_cfn(n) for n in node]
    if isinstance(node, dict):
        if len(node) == 1 and next(iter(node)) in _FN:
            ((k, v),) = node.items()
            return {f"Fn::{k}": to_cfn(v)}
        return {k: to_cfn(v) for k, v in node.items()}
    return node


def statements(policy: dict[str, Any]) -> list[dict[str, Any]]:
    st = policy["Statement"]
    return st if isinstance(st, list) else [st]


def as_list(x: Any) -> list[Any]:
    return x if isinstance(x, list) else [x]


def role_statements(stack: Stack, role: str) -> list[dict[str, Any]]:
    return [s for p in stack.props(role).get("Policies", []) for s in statements(p["PolicyDocument"])]


def by_sid(sts: list[dict[str, Any]], sid: str) -> dict[str, Any]:
    found = [s for s in sts if s.get("Sid") == sid]
    assert len(found) == 1, f"expected one statement {sid!r}, got {len(found)}"
    return found[0]


@contextmanager
def template_settings(stack: Stack) -> Iterator[Any]:
    """config.settings as the deployed function builds them: MEDIA_WORKER_* from the template's
    environment (its defaults), nothing else."""
    from config.settings import load_settings

    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDIA_WORKER_")}
    env.update({k: v for k, v in stack.env().items() if k.startswith("MEDIA_WORKER_")})
    with mock.patch.dict(os.environ, env, clear=True):
        yield load_settings(None)


# -- EventBridge / Lambda event filtering, for the operators the template uses --------------------------


def _leaf(cond: Any, value: Any) -> bool:
    if isinstance(cond, str | int | float | bool) or cond is None:
        return value == cond
    if isinstance(cond, dict) and len(cond) == 1:
        ((op, arg),) = cond.items()
        if op == "prefix" and isinstance(arg, str):
            return isinstance(value, str) and value.startswith(arg)
        if op == "anything-but" and isinstance(arg, dict) and set(arg) == {"prefix"}:
            return isinstance(value, str) and not value.startswith(arg["prefix"])
        if op == "anything-but" and isinstance(arg, str | list):
            return value not in as_list(arg)
    raise AssertionError(f"event pattern operator {cond!r}: not one this test evaluates")


def pattern_matches(pattern: dict[str, Any], event: dict[str, Any]) -> bool:
    """EventBridge pattern semantics: fields AND, list entries OR (as documented for event buses and
    for Lambda event filtering)."""
    for name, cond in pattern.items():
        if name.startswith("$"):
            raise AssertionError(f"event pattern operator {name!r}: not one this test evaluates")
        value = event.get(name) if isinstance(event, dict) else None
        if isinstance(cond, dict):
            if not isinstance(value, dict) or not pattern_matches(cond, value):
                return False
        elif isinstance(cond, list):
            if not any(_leaf(c, value) for c in cond):
                return False
        else:
            raise AssertionError(f"event pattern field {name!r}: {cond!r} is neither an object nor a list")
    return True


def delivered(stack: Stack, key: str) -> bool:
    """Would an "Object Created" event for ``key`` reach the function (EventBridge rule, then the event
    source mapping's filter on the SQS message body)?"""
    bucket = stack.resolve({"Ref": "MediaBucket"})
    event = render(
        EVENTS / "eventbridge-object-created.json", bucket=bucket, key=key, size="1", etag="e", version="v"
    )
    if not pattern_matches(stack.resolve(stack.props("UploadRule")["EventPattern"]), event):
        return False
    upload = stack.props("Function")["Events"]["Upload"]["Properties"]
    filters = [
        json.loads(stack.resolve(f["Pattern"])) for f in upload.get("FilterCriteria", {}).get("Filters", [])
    ]
    return not filters or any(pattern_matches(f, {"body": event}) for f in filters)


# -- structural checks (each a function of the template; test_check_can_fail mutates and reruns them) ---


def check_sam_image_function(stack: Stack) -> None:
    assert stack.t["Transform"] == "AWS::Serverless-2016-10-31"
    assert "ImageUri" not in stack.t["Parameters"]
    fn = stack.res["Function"]
    assert fn["Type"] == "AWS::Serverless::Function"
    props = fn["Properties"]
    assert props["PackageType"] == "Image" and "ImageUri" not in props and "CodeUri" not in props
    (handler,) = props["ImageConfig"]["Command"]
    module, func = handler.rsplit(".", 1)
    assert importlib.util.find_spec(module), f"no module {module}"
    assert callable(getattr(importlib.import_module(module), func, None)), handler
    meta = fn["Metadata"]
    assert (REPO / meta["DockerContext"] / meta["Dockerfile"]).is_file() and meta["DockerTag"]


def check_access_point_and_key_prefix(stack: Stack) -> None:
    prefix = stack.default("WorkspacePrefix")
    ap = stack.resolve(stack.props("AccessPoint"))
    assert ap["RootDirectory"]["Path"] == "/" + prefix
    perms = ap["RootDirectory"]["CreationPermissions"]
    assert (ap["PosixUser"]["Uid"], ap["PosixUser"]["Gid"]) == ("1000", "1000")
    assert (perms["OwnerUid"], perms["OwnerGid"]) == ("1000", "1000") and perms["Permissions"]
    env = stack.env()
    assert env["MEDIA_WORKER_AWS__KEY_PREFIX"] == prefix + "/"
    (fs,) = stack.props("Function")["FileSystemConfigs"]
    assert fs["Arn"] == {"GetAtt": ["AccessPoint", "AccessPointArn"]}
    assert env["MEDIA_WORKER_WORKSPACE"] == fs["LocalMountPath"]
    with template_settings(stack) as settings:
        assert settings.aws.key_prefix == prefix + "/"
        assert settings.aws.bucket == stack.resolve({"Ref": "MediaBucket"})


def check_upload_routing(stack: Stack) -> None:
    with template_settings(stack) as settings:
        kp = settings.aws.key_prefix
        names = sorted({p for r in rules_in_force(settings, load_registry()) for p in r.pipelines})
        sources = ["in/a.jpg", "photo.jpg", "in/b c/d.mp4", "processed.jpg", "processedx/a.pdf"]
        outputs = [settings.layout.manifest_path(s) for s in sources]
        outputs += [settings.layout.output_path(s, p, "v", "x") for s in sources for p in names]
        assert all(settings.layout.is_output(o) for o in outputs)  # what the layout itself calls outputs
    assert names and kp
    for s in sources:
        assert delivered(stack, kp + s), f"upload {kp + s} would not reach the function"
    for o in outputs:
        assert not delivered(stack, kp + o), f"output {kp + o} would be sent back to the function"
    for other in ["a.jpg", "other/a.jpg", kp.rstrip("/") + ".jpg", "_map-runs/x/manifest.json"]:
        assert not delivered(stack, other), f"{other} is outside the workspace but would be delivered"
    upload = stack.props("Function")["Events"]["Upload"]
    assert upload["Type"] == "SQS" and upload["Properties"]["Queue"] == {"GetAtt": ["UploadQueue", "Arn"]}
    assert upload["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def check_file_system_policy(stack: Stack) -> None:
    policy = stack.props("FileSystemPolicy")
    assert policy["FileSystemId"] == {"GetAtt": ["FileSystem", "FileSystemId"]}
    sts = statements(policy["Policy"])
    allows = [s for s in sts if s["Effect"] == "Allow"]
    assert allows
    for s in allows:
        assert s["Principal"] == {"AWS": {"GetAtt": ["FunctionRole", "Arn"]}}, s
        assert set(as_list(s["Action"])) <= {"s3files:ClientMount", "s3files:ClientWrite"}, s
        assert s["Condition"]["StringEquals"]["s3files:AccessPointArn"] == {
            "GetAtt": ["AccessPoint", "AccessPointArn"]
        }
    insecure = [
        s
        for s in sts
        if s["Effect"] == "Deny"
        and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
    ]
    assert insecure, "no statement denies requests without TLS"
    for s in insecure:
        assert s["Principal"] in ("*", {"AWS": "*"})
        assert {"s3files:ClientMount", "s3files:ClientWrite"} <= set(as_list(s["Action"]))


def check_file_system_role(stack: Stack) -> None:
    fs = stack.props("FileSystem")
    assert fs["RoleArn"] == {"GetAtt": ["FileSystemRole", "Arn"]}
    (trust,) = statements(stack.props("FileSystemRole")["AssumeRolePolicyDocument"])
    assert (
        trust["Principal"] == {"Service": "elasticfilesystem.amazonaws.com"}
        and trust["Action"] == "sts:AssumeRole"
    )
    cond = stack.resolve(trust.get("Condition", {}))
    assert cond.get("StringEquals", {}).get("aws:SourceAccount") == PSEUDO["AWS::AccountId"], cond
    source_arn = cond.get("ArnLike", {}).get("aws:SourceArn", "")
    assert source_arn.startswith(
        f"arn:aws:s3files:{PSEUDO['AWS::Region']}:{PSEUDO['AWS::AccountId']}:file-system/"
    )
    sts = [stack.resolve(s) for s in role_statements(stack, "FileSystemRole")]
    bucket = stack.resolve({"GetAtt": ["MediaBucket", "Arn"]})

    def actions_on(resource: str) -> set[str]:
        return {
            a
            for s in sts
            if s["Effect"] == "Allow" and resource in as_list(s["Resource"])
            for a in as_list(s["Action"])
        }

    assert {"s3:ListBucket", "s3:ListBucketVersions"} <= actions_on(bucket)
    assert {
        "s3:GetObject*",
        "s3:PutObject*",
        "s3:DeleteObject*",
        "s3:AbortMultipartUpload",
        "s3:List*",
    } <= actions_on(bucket + "/*")
    rules = f"arn:aws:events:{PSEUDO['AWS::Region']}:{PSEUDO['AWS::AccountId']}:rule/DO-NOT-DELETE-S3-Files*"
    assert {"events:PutRule", "events:DeleteRule", "events:PutTargets", "events:RemoveTargets"} <= actions_on(
        rules
    )


def check_no_managed_policies(stack: Stack) -> None:
    """No AWS managed policy on any role (before and after the SAM transform); `*` resources only where
    the template says why."""
    assert stack.props("Function")["Role"] == {"GetAtt": ["FunctionRole", "Arn"]}
    out = transformed(json.dumps(to_cfn(stack.t)))
    for name, r in out["Resources"].items():
        if r["Type"] == "AWS::IAM::Role":
            assert not r["Properties"].get("ManagedPolicyArns"), (
                f"{name}: {r['Properties']['ManagedPolicyArns']}"
            )
    assert ":iam::aws:policy/" not in json.dumps(out)
    wild = [
        (role, s.get("Sid"))
        for role in stack.of_type("AWS::IAM::Role")
        for s in role_statements(stack, role)
        if "*" in as_list(s.get("Resource"))
    ]
    assert wild == [("FunctionRole", "VpcNetworkInterfaces")], wild
    assert re.search(
        r'# "\*" is unavoidable here: .*\n(\s+#.*\n)*\s+- Sid: VpcNetworkInterfaces', TEMPLATE.read_text()
    )


def check_function_role_is_scoped(stack: Stack) -> None:
    sts = role_statements(stack, "FunctionRole")
    assert by_sid(sts, "Logs")["Resource"] == {"GetAtt": ["FunctionLogGroup", "Arn"]}
    assert by_sid(sts, "UploadQueue")["Resource"] == {"GetAtt": ["UploadQueue", "Arn"]}
    reads = stack.resolve(by_sid(sts, "DirectS3Reads"))
    assert set(as_list(reads["Action"])) == {"s3:GetObject", "s3:GetObjectVersion"}
    assert reads["Resource"] == f"MediaBucket.Arn/{stack.default('WorkspacePrefix')}/*"


def check_s3_gateway_endpoint(stack: Stack) -> None:
    ep = stack.res.get("S3GatewayEndpoint")
    assert ep, "no S3 gateway endpoint"
    assert ep["Type"] == "AWS::EC2::VPCEndpoint" and ep["Condition"] == "CreateS3GatewayEndpoint"
    props = ep["Properties"]
    assert props["VpcEndpointType"] == "Gateway"
    assert stack.resolve(props["ServiceName"]) == f"com.amazonaws.{PSEUDO['AWS::Region']}.s3"
    assert ep["Properties"]["RouteTableIds"] == {"Ref": "RouteTableIds"}
    assert ep["Properties"]["VpcId"] == {"Ref": "VpcId"}
    param = stack.t["Parameters"]["CreateS3GatewayEndpoint"]
    assert param["AllowedValues"] == ["true", "false"] and param["Default"] in param["AllowedValues"]
    assert stack.t["Conditions"]["CreateS3GatewayEndpoint"] == {
        "Equals": [{"Ref": "CreateS3GatewayEndpoint"}, "true"]
    }
    assert stack.t["Parameters"]["RouteTableIds"]["Type"] == "CommaDelimitedList"
    rule = stack.t["Rules"]["RouteTablesForTheGatewayEndpoint"]
    assert rule["RuleCondition"] == stack.t["Conditions"]["CreateS3GatewayEndpoint"]
    assert rule["Assertions"][0]["Assert"] == {"Not": [{"Contains": [{"Ref": "RouteTableIds"}, ""]}]}


def check_state_machine(stack: Stack) -> None:
    from handlers import batch_events as batch

    sm = stack.res["PrefixBatchStateMachine"]
    assert sm["Type"] == "AWS::Serverless::StateMachine" and sm["Properties"]["Type"] == "STANDARD"
    d = stack.definition()
    for machine in (d, *(s["ItemProcessor"] for s in d["States"].values() if "ItemProcessor" in s)):
        assert machine["StartAt"] in machine["States"]
        for state in machine["States"].values():  # every state ends or goes on to one that exists
            assert state.get("End") is True or state.get("Next") in machine["States"], state
    maps = [s for s in d["States"].values() if s["Type"] == "Map"]
    (m,) = maps
    bucket = stack.resolve({"Ref": "MediaBucket"})
    assert m["ItemReader"]["Resource"] == "arn:aws:states:::s3:listObjectsV2"
    assert m["ItemReader"]["Parameters"]["Bucket"] == bucket and "Prefix.$" in m["ItemReader"]["Parameters"]
    assert m["ItemBatcher"]["MaxItemsPerBatch"] == stack.default("MaxItemsPerBatch")
    assert m["ItemBatcher"]["BatchInput"]["bucket"] == bucket
    assert m["MaxConcurrency"] == stack.default("MaxConcurrency")
    assert m["ToleratedFailurePercentage"] == stack.default("ToleratedFailurePercentage")
    assert m["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
    # the prefix of the listing is the workspace's key prefix followed by the input's prefix
    key_prefix = stack.env()["MEDIA_WORKER_AWS__KEY_PREFIX"]
    assert f"States.Format('{key_prefix}{{}}', $.prefix)" in json.dumps(d)
    # results land outside the workspace (so they are no uploads and never appear on the mount)
    assert not m["ResultWriter"]["Parameters"]["Prefix"].startswith(key_prefix.rstrip("/"))
    (task,) = m["ItemProcessor"]["States"].values()
    assert task["Resource"] == "arn:aws:states:::lambda:invoke"
    assert task["Arguments"]["FunctionName"] == stack.resolve({"GetAtt": ["Function", "Arn"]})
    # the batch goes on as ItemBatcher made it (Items + BatchInput), less folder markers
    assert set(task["Arguments"]["Payload"]) == {"Items", "BatchInput"}
    assert task["Output"] == "{% $states.result.Payload %}"
    retried = {e for r in task["Retry"] for e in r["ErrorEquals"]}
    assert batch.BatchItemsRetryable.__name__ in retried
    assert batch.BatchItemsFailed.__name__ not in retried and "States.ALL" not in retried
    assert {"Lambda.ServiceException", "Lambda.TooManyRequestsException"} <= retried
    # the merge step: after the Map, the function is invoked with {"report": <workspace prefix>}, and the
    # execution ends with the summary it returns (handlers/report_event.py)
    report = d["States"][m["Next"]]
    assert m.get("ResultPath") == "$.map" and "End" not in m
    assert report["Type"] == "Task" and report["End"] is True
    assert report["Resource"] == "arn:aws:states:::lambda:invoke"
    assert report["Parameters"]["FunctionName"] == task["Arguments"]["FunctionName"]
    assert report["Parameters"]["Payload"]["report.$"] == "$.prefix"
    assert set(report["Parameters"]["Payload"]) <= {"report.$", "output.$"}
    assert d["States"]["ResolvePrefix"]["Parameters"]["prefix.$"] == "$.prefix"
    assert report["ResultSelector"] == {"summary.$": "$.Payload"} and report["OutputPath"] == "$.summary"


def check_state_machine_role(stack: Stack) -> None:
    name = stack.resolve(stack.props("PrefixBatchStateMachine")["Name"])
    sts = [
        stack.resolve(s) for p in stack.props("PrefixBatchStateMachine")["Policies"] for s in statements(p)
    ]
    grants = {
        (a, r)
        for s in sts
        if s["Effect"] == "Allow"
        for a in as_list(s["Action"])
        for r in as_list(s["Resource"])
    }
    arn = f"arn:aws:states:{PSEUDO['AWS::Region']}:{PSEUDO['AWS::AccountId']}"
    assert ("lambda:InvokeFunction", "Function.Arn") in grants
    assert ("s3:ListBucket", "MediaBucket.Arn") in grants
    assert ("states:StartExecution", f"{arn}:stateMachine:{name}") in grants
    assert ("states:DescribeExecution", f"{arn}:execution:{name}/*") in grants
    assert ("states:StopExecution", f"{arn}:execution:{name}/*") in grants
    assert all("*" not in r or r.endswith("/*") for _, r in grants), grants


def check_queue_visibility(stack: Stack) -> None:
    visibility = stack.props("UploadQueue")["VisibilityTimeout"]
    assert int(stack.resolve(visibility)) >= 6 * int(stack.default("Timeout"))
    timeouts = stack.t["Parameters"]["Timeout"]["AllowedValues"]
    for t in timeouts:  # any timeout the stack accepts
        assert int(stack.t["Mappings"]["QueueVisibilityTimeout"][str(t)]["Seconds"]) >= 6 * int(t)
    assert stack.props("Function")["Timeout"] == {"Ref": "Timeout"}


def check_alarms(stack: Stack) -> None:
    alarms = stack.of_type("AWS::CloudWatch::Alarm").values()

    def alarms_on(namespace: str, metric: str, dim: Any) -> list[dict[str, Any]]:
        return [
            a["Properties"]
            for a in alarms
            if (a["Properties"]["Namespace"], a["Properties"]["MetricName"]) == (namespace, metric)
            and dim in [d["Value"] for d in a["Properties"]["Dimensions"]]
        ]

    dlqs = alarms_on(
        "AWS/SQS", "ApproximateNumberOfMessagesVisible", {"GetAtt": ["UploadDeadLetterQueue", "QueueName"]}
    )
    errors_alarms = alarms_on("AWS/Lambda", "Errors", {"Ref": "Function"})
    assert len(dlqs) == 1, "one alarm on the dead-letter queue's visible messages"
    assert len(errors_alarms) == 1, "one alarm on the function's Errors"
    dlq, errors = dlqs[0], errors_alarms[0]
    assert (dlq["ComparisonOperator"], dlq["Threshold"]) == ("GreaterThanThreshold", 0)
    assert errors["ComparisonOperator"] == "GreaterThanThreshold"
    for a in (dlq, errors):
        assert a["AlarmActions"] == [{"Ref": "AlarmTopic"}]


def check_eventbridge_target(stack: Stack) -> None:
    (target,) = stack.props("UploadRule")["Targets"]
    assert target["Arn"] == {"GetAtt": ["UploadQueue", "Arn"]}
    assert target.get("RetryPolicy", {}).get("MaximumRetryAttempts", 0) > 0, "no RetryPolicy"
    assert "DeadLetterConfig" in target, "no DeadLetterConfig"
    dlq = target["DeadLetterConfig"]["Arn"]["GetAtt"][0]
    assert stack.res[dlq]["Type"] == "AWS::SQS::Queue" and dlq != "UploadQueue"
    for queue in ("UploadQueue", dlq):
        (policy,) = [
            p
            for p in stack.of_type("AWS::SQS::QueuePolicy").values()
            if {"Ref": queue} in p["Properties"]["Queues"]
        ]
        (st,) = statements(policy["Properties"]["PolicyDocument"])
        assert st["Principal"] == {"Service": "events.amazonaws.com"} and st["Action"] == "sqs:SendMessage"
        assert st["Condition"]["ArnEquals"]["aws:SourceArn"] == {"GetAtt": ["UploadRule", "Arn"]}


def check_log_group(stack: Stack) -> None:
    fn = stack.props("Function")
    assert fn.get("LoggingConfig", {}).get("LogGroup") == {
        "Ref": "FunctionLogGroup"
    }  # created before the function
    assert stack.res["FunctionLogGroup"]["Type"] == "AWS::Logs::LogGroup"
    assert stack.props("FunctionLogGroup")["RetentionInDays"] == {"Ref": "LogRetentionInDays"}


# -- the first deploy: parameters checked before anything is created, the workspace folder's owner -----

Subnets = dict[str, dict[str, str]]  # subnet id -> {"VpcId", "AvailabilityZone"}


def rule_value(node: Any, params: dict[str, str], subnets: Subnets, types: dict[str, str]) -> Any:
    """A CloudFormation rule function evaluated as documented (AWS rule functions reference) for the
    functions this template uses; Fn::ValueOf/ValueOfAll read ``subnets``, the attributes of the subnets
    the parameters name, which only EC2 can answer on a real deploy."""

    def ev(n: Any) -> Any:
        return rule_value(n, params, subnets, types)

    if isinstance(node, list):
        return [ev(n) for n in node]
    if not isinstance(node, dict):
        return node
    ((fn, arg),) = node.items()
    fn = fn.removeprefix("Fn::")
    if fn == "Ref":
        return params[arg].split(",") if types[arg] == "CommaDelimitedList" else params[arg]
    if fn == "ValueOf":
        name, attr = arg
        return subnets[params[name]][attr]
    if fn == "ValueOfAll":
        type_, attr = arg
        return [subnets[params[n]][attr] for n, t in types.items() if t == type_]
    if fn == "EachMemberEquals":
        values, want = ev(arg[0]), ev(arg[1])
        return all(v == want for v in values)
    if fn == "Contains":
        values, want = ev(arg[0]), ev(arg[1])
        return want in values
    if fn == "Equals":
        return ev(arg[0]) == ev(arg[1])
    if fn == "Not":
        return not ev(arg[0])
    raise AssertionError(f"rule function {fn}: not one this test evaluates")


def rules_pass(stack: Stack, params: dict[str, str], subnets: Subnets) -> list[str]:
    """The AssertDescription of every rule assertion these parameter values fail."""
    types = {k: v["Type"] for k, v in stack.t["Parameters"].items()}
    values = {k: str(v.get("Default", "")) for k, v in stack.t["Parameters"].items()} | params
    failed = []
    for rule in stack.t.get("Rules", {}).values():
        cond = rule.get("RuleCondition")
        if cond is not None and not rule_value(cond, values, subnets, types):
            continue
        for a in rule["Assertions"]:
            if not rule_value(a["Assert"], values, subnets, types):
                failed.append(a["AssertDescription"])
    return failed


def check_subnet_rules(stack: Stack) -> None:
    """Subnets in one AZ, or outside the VPC, stop the create before any resource (CloudFormation
    Rules); two subnets of the VPC in two AZs pass."""
    subnets = {
        "subnet-a": {"VpcId": "vpc-1", "AvailabilityZone": "us-east-1a"},
        "subnet-b": {"VpcId": "vpc-1", "AvailabilityZone": "us-east-1b"},
        "subnet-a2": {"VpcId": "vpc-1", "AvailabilityZone": "us-east-1a"},
        "subnet-x": {"VpcId": "vpc-2", "AvailabilityZone": "us-east-1c"},
    }
    good = {"VpcId": "vpc-1", "SubnetA": "subnet-a", "SubnetB": "subnet-b", "RouteTableIds": "rtb-1"}
    assert rules_pass(stack, good, subnets) == []
    same_az = rules_pass(stack, good | {"SubnetB": "subnet-a2"}, subnets)
    assert len(same_az) == 1 and "Availability Zone" in same_az[0], same_az
    other_vpc = rules_pass(stack, good | {"SubnetB": "subnet-x"}, subnets)
    assert len(other_vpc) == 1 and "VpcId" in other_vpc[0], other_vpc
    no_tables = rules_pass(stack, good | {"RouteTableIds": ""}, subnets)
    assert len(no_tables) == 1 and "RouteTableIds" in no_tables[0], no_tables
    assert rules_pass(stack, good | {"RouteTableIds": "", "CreateS3GatewayEndpoint": "false"}, subnets) == []
    described = stack.t["Parameters"]["CreateS3GatewayEndpoint"]["Description"]
    assert "describe-vpc-endpoints" in described, "the parameter must say how to check for an endpoint"


def check_bucket_survives_a_retry(stack: Stack) -> None:
    """Kept on delete, but not after the create that made it rolled back (the retry would fail on the
    name); the only object the stack writes itself is removed on that rollback."""
    bucket = stack.res["MediaBucket"]
    assert bucket["DeletionPolicy"] == "RetainExceptOnCreate"
    assert bucket["UpdateReplacePolicy"] == "Retain"
    assert stack.resolve(stack.props("WorkspaceFolder")["Bucket"]) == stack.resolve({"Ref": "MediaBucket"})


def check_versions_expire(stack: Stack) -> None:
    """Noncurrent versions (every lease file leaves one) and expired delete markers are removed."""
    rules = stack.props("MediaBucket")["LifecycleConfiguration"]["Rules"]
    whole = [r for r in rules if r["Status"] == "Enabled" and not r.get("Prefix") and not r.get("Filter")]
    noncurrent = [
        r["NoncurrentVersionExpiration"]["NoncurrentDays"]
        for r in whole
        if "NoncurrentVersionExpiration" in r
    ]
    assert noncurrent == [{"Ref": "NoncurrentVersionDays"}], noncurrent
    assert 1 <= int(stack.default("NoncurrentVersionDays")) <= 30
    markers = [r for r in whole if r.get("ExpiredObjectDeleteMarker") is True]
    assert len(markers) == 1 and "ExpirationInDays" not in markers[0]  # S3 refuses the two in one rule


def check_workspace_folder(stack: Stack) -> None:
    """The workspace folder's directory marker carries the access point's POSIX user, as a directory,
    and exists before the file system; its function may touch that one key only."""
    folder = stack.resolve(stack.props("WorkspaceFolder"))
    ap = stack.resolve(stack.props("AccessPoint"))
    assert stack.res["WorkspaceFolder"]["Type"].startswith("Custom::")
    assert folder["ServiceToken"] == "WorkspaceFolderFunction.Arn"
    assert folder["Key"] == ap["RootDirectory"]["Path"].lstrip("/") + "/"
    assert (folder["Uid"], folder["Gid"]) == (ap["PosixUser"]["Uid"], ap["PosixUser"]["Gid"])
    mode = int(folder["Mode"], 8)
    assert stat.S_ISDIR(mode) and mode & stat.S_IWUSR and mode & stat.S_IXUSR, folder["Mode"]
    assert "WorkspaceFolder" in as_list(stack.res["FileSystem"].get("DependsOn", []))
    with template_settings(stack) as settings:
        assert (settings.aws.workspace_uid, settings.aws.workspace_gid) == (
            int(folder["Uid"]),
            int(folder["Gid"]),
        )
    sts = [stack.resolve(s) for s in role_statements(stack, "WorkspaceFolderRole")]
    marker = f"MediaBucket.Arn/{folder['Key']}"
    for s in sts:
        if any(a.startswith("s3:") and a != "s3:ListBucketVersions" for a in as_list(s["Action"])):
            assert as_list(s["Resource"]) == [marker], s
    listing = by_sid(sts, "ItsVersions")
    assert listing["Condition"]["StringEquals"]["s3:prefix"] == folder["Key"]
    assert "VpcConfig" not in stack.props("WorkspaceFolderFunction")


def check_upload_concurrency(stack: Stack) -> None:
    upload = stack.props("Function")["Events"]["Upload"]["Properties"]
    scaling = upload.get("ScalingConfig", {})
    assert scaling.get("MaximumConcurrency") == {"Ref": "UploadMaxConcurrency"}, "no concurrency cap"
    param = stack.t["Parameters"]["UploadMaxConcurrency"]
    assert 2 <= param["MinValue"] <= param["Default"] <= param["MaxValue"] <= 1000  # Lambda's range


def check_cache_expiry(stack: Stack) -> None:
    """One parameter sets S3 Files' cache expiry and the expiry the function prices its ledger with;
    its default is what the cost table advises for touch-once outputs."""
    days = stack.props("FileSystem")["SynchronizationConfiguration"]["ExpirationDataRules"]
    assert days == [{"DaysAfterLastAccess": {"Ref": "CacheExpirationDays"}}]
    assert stack.env()["MEDIA_WORKER_SYNC__CACHE_EXPIRATION_DAYS"] == str(
        stack.default("CacheExpirationDays")
    )
    assert 1 <= int(stack.default("CacheExpirationDays")) <= 2


def check_reports_fire_no_uploads(stack: Stack) -> None:
    """The merge step's contact sheet and summary.json land where the upload filter drops them."""
    report = stack.definition()["States"]["Report"]["Parameters"]["Payload"]
    kp = stack.env()["MEDIA_WORKER_AWS__KEY_PREFIX"]
    m = re.fullmatch(r"States\.Format\('([^']*)\{\}', \$\.prefix\)", report["output.$"])
    assert m, report
    for prefix in ("", "incoming/", "a/b/"):
        folder = m.group(1) + prefix
        for name in ("index.html", "summary.json"):
            assert not delivered(stack, kp + folder.rstrip("/") + "/" + name), folder


CHECKS: dict[str, Callable[[Stack], None]] = {
    f.__name__.removeprefix("check_"): f
    for f in (
        check_sam_image_function,
        check_access_point_and_key_prefix,
        check_upload_routing,
        check_file_system_policy,
        check_file_system_role,
        check_no_managed_policies,
        check_function_role_is_scoped,
        check_s3_gateway_endpoint,
        check_state_machine,
        check_state_machine_role,
        check_queue_visibility,
        check_alarms,
        check_eventbridge_target,
        check_log_group,
        check_subnet_rules,
        check_bucket_survives_a_retry,
        check_versions_expire,
        check_workspace_folder,
        check_upload_concurrency,
        check_cache_expiry,
        check_reports_fire_no_uploads,
    )
}


def _statement(stack: Stack, role: str, sid: str) -> dict[str, Any]:
    return by_sid(role_statements(stack, role), sid)


def _fs_allow(stack: Stack) -> dict[str, Any]:
    return statements(stack.props("FileSystemPolicy")["Policy"])[0]


# one mutation per check, each the kind of slip the check is there to catch
MUTATIONS: dict[str, Callable[[Stack], None]] = {
    "sam_image_function": lambda s: s.props("Function").update(
        ImageConfig={"Command": ["handlers.nope.handler"]}
    ),
    "access_point_and_key_prefix": lambda s: s.props("AccessPoint")["RootDirectory"].update(Path="/"),
    "upload_routing": lambda s: s.props("UploadRule")["EventPattern"]["detail"]["object"].update(
        key=[{"anything-but": {"prefix": "processed/"}}]
    ),
    "file_system_policy": lambda s: _fs_allow(s).update(Principal={"AWS": {"Ref": "AWS::AccountId"}}),
    "file_system_role": lambda s: statements(s.props("FileSystemRole")["AssumeRolePolicyDocument"])[0].pop(
        "Condition"
    ),
    "no_managed_policies": lambda s: s.props("FunctionRole").update(
        ManagedPolicyArns=[
            {"Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"}
        ]
    ),
    "function_role_is_scoped": lambda s: _statement(s, "FunctionRole", "DirectS3Reads").update(Resource="*"),
    "s3_gateway_endpoint": lambda s: s.res.pop("S3GatewayEndpoint"),
    "state_machine": lambda s: setattr(
        s, "asl", s.asl.replace("- BatchItemsRetryable", "- BatchItemsFailed")
    ),
    "state_machine_role": lambda s: by_sid(
        statements(s.props("PrefixBatchStateMachine")["Policies"][0]), "ManageChildExecutions"
    ).update(Resource="*"),
    "queue_visibility": lambda s: s.t["Mappings"]["QueueVisibilityTimeout"]["300"].update(Seconds=900),
    "alarms": lambda s: s.res.pop("FunctionErrorsAlarm"),
    "eventbridge_target": lambda s: s.props("UploadRule")["Targets"][0].pop("DeadLetterConfig"),
    "log_group": lambda s: s.props("Function").pop("LoggingConfig"),
    "subnet_rules": lambda s: s.t["Rules"].pop("SubnetsInTwoAvailabilityZones"),
    "bucket_survives_a_retry": lambda s: s.res["MediaBucket"].update(DeletionPolicy="Retain"),
    "versions_expire": lambda s: s.props("MediaBucket")["LifecycleConfiguration"].update(
        Rules=[
            r
            for r in s.props("MediaBucket")["LifecycleConfiguration"]["Rules"]
            if "ExpiredObjectDeleteMarker" not in r
        ]
    ),
    "workspace_folder": lambda s: s.res["FileSystem"].pop("DependsOn"),
    "upload_concurrency": lambda s: s.props("Function")["Events"]["Upload"]["Properties"].pop(
        "ScalingConfig"
    ),
    "cache_expiry": lambda s: s.props("FileSystem")["SynchronizationConfiguration"].update(
        ExpirationDataRules=[{"DaysAfterLastAccess": 30}]
    ),
    "reports_fire_no_uploads": lambda s: setattr(s, "asl", s.asl.replace("${ReportsFolder}{}", "reports/{}")),
}


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_check(name: str) -> None:
    CHECKS[name](Stack.load())


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_check_can_fail(name: str) -> None:
    stack = Stack.load()
    mutated = copy.deepcopy(stack)
    MUTATIONS[name](mutated)
    assert mutated.t != stack.t or mutated.asl != stack.asl
    with pytest.raises(AssertionError):
        CHECKS[name](mutated)


def test_every_check_has_a_mutation() -> None:
    assert set(MUTATIONS) == set(CHECKS)


# -- lint and validate ----------------------------------------------------------------------------------

_TRANSLATE = r"""
import json, sys
import boto3
from samcli.yamlhelper import yaml_parse
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator

t = yaml_parse(sys.stdin.read())
for r in t.get("Resources", {}).values():  # local artifacts -> S3/ECR stand-ins, as `sam validate` does
    p = r.get("Properties", {})
    if r.get("Type") == "AWS::Serverless::StateMachine" and isinstance(p.get("DefinitionUri"), str):
        p["DefinitionUri"] = "s3://bucket/definition"
    if r.get("Type") == "AWS::Serverless::Function" and p.get("PackageType") == "Image":
        p.setdefault("ImageUri", "111111111111.dkr.ecr.us-east-1.amazonaws.com/repo:tag")

def managed_policy_map():
    raise SystemExit("the template names a managed policy: translating it would need IAM")

out = Translator(None, Parser(), [], boto_session=boto3.session.Session(region_name="us-east-1")).translate(
    sam_template=t, parameter_values={}, get_managed_policy_map=managed_policy_map
)
json.dump(out, sys.stdout, default=str)
"""


@cache
def transformed(text: str) -> dict[str, Any]:
    """The template after the SAM transform (aws-sam-translator of .venv-sam, offline)."""
    res = subprocess.run(
        [sam_venv("python"), "-c", _TRANSLATE], input=text, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def lint_transformed(text: str, tmp_path: Path) -> list[dict[str, Any]]:
    out = tmp_path / "transformed.json"
    out.write_text(json.dumps(transformed(text), indent=1))
    return json.loads(cfn_lint(out).stdout or "[]")


def test_template_passes_cfn_lint() -> None:
    res = cfn_lint(TEMPLATE)
    assert res.returncode == 0, res.stdout + res.stderr
    assert json.loads(res.stdout or "[]") == []


def test_transformed_template_passes_cfn_lint(tmp_path: Path) -> None:
    """cfn-lint checks SAM resources against SAM's schemas, where FileSystemConfigs etc. pass through;
    after the transform the AWS::Lambda::Function, ESM and state machine are checked by their own."""
    assert lint_transformed(TEMPLATE.read_text(), tmp_path) == []


def test_cfn_lint_knows_the_s3files_types(tmp_path: Path) -> None:
    """The lint is live for AWS::S3Files::* and Lambda's S3 Files mount: an EFS-style CreationInfo, an
    out-of-range SizeLessThan, a mount path outside /mnt and an unknown DirectS3Read are reported."""
    text = TEMPLATE.read_text()
    for old, new in [
        ("CreationPermissions:", "CreationInfo:"),
        ("SizeLessThan: 131072", "SizeLessThan: 99999999999999999"),
        ("LocalMountPath: /mnt/workspace", "LocalMountPath: /workspace"),
        ("DirectS3Read: AUTO", "DirectS3Read: SOMETIMES"),
    ]:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    found = lint_transformed(text, tmp_path)
    paths = {"/".join(str(p) for p in f["Location"]["Path"]) for f in found}
    assert any("AccessPoint" in p and "RootDirectory" in p for p in paths), paths
    assert any("SizeLessThan" in p for p in paths), paths
    assert any("LocalMountPath" in p for p in paths), paths
    assert any("DirectS3Read" in p for p in paths), paths


def sam_validate(args: list[str], template_path: Path, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sam_venv("sam"), "validate", *args, "--template-file", str(template_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=template_path.parent,
        env=offline_env(home),
    )


@pytest.mark.parametrize("args", [["--lint"], []], ids=["lint", "plain"])
def test_sam_validate(args: list[str], tmp_path: Path) -> None:
    res = sam_validate(args, TEMPLATE, tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "is a valid SAM Template" in res.stdout


@pytest.mark.parametrize(
    ("args", "old", "new", "message"),
    [
        # `--lint` runs cfn-lint only (it does not run the SAM translator): a property SAM does not know
        (["--lint"], "      PackageType: Image\n", "      PackageTyp: Image\n", "PackageTyp"),
        # plain `sam validate` runs the SAM translator only: an event source type it does not know
        ([], "          Type: SQS\n", "          Type: SQSQueue\n", "Upload"),
    ],
    ids=["lint", "plain"],
)
def test_sam_validate_rejects_a_broken_template(
    args: list[str], old: str, new: str, message: str, tmp_path: Path
) -> None:
    text = TEMPLATE.read_text()
    assert text.count(old) == 1
    bad = tmp_path / "template.yaml"
    bad.write_text(text.replace(old, new))
    res = sam_validate(args, bad, tmp_path)
    assert res.returncode != 0 and message in res.stdout + res.stderr, res.stdout + res.stderr


def test_sam_validate_environment_is_offline(tmp_path: Path) -> None:
    """The guard is live: a template that makes `sam validate` ask IAM for a managed policy fails here."""
    bad = tmp_path / "template.yaml"
    text = TEMPLATE.read_text()
    old = '      Policies:\n        - Version: "2012-10-17"\n          Statement:\n            - Sid: Invoke'
    assert old in text
    # a managed policy name the SAM translator has no bundled ARN for: it asks IAM
    bad.write_text(
        text.replace(old, old.replace("Policies:\n", "Policies:\n        - MediaWorkerNoSuchPolicy\n"))
    )
    res = sam_validate([], bad, tmp_path)
    assert res.returncode != 0 and "127.0.0.1:9" in res.stdout + res.stderr, res.stdout + res.stderr


# -- lint suppressions need a written reason ------------------------------------------------------------


def unexplained_suppressions(text: str) -> list[str]:
    """Rule ids under an ``ignore_checks`` key (cfn-lint Metadata or a .cfnlintrc) without a ``#`` comment
    on their line or on the comment lines directly above it."""
    lines = text.splitlines()
    bad = []
    for i, line in enumerate(lines):
        m = re.match(r"(\s*)(-\s*)?ignore_checks\s*:(.*)", line)
        if not m:
            continue
        items: list[tuple[int, str]] = []
        inline = m.group(3).split("#")[0].strip()
        if inline:
            items += [(i, r) for r in re.findall(r"[EWI]\d{4}", inline)]
        else:
            j = i + 1
            while j < len(lines) and (lines[j].strip().startswith(("-", "#")) or not lines[j].strip()):
                if lines[j].strip().startswith("-"):
                    items.append((j, lines[j].split("#")[0].strip("- \t")))
                j += 1
        for j, rule in items:
            above = j - 1
            while above > i and lines[above].strip().startswith("-") and "#" not in lines[above]:
                above -= 1
            explained = "#" in lines[j] or (above >= 0 and lines[above].strip().startswith("#"))
            if not explained or (j == i and "#" not in line):
                bad.append(f"line {j + 1}: {rule}")
    return bad


def test_no_lint_rule_is_suppressed_without_a_reason() -> None:
    for path in [TEMPLATE, *REPO.glob(".cfnlintrc*")]:
        assert unexplained_suppressions(path.read_text()) == [], path


def test_unexplained_suppressions_are_found() -> None:
    bad = "Metadata:\n  cfn-lint:\n    config:\n      ignore_checks:\n        - W3005\n"
    good = bad.replace("        - W3005", "        # reason: the DependsOn is deliberate\n        - W3005")
    assert unexplained_suppressions(bad) == ["line 5: W3005"]
    assert unexplained_suppressions(good) == []
    assert unexplained_suppressions("ignore_checks: [E3012]\n") == ["line 1: E3012"]
    assert unexplained_suppressions("ignore_checks: [E3012]  # reason: see above\n") == []


# -- the rest of what the template must agree with ------------------------------------------------------


def test_template_matches_the_code_and_settings() -> None:
    stack = Stack.load()
    fn = stack.props("Function")
    assert (
        fn["MemorySize"] == {"Ref": "MemorySize"} and stack.t["Parameters"]["MemorySize"]["MinValue"] >= 512
    )
    with template_settings(stack) as settings:
        # every MEDIA_WORKER_* variable the template sets is a real settings key with a valid value
        assert settings.aws.bucket == stack.resolve({"Ref": "MediaBucket"})
        assert settings.aws.deadline_margin_seconds == stack.default("DeadlineMarginSeconds")
        assert settings.aws.deadline_margin_seconds < stack.default("Timeout")
        assert settings.aws.metrics_namespace == "MediaWorker"
        # synchronisation rules are the ones `media-worker config sync-rules --cloudformation` prints
        sync = stack.resolve(stack.props("FileSystem")["SynchronizationConfiguration"])
        sync["ExpirationDataRules"] = [
            {"DaysAfterLastAccess": int(d["DaysAfterLastAccess"])} for d in sync["ExpirationDataRules"]
        ]
        assert sync == settings.sync.cloudformation()


def test_samconfig_deploys_the_image() -> None:
    cfg = tomllib.loads(SAMCONFIG.read_text())
    deploy = cfg["default"]["deploy"]["parameters"]
    assert deploy["resolve_image_repos"] is True and deploy["resolve_s3"] is True
    assert deploy["confirm_changeset"] is True
    assert deploy["capabilities"] == "CAPABILITY_IAM"
    # CAPABILITY_IAM is enough: no named IAM resources, no nested applications or macros
    t = template()
    assert not any("RoleName" in r.get("Properties", {}) for r in t["Resources"].values())
    assert not any(r["Type"] == "AWS::Serverless::Application" for r in t["Resources"].values())


# -- the workspace folder's deploy step (Custom::WorkspaceFolder), run here ------------------------------
#
# Only S3 and CloudFormation can run it for real. Here its inline code runs as Lambda would call it: its
# S3 requests go to a botocore Stubber, which checks each request against botocore's own S3 service model
# and answers as S3 documents (no code of ours is stubbed); its answer goes to a local HTTP server standing
# in for CloudFormation's pre-signed response URL.

BUCKET_NAME = "media-bucket"
MARKER_META = {"file-owner": "1000", "file-group": "1000", "file-permissions": "0040755"}


def workspace_folder_code() -> Any:
    import types

    code = template()["Resources"]["WorkspaceFolderFunction"]["Properties"]["Code"]["ZipFile"]
    module = types.ModuleType("index")
    exec(compile(code, "index.py", "exec"), module.__dict__)
    return module


@contextmanager
def response_url() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A local stand-in for CloudFormation's response URL: records each PUT's JSON body."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    got: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/response?signature=x", got
    finally:
        server.shutdown()
        thread.join()


def folder_event(kind: str, url: str) -> dict[str, Any]:
    stack = Stack.load()
    props = {k: v for k, v in stack.resolve(stack.props("WorkspaceFolder")).items() if k != "ServiceToken"}
    return {
        "RequestType": kind,
        "ResponseURL": url,
        "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/media-worker/1",
        "RequestId": "req-1",
        "LogicalResourceId": "WorkspaceFolder",
        "ResourceType": "Custom::WorkspaceFolder",
        "ResourceProperties": {**props, "Bucket": BUCKET_NAME, "ServiceToken": "arn:aws:lambda:fn"},
    }


def s3_client() -> Any:
    import boto3

    return boto3.client(
        "s3", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )


def run_folder(kind: str, script: Callable[[Any], None]) -> tuple[str, dict[str, Any]]:
    from botocore.stub import Stubber

    code, s3 = workspace_folder_code(), s3_client()
    with response_url() as (url, got), Stubber(s3) as stub:
        script(stub)
        status = code.handler(folder_event(kind, url), None, s3=s3)
        stub.assert_no_pending_responses()
    (answer,) = got
    assert answer["Status"] == status
    assert answer["PhysicalResourceId"] == f"s3://{BUCKET_NAME}/media/"
    assert (answer["RequestId"], answer["LogicalResourceId"]) == ("req-1", "WorkspaceFolder")
    return status, answer


def test_workspace_folder_creates_the_marker() -> None:
    def script(stub: Any) -> None:
        key = {"Bucket": BUCKET_NAME, "Key": "media/"}
        stub.add_client_error("head_object", "404", http_status_code=404, expected_params=key)
        stub.add_response("put_object", {}, {**key, "Body": b"", "Metadata": MARKER_META})

    status, answer = run_folder("Create", script)
    assert status == "SUCCESS" and answer["Reason"] == "created"


def test_workspace_folder_fixes_a_marker_without_the_owner() -> None:
    """An existing marker (say, `aws s3api put-object --key media/` before the stack) keeps its other
    metadata and content type and gains the owner, copied onto itself as AWS's page shows."""

    def script(stub: Any) -> None:
        key = {"Bucket": BUCKET_NAME, "Key": "media/"}
        stub.add_response(
            "head_object",
            {"Metadata": {"team": "x", "file-owner": "0"}, "ContentType": "application/x-directory"},
            key,
        )
        stub.add_response(
            "copy_object",
            {},
            {
                **key,
                "CopySource": key,
                "MetadataDirective": "REPLACE",
                "Metadata": {"team": "x", **MARKER_META},
                "ContentType": "application/x-directory",
            },
        )

    status, answer = run_folder("Update", script)
    assert status == "SUCCESS" and answer["Reason"] == "updated"


def test_workspace_folder_leaves_a_right_marker_alone() -> None:
    def script(stub: Any) -> None:
        stub.add_response(
            "head_object", {"Metadata": dict(MARKER_META)}, {"Bucket": BUCKET_NAME, "Key": "media/"}
        )

    assert run_folder("Update", script)[1]["Reason"] == "unchanged"


def test_workspace_folder_failure_fails_the_create() -> None:
    def script(stub: Any) -> None:
        stub.add_client_error("head_object", "403", http_status_code=403)

    status, answer = run_folder("Create", script)
    assert status == "FAILED" and "s3://media-bucket/media/" in answer["Reason"] and "403" in answer["Reason"]


def test_workspace_folder_delete_removes_every_version() -> None:
    """On a create rollback the marker's versions and delete markers go, so the bucket is empty and its
    RetainExceptOnCreate deletion can succeed; other keys under the prefix are not touched."""

    def script(stub: Any) -> None:
        stub.add_response(
            "list_object_versions",
            {
                "Versions": [{"Key": "media/", "VersionId": "v1"}, {"Key": "media/a.jpg", "VersionId": "v2"}],
                "DeleteMarkers": [{"Key": "media/", "VersionId": "d1"}],
            },
            {"Bucket": BUCKET_NAME, "Prefix": "media/"},
        )
        doomed = [{"Key": "media/", "VersionId": "v1"}, {"Key": "media/", "VersionId": "d1"}]
        stub.add_response(
            "delete_objects", {}, {"Bucket": BUCKET_NAME, "Delete": {"Objects": doomed, "Quiet": True}}
        )

    status, answer = run_folder("Delete", script)
    assert status == "SUCCESS" and answer["Reason"] == "deleted 2 version(s)"


def test_workspace_folder_delete_never_blocks_the_stack() -> None:
    def script(stub: Any) -> None:
        stub.add_client_error("list_object_versions", "AccessDenied", http_status_code=403)

    status, answer = run_folder("Delete", script)
    assert status == "SUCCESS" and "AccessDenied" in answer["Reason"]
