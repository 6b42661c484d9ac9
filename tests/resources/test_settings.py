"""Stack settings: every stack file loads; a bad value names its key and the rule."""

from __future__ import annotations

import pytest
import yaml

from resources.settings import load_settings
from tests.conftest import REPO
from tuning.errors import ConfigError


def raw_config(stack: str) -> dict[str, str]:
    """A stack file's values as the Pulumi runtime hands them over: strings, objects as JSON."""
    import json

    values = yaml.safe_load((REPO / f"Pulumi.{stack}.yaml").read_text())["config"]
    return {key: json.dumps(value) if isinstance(value, (dict, list)) else str(value).lower()
            if isinstance(value, bool) else str(value) for key, value in values.items()}


@pytest.mark.parametrize("stack", ["local", "dev", "prod"])
def test_every_stack_file_loads(stack):
    settings = load_settings(raw_config(stack))
    assert settings.base_model == "translation-llm-002"
    assert settings.region == "us-central1"


def test_local_stack_uses_the_embedded_emulator_and_waits():
    settings = load_settings(raw_config("local"))
    assert settings.emulator_endpoint == "embedded"
    assert settings.wait_for_completion is True


def test_prod_does_not_block_up_and_protects_the_job():
    settings = load_settings(raw_config("prod"))
    assert (settings.wait_for_completion, settings.protect_job, settings.emulator_endpoint) == (False, True, None)


def test_bad_adapter_size_names_the_key_and_allowed_value():
    with pytest.raises(ConfigError, match=r"translation-tuning:adapterSize: .*supports adapter size 4 only, got 8"):
        load_settings({**raw_config("local"), "translation-tuning:adapterSize": "8"})


def test_bad_on_delete_lists_the_allowed_values():
    with pytest.raises(ConfigError, match=r"translation-tuning:onDelete: .*'cancel' or 'abandon'"):
        load_settings({**raw_config("local"), "translation-tuning:onDelete": "delete"})


def test_bad_region_names_gcp_region():
    with pytest.raises(ConfigError, match=r"^gcp:region: .*'us-central1'"):
        load_settings({**raw_config("local"), "gcp:region": "europe-west4"})


def test_missing_project_says_how_to_set_it():
    config = raw_config("local")
    del config["gcp:project"]
    with pytest.raises(ConfigError, match=r"gcp:project: is required \(set it with `pulumi config set gcp:project"):
        load_settings(config)


def test_uppercase_label_key_is_rejected_with_the_rule():
    with pytest.raises(ConfigError, match=r"translation-tuning:labels: .*lowercase"):
        load_settings({**raw_config("local"), "translation-tuning:labels": '{"Team": "x"}'})


def test_emulator_endpoint_must_be_a_url():
    with pytest.raises(ConfigError, match=r"translation-tuning:emulatorEndpoint: .*http\(s\):// URL"):
        load_settings({**raw_config("local"), "translation-tuning:emulatorEndpoint": "localhost:8080"})


def test_zero_epochs_means_service_default():
    assert load_settings({**raw_config("local"), "translation-tuning:epochCount": "0"}).epoch_count is None


def test_every_settings_key_is_declared_in_pulumi_yaml():
    from dataclasses import fields

    from resources.settings import StackSettings, config_key

    declared = set(yaml.safe_load((REPO / "Pulumi.yaml").read_text())["config"])
    keys = {config_key(spec.name) for spec in fields(StackSettings)}
    project_keys = {key.split(":", 1)[1] for key in keys if key.startswith("translation-tuning:")}
    assert project_keys == declared


# The bad values tests/e2e/test_bad_input.py previews that the settings stop, checked here without an engine.
PROGRAM_CASES = [case for case in yaml.safe_load((REPO / "tests" / "data" / "bad" / "configs.yaml").read_text())
                 if case["stage"] == "program" and ":0: " not in case["message"]]


@pytest.mark.parametrize("case", PROGRAM_CASES, ids=lambda case: f"{case['key']}={case['value']}")
def test_a_bad_config_value_names_the_key_and_the_rule(case):
    import json

    config = raw_config("local")
    if case["value"] is None:
        del config[case["key"]]
    else:
        config[case["key"]] = json.dumps(case["value"]) if isinstance(case["value"], dict) else str(case["value"])
    with pytest.raises(ConfigError) as raised:
        load_settings(config)
    assert str(raised.value).startswith(f"{case['key']}: ") and case["message"] in str(raised.value)
