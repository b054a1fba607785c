import os

import pytest

from core.errors import ConfigError
from fathom.config import Config, load_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_default_toml_matches_the_dataclass_defaults():
    assert load_config(os.path.join(ROOT, "configs", "default.toml")) == Config()


def test_unknown_key_names_key_and_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[index]\nef_constructoin = 100\n")
    with pytest.raises(ConfigError, match=r"c\.toml \[index\].*ef_constructoin"):
        load_config(str(path))


def test_wrong_type_is_an_error(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[retrieve]\nk = "ten"\n')
    with pytest.raises(ConfigError, match="k: expected int"):
        load_config(str(path))


def test_unknown_table_and_bad_value_are_errors(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[crawler]\nmax_pages = 3\n")
    with pytest.raises(ConfigError, match="unknown table"):
        load_config(str(path))
    path.write_text("[index]\ncompression_level = 9\n")
    with pytest.raises(ConfigError, match="compression_level"):
        load_config(str(path))
    path.write_text("[answer]\nauto_slow_passages = -1\n")
    with pytest.raises(ConfigError, match="auto_slow_passages"):
        load_config(str(path))


@pytest.mark.parametrize("body, message", [
    ('draft_model = "qwen-9000"', "draft_model 'qwen-9000' is not a model"),
    ('draft_model = "qwen2.5-coder-0.5b"\ndraft_tokens = 0', "draft_tokens must be at least 1"),
    ('draft_model = "qwen2.5-coder-0.5b"\nprompt_lookup_tokens = 2', "draft_model and prompt_lookup_tokens"),
])
def test_bad_draft_model_settings_are_config_errors(tmp_path, body, message):
    path = tmp_path / "c.toml"
    path.write_text(f"[answer]\n{body}\n")
    with pytest.raises(ConfigError, match=message):
        load_config(str(path))


def test_partial_config_keeps_other_defaults(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[answer]\nmode = "fast"\n[crawl]\ninclude = ["docs"]\n')
    cfg = load_config(str(path))
    assert cfg.answer.mode == "fast" and cfg.crawl.include == ("docs",)
    assert cfg.index == Config().index
