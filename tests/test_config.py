"""Config layer: precedence, clear errors, rules, layout, and the S3 Files sync request."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import cli_env, run_cli

from config.errors import ConfigError, PathError
from config.layout import Layout
from config.rules import Rule, select_pipelines
from config.settings import Settings, load_settings
from pipelines.core.engine import rules_in_force
from pipelines.core.registry import load_registry


def in_force(s: Settings) -> list[Rule]:
    """The rules an engine starts with, after the start-up checks that need the pipelines."""
    return rules_in_force(s, load_registry())


def write_toml(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "media-worker.toml"
    p.write_text(text)
    return p


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEDIA_WORKER_CONFIG", raising=False)
    s = load_settings()
    assert s.read_block_bytes == 1 << 20
    assert s.thumbnails.sizes == {"thumb": (150, 150), "medium": (800, 600), "large": (1920, 1080)}
    assert s.sync.cache_expiration_days == 2  # touch-once outputs (the SAM default too)
    assert s.layout.preset == "mirror"


def test_precedence_defaults_toml_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = write_toml(
        tmp_path, "read_block_bytes = 2097152\n[thumbnails]\njpeg_quality = 70\nwebp_quality = 60\n"
    )
    monkeypatch.setenv("MEDIA_WORKER_CONFIG", str(cfg))
    monkeypatch.setenv("MEDIA_WORKER_THUMBNAILS__JPEG_QUALITY", "90")
    s = load_settings()
    assert s.read_block_bytes == 2 << 20  # from the file
    assert s.thumbnails.webp_quality == 60  # from the file
    assert s.thumbnails.jpeg_quality == 90  # the environment wins over the file
    assert s.thumbnails.progressive is True  # default


@pytest.mark.parametrize(
    ("toml", "key", "reason"),
    [
        ("read_block_bytes = 65536\n", "read_block_bytes", "greater than or equal to 131072"),
        ("[thumbnails]\njpeg_quality = 500\n", "thumbnails.jpeg_quality", "less than or equal to 95"),
        ("[thumbnails]\nqualty = 5\n", "thumbnails.qualty", "unknown key"),
        ("[sync]\ncache_expiration_days = 400\n", "sync.cache_expiration_days", "less than or equal to 365"),
        ("[[rules]]\ninclude = ['*.jpg']\npipelines = []\n", "rules.0.pipelines", "non-empty"),
        ("[layout]\noutput_template = 'out/{nope}.{ext}'\n", "layout.output_template", "unknown placeholder"),
    ],
)
def test_invalid_config_names_key_and_reason(tmp_path: Path, toml: str, key: str, reason: str) -> None:
    cfg = write_toml(tmp_path, toml)
    with pytest.raises(ConfigError) as exc:
        load_settings(cfg)
    assert key in str(exc.value) and reason in str(exc.value)
    # and the CLI exits 2 with the same message
    res = run_cli("config", "validate", "--config", str(cfg))
    assert res.returncode == 2 and key in res.stderr


def test_invalid_env_value_names_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDIA_WORKER_READ_BLOCK_BYTES", "4096")
    with pytest.raises(ConfigError, match="read_block_bytes"):
        load_settings()


def test_broken_toml_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(write_toml(tmp_path, "this is = = not toml"))


def test_rules_match_extensions_case_insensitively() -> None:
    rules = [
        Rule(include=["*.jpg", "*.mov"], pipelines=["a"]),
        Rule(include="raw/**", exclude="*.txt", pipelines=["b"]),
    ]
    assert select_pipelines("x/IMG_0001.JPG", rules) == ["a"]
    assert select_pipelines("Clip.MOV", rules) == ["a"]
    assert select_pipelines("raw/deep/pic.Jpg", rules) == ["a", "b"]
    assert select_pipelines("raw/notes.TXT", rules) == []
    assert select_pipelines("x.jpg", rules, exclude=["x.*"]) == []


def test_layout_presets_and_placeholders() -> None:
    mirror, sidecar = Layout(), Layout(preset="sidecar")
    assert (
        mirror.output_path("photos/Cat.JPG", "thumbnails", "thumb", "webp")
        == "processed/thumbnails/thumb/photos/Cat.JPG.webp"
    )
    assert (
        mirror.output_path("Cat.JPG", "thumbnails", "thumb", "jpg")
        == "processed/thumbnails/thumb/Cat.JPG.jpg"
    )
    assert mirror.manifest_path("photos/Cat.JPG") == "processed/_manifests/photos/Cat.JPG.json"
    assert (
        sidecar.output_path("photos/Cat.JPG", "thumbnails", "thumb", "jpg")
        == "photos/Cat.JPG.thumbnails.thumb.jpg"
    )
    custom = Layout(
        output_template="out/{dir}/{stem}-{pipeline}-{variant}.{src_ext}.{ext}",
        manifest_template="m/{dir}/{name}.json",
    )
    assert custom.output_path("a/b/c.d.PNG", "p", "v", "webp") == "out/a/b/c.d-p-v.PNG.webp"
    assert custom.manifest_path("a/b/c.d.PNG") == "m/a/b/c.d.PNG.json"


def test_layout_rejects_templates_that_collide_or_escape() -> None:
    for bad in (
        "../out/{pipeline}/{variant}/{name}.{ext}",
        "/abs/{pipeline}/{variant}/{name}.{ext}",
        "out/{variant}/{name}.{ext}",
        "out/{pipeline}/{variant}.{ext}",
    ):
        with pytest.raises(ValueError):
            Layout(output_template=bad)


def test_layout_key_length_limit() -> None:
    long_name = (
        "é" * 400 + ".jpg"
    )  # 804 bytes of UTF-8: fine as a source, too long once the output adds to it
    with pytest.raises(PathError, match="1024"):
        Layout().output_path("a/" + long_name, "thumbnails", "thumb", "webp" + "x" * 200)


def test_recursion_guard_rejects_sidecar_with_default_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDIA_WORKER_LAYOUT__PRESET", "sidecar")
    with pytest.raises(ConfigError, match="process its own outputs") as exc:
        in_force(load_settings())
    # the message offers the exclude that fixes it; applying it makes the config valid
    globs = re.search(r"exclude = (\[.*?\])", str(exc.value))
    assert globs
    monkeypatch.setenv("MEDIA_WORKER_EXCLUDE", json.dumps([*eval(globs.group(1)), "**/.*"]))
    s = load_settings()
    rules = in_force(s)
    assert s.layout.preset == "sidecar"
    assert select_pipelines("a/b.jpg.thumbnails.thumb.jpg", rules, s.exclude) == []
    assert select_pipelines("a/b.jpg", rules, s.exclude) == ["thumbnails"]


def test_recursion_guard_custom_rule_catching_processed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDIA_WORKER_EXCLUDE", "[]")
    with pytest.raises(ConfigError, match="processed/thumbnails"):
        in_force(load_settings())


# -- S3 Files synchronization -----------------------------------------------------------------


def _validate_against_model(value: Any, shape: Any, path: str = "") -> list[str]:
    """Check a request against botocore's shape: required members, types, min/max, enum, pattern."""
    problems: list[str] = []
    meta = shape.metadata
    if shape.type_name == "structure":
        assert isinstance(value, dict), path
        for req in shape.required_members:
            if req not in value:
                problems.append(f"{path}.{req}: required")
        for k, v in value.items():
            if k not in shape.members:
                problems.append(f"{path}.{k}: not in the model")
            else:
                problems += _validate_against_model(v, shape.members[k], f"{path}.{k}")
    elif shape.type_name == "list":
        assert isinstance(value, list), path
        if ("min" in meta and len(value) < meta["min"]) or ("max" in meta and len(value) > meta["max"]):
            problems.append(f"{path}: {len(value)} items outside {meta}")
        for i, v in enumerate(value):
            problems += _validate_against_model(v, shape.member, f"{path}[{i}]")
    elif shape.type_name in ("integer", "long"):
        if not isinstance(value, int) or isinstance(value, bool):
            problems.append(f"{path}: not an integer")
        elif ("min" in meta and value < meta["min"]) or ("max" in meta and value > meta["max"]):
            problems.append(f"{path}: {value} outside {meta}")
    elif shape.type_name == "string":
        if not isinstance(value, str):
            problems.append(f"{path}: not a string")
        elif "enum" in meta and value not in meta["enum"]:
            problems.append(f"{path}: {value} not in {meta['enum']}")
        elif "pattern" in meta and not re.fullmatch(meta["pattern"], value):
            problems.append(f"{path}: {value!r} does not match {meta['pattern']}")
    return problems


