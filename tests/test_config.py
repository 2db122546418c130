"""Config: the built-in default, and errors that name the file, the key and the fix."""

from pathlib import Path

import pytest

from unwalled.config import load_config, parse_config
from unwalled.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "unwalled.yaml"
    path.write_text(text)
    return path


def test_no_config_gives_the_default_route_on_the_embedded_model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("UNWALLED_CONFIG", raising=False)
    config = load_config()
    assert [t.target for t in config.routes["default"].targets] == ["local/smollm2-135m"]
    assert config.source == "<built-in default>"


def test_env_variable_is_used_and_a_missing_file_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("UNWALLED_CONFIG", str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigError) as err:
        load_config()
    assert "nope.yaml" in err.value.message and "UNWALLED_CONFIG" in err.value.message


def test_unknown_key_names_file_key_and_allowed_keys(tmp_path):
    path = write(tmp_path, "routes:\n  triage:\n    targets: [local/smollm2-135m]\n"
                           "    retires: 2\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = err.value.message
    assert str(path) in message
    assert "routes.triage.retires" in message
    assert "retries" in message  # the allowed keys are listed


def test_unknown_backend_in_a_target_names_the_fix(tmp_path):
    path = write(tmp_path, "routes:\n  triage:\n    targets: [vllm/qwen]\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "routes.triage.targets[0]" in err.value.message
    assert "define it under 'backends:'" in err.value.message


def test_yaml_syntax_error_gives_line_and_column(tmp_path):
    path = write(tmp_path, "routes:\n  triage: [unclosed\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "line 3" in err.value.message or "line 2" in err.value.message


def test_bad_value_type_names_the_fix():
    with pytest.raises(ConfigError) as err:
        parse_config({"routes": {"r": {"targets": ["mock/x"], "timeout": -1}}})
    assert "routes.r.timeout" in err.value.message and "Fix:" in err.value.message


def test_target_must_be_backend_slash_model():
    with pytest.raises(ConfigError) as err:
        parse_config({"routes": {"r": {"targets": ["justamodel"]}}})
    assert "backend/model" in err.value.message


def test_local_only_egress_refuses_a_remote_backend():
    with pytest.raises(ConfigError) as err:
        parse_config({"egress": "local-only", "backends": {
            "hosted": {"type": "openai", "base_url": "https://api.example.com/v1"}}})
    assert "backends.hosted" in err.value.message and "local-only" in err.value.message
    config = parse_config({"egress": "local-only", "backends": {
        "vllm": {"type": "openai", "base_url": "http://127.0.0.1:8001/v1"}}})
    assert "vllm" in config.backends


def test_example_config_from_init_is_valid():
    from importlib import resources

    import yaml

    raw = yaml.safe_load(resources.files("unwalled").joinpath("example.yaml").read_text())
    config = parse_config(raw)
    assert config.routes["triage"].max_tokens == 128
    assert config.price_for("local/smollm2-135m").hourly == 0.10
