"""The settings' defaults have one home, app/settings.py: the packaged configuration only shows
them, commented out, and each shown value is the class's own."""
import yaml

from llamba.app.settings import DEFAULT_CONFIG, Settings


def test_the_packaged_configuration_shows_the_settings_defaults_and_sets_only_the_model():
    text = DEFAULT_CONFIG.read_text()
    assert set(yaml.safe_load(text)) == {"models"}
    shown = {}
    for line in text.splitlines():
        key = line[2:].split(":")[0]
        if line.startswith("# ") and key in Settings.model_fields:
            shown.update(yaml.safe_load(line[2:].split("  #")[0]))
    assert len(shown) >= 15
    for key, value in shown.items():
        assert Settings.model_fields[key].default == value, key
    assert Settings().models == Settings.model_fields["models"].default