@pytest.fixture
def put_sync_op() -> Any:
    botocore_session = pytest.importorskip("botocore.session")
    model = botocore_session.get_session().get_service_model("s3files")
    return model.operation_model("PutSynchronizationConfiguration")


SYNC_TOML = """
[sync]
file_system_id = "fs-0123456789abcdef0"
cache_expiration_days = 7
[[sync.import_rules]]
prefix = ""
size_less_than = 131072
[[sync.import_rules]]
prefix = "incoming/"
size_less_than = 0
trigger = "ON_FILE_ACCESS"
"""


def test_sync_rules_request_validates_against_botocore_model(tmp_path: Path, put_sync_op: Any) -> None:
    """Only AWS can apply the request; here it is checked against botocore's s3files service model
    (required members, types, ranges, enums, patterns) and serialised by botocore's own serializer."""
    from botocore.serialize import create_serializer
    from botocore.validate import ParamValidator

    res = run_cli("config", "sync-rules", "--config", str(write_toml(tmp_path, SYNC_TOML)), env=cli_env())
    assert res.returncode == 0, res.stderr
    request = json.loads(res.stdout)
    assert request == {
        "fileSystemId": "fs-0123456789abcdef0",
        "importDataRules": [
            {"prefix": "", "sizeLessThan": 131072, "trigger": "ON_DIRECTORY_FIRST_ACCESS"},
            {"prefix": "incoming/", "sizeLessThan": 0, "trigger": "ON_FILE_ACCESS"},
        ],
        "expirationDataRules": [{"daysAfterLastAccess": 7}],
    }
    assert _validate_against_model(request, put_sync_op.input_shape) == []
    report = ParamValidator().validate(request, put_sync_op.input_shape)
    assert not report.has_errors(), report.generate_report()
    http = create_serializer("rest-json").serialize_to_request(request, put_sync_op)
    assert json.loads(http["body"])["expirationDataRules"] == [{"daysAfterLastAccess": 7}]
    # the checker itself catches what the model forbids
    assert _validate_against_model(
        {**request, "expirationDataRules": [{"daysAfterLastAccess": 366}]}, put_sync_op.input_shape
    )


