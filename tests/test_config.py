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


def test_the_allowed_keys_are_only_keys_a_user_writes(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, "routs: {}\n"))
    allowed = err.value.message.split("Allowed keys here: ", 1)[1]
    assert "routes" in allowed and "source" not in allowed


def test_a_key_given_twice_is_refused_with_its_line(tmp_path):
    """PyYAML keeps the last of two equal keys without a word: a route defined
    twice would silently lose its first definition."""
    path = write(tmp_path, "routes:\n  a:\n    targets: [local/smollm2-135m]\n"
                           "  a:\n    targets: [local/smollm2-135m]\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "line 4, column 3: the key 'a' is given twice" in err.value.message


def test_a_missing_local_model_file_is_said_at_start(tmp_path):
    from unwalled.runtime import Runtime

    path = write(tmp_path, "backends:\n  mine:\n    type: local\n    models:\n"
                           "      big: {path: /nowhere/model.gguf}\n"
                           "routes:\n  r: {targets: [mine/big]}\n")
    with pytest.raises(ConfigError) as err:
        Runtime.from_config(str(path))
    assert "/nowhere/model.gguf does not exist" in err.value.message
    assert "models.big.path" in err.value.message


def test_an_infinite_timeout_and_a_base_url_that_is_not_http_are_refused():
    with pytest.raises(ConfigError, match="routes.r.timeout"):
        parse_config({"routes": {"r": {"targets": ["mock/x"], "timeout": float("inf")}}})
    with pytest.raises(ConfigError, match="backends.up.base_url.*not an http"):
        parse_config({"backends": {"up": {"type": "openai", "base_url": "ftp://x/v1"}},
                      "routes": {"r": {"targets": ["up/m"]}}})


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


@pytest.mark.parametrize("written, lands", [
    ("sqlite:///rel.db", "conf/rel.db"),
    ("sqlite:///sub/rel.db", "conf/sub/rel.db"),
    (None, "conf/unwalled-ledger.db"),       # the default, beside the file too
])
def test_a_relative_sqlite_ledger_is_taken_from_the_config_files_folder(
        tmp_path, monkeypatch, written, lands):
    (tmp_path / "conf").mkdir()
    (tmp_path / "elsewhere").mkdir()
    ledger = f'ledger: {{url: "{written}"}}\n' if written else ""
    (tmp_path / "conf" / "unwalled.yaml").write_text(ledger)
    monkeypatch.chdir(tmp_path / "elsewhere")
    url = load_config("../conf/unwalled.yaml").ledger.url
    assert url == f"sqlite:///{tmp_path / lands}"


def test_absolute_memory_and_server_ledgers_are_left_as_written(tmp_path):
    for url in (f"sqlite:///{tmp_path / 'abs.db'}", "sqlite://",
                "sqlite:///:memory:", "postgresql+psycopg://u:p@127.0.0.1/test"):
        (tmp_path / "unwalled.yaml").write_text(f'ledger: {{url: "{url}"}}\n')
        assert load_config(tmp_path / "unwalled.yaml").ledger.url == url