def test_sync_rules_defaults_and_cloudformation(put_sync_op: Any) -> None:
    res = run_cli("config", "sync-rules", "--file-system-id", "fs-0123456789abcdef0123")
    request = json.loads(res.stdout)
    assert request["expirationDataRules"] == [{"daysAfterLastAccess": 2}]
    assert request["importDataRules"] == [
        {"prefix": "", "sizeLessThan": 131072, "trigger": "ON_DIRECTORY_FIRST_ACCESS"}
    ]
    assert _validate_against_model(request, put_sync_op.input_shape) == []
    cfn = json.loads(run_cli("config", "sync-rules", "--cloudformation").stdout)
    assert cfn == {
        "ImportDataRules": [{"Prefix": "", "SizeLessThan": 131072, "Trigger": "ON_DIRECTORY_FIRST_ACCESS"}],
        "ExpirationDataRules": [{"DaysAfterLastAccess": 2}],
    }


@pytest.mark.parametrize(
    "toml",
    [
        "[sync]\ncache_expiration_days = 0\n",
        "[sync]\nfile_system_id = 'fs-123'\n",
        "[[sync.import_rules]]\nprefix = 'incoming'\n",
        "[[sync.import_rules]]\nprefix = 'a/'\n",  # no rule covers the root
    ],
)
def test_sync_settings_refuse_what_the_api_refuses(tmp_path: Path, toml: str) -> None:
    with pytest.raises(ConfigError, match="sync"):
        load_settings(write_toml(tmp_path, toml))


def test_is_output_recognises_what_the_layout_writes() -> None:
    mirror, sidecar = Layout(), Layout(preset="sidecar")
    names = ["thumbnails", "ocr"]
    assert mirror.is_output("processed/thumbnails/thumb/a/b/c.jpg.webp", names)
    assert mirror.is_output("processed/_manifests/c.jpg.json", names)
    assert not mirror.is_output("processedfoo.jpg", names)
    assert not mirror.is_output("photos/c.jpg", names)
    assert sidecar.is_output("d/a.jpg.thumbnails.thumb.jpg", names)
    assert sidecar.is_output("a.jpg.manifest.json", names)
    assert not sidecar.is_output("my.holiday.photo.jpg", names)  # four dotted parts, but no pipeline name
