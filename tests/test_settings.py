"""One settings spec: every key reaches the same Settings field, with the same checks and the same
words, from the config file, the environment and the command line; the README shows the spec."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from click.testing import CliRunner

from tagger.cli import CONFIG, setting_options, settings_from
from tagger.errors import ConfigError
from tagger.settings import KEYS, SPEC, Key, Settings, beets_keys, load_settings, toml_block

README = Path(__file__).resolve().parents[1] / "README.md"
FLAGGED = [k for k in SPEC if k.flag]


def _other(k: Key) -> Any:
    """A valid value of ``k`` that is not its default."""
    d = k.default
    if k.choices:
        return next(c for c in reversed(k.choices) if c != d)
    if k.kind == "float":
        return 0.65 if k.name == "min_confidence" else d + 0.5
    if k.name == "listen":
        return "127.0.0.1:9999"
    return {"bool": True, "int": 5, "budget": 7, "model": "musicnn-msd", "str": " / "}[k.kind]


def _bad(k: Key) -> Any:
    """A value of ``k``'s type that its check refuses (None: it has no check)."""
    if k.choices:
        return "nope"
    if k.check is None:
        return None
    return {"int": -1, "float": -1.0, "budget": -1, "str": "no-port"}[k.kind]


def _text(v: Any) -> str:
    return ("true" if v else "false") if isinstance(v, bool) else str(v)


@click.command()
@CONFIG
@setting_options(*(k.name for k in FLAGGED))
def probe(**kw: Any) -> None:
    s = settings_from(kw)
    click.echo(repr({k.name: getattr(s, k.name) for k in FLAGGED}))


def _flag_args(k: Key, value: Any) -> list[str]:
    if k.kind == "bool":
        return [k.flag.split("/")[0] if value else k.flag.split("/")[1]]  # type: ignore[union-attr]
    return [k.flag.split("/")[0], str(value)]  # type: ignore[union-attr]


@pytest.mark.parametrize("key", FLAGGED, ids=lambda k: k.name)
def test_every_key_reaches_the_same_field_from_file_environment_and_command_line(
        key: Key, tmp_path: Path) -> None:
    value = _other(key)
    conf = tmp_path / "config.toml"
    conf.write_text(f"{key.name} = {value!r}\n".replace("True", "true").replace("'", '"'))
    from_file = load_settings(conf, env={})
    from_env = load_settings(tmp_path / "none.toml", env={key.env: _text(value)})
    ran = CliRunner().invoke(probe, ["--config", str(tmp_path / "none.toml"),
                                     *_flag_args(key, value)], env={key.env: None})
    assert ran.exit_code == 0, ran.output
    from_flag = eval(ran.output)[key.name]  # our own repr of plain values
    assert getattr(from_file, key.name) == getattr(from_env, key.name) == from_flag == value
    assert getattr(Settings(), key.name) == key.default != value


@pytest.mark.parametrize("key", [k for k in FLAGGED if _bad(k) is not None], ids=lambda k: k.name)
def test_a_refused_value_is_named_in_the_same_words_wherever_it_comes_from(
        key: Key, tmp_path: Path) -> None:
    bad = _bad(key)
    conf = tmp_path / "config.toml"
    conf.write_text(f"{key.name} = {bad!r}\n".replace("'", '"'))
    said = []
    for source in ("file", "env"):
        with pytest.raises(ConfigError) as e:
            if source == "file":
                load_settings(conf, env={})
            else:
                load_settings(tmp_path / "none.toml", env={key.env: str(bad)})
        said.append(str(e.value))
    ran = CliRunner().invoke(probe, ["--config", str(tmp_path / "none.toml"),
                                     *_flag_args(key, bad)])
    assert ran.exit_code == 2
    if key.choices:  # click's own Choice says it before the settings are built, naming them all
        assert f"Invalid value for '{key.flag}'" in ran.output
        assert all(repr(c) in ran.output for c in key.choices), ran.output
    else:
        said.append(ran.output)
    origins = (str(conf), f"${key.env}", "command line")
    for words, origin in zip(said, origins):
        assert f"{origin}: '{key.name}' must be" in words, words
    whats = {re.sub(r".*' must be (.*), not .*", r"\1", w.strip()) for w in said}
    assert len(whats) == 1, whats  # one description of what it must be


def test_every_setting_has_one_row_and_the_readme_shows_them_all() -> None:
    assert [k.name for k in SPEC] == list(KEYS)
    assert set(KEYS) == set(Settings.__dataclass_fields__)
    text = README.read_text()
    assert f"```toml\n{toml_block()}```" in text, (
        "README's settings block differs from the spec: paste tagger.settings.toml_block()")


def test_the_readme_beets_block_shows_the_plugins_keys_with_genre_taggers_defaults() -> None:
    text = README.read_text()
    block = re.search(r"```yaml\nplugins: genrepredict\n(.*?)```", text, re.S)
    assert block is not None
    shown = yaml.safe_load(block.group(1))["genrepredict"]
    for theirs, key in beets_keys().items():
        want = key.default if key.default != "" else ""
        assert shown[theirs] == want or str(shown[theirs]) == str(want), theirs


def test_the_readme_module_map_names_every_module() -> None:
    """The README's module map is the newcomer's index: a module it does not name is lost."""
    text = README.read_text()
    table = text[text.index("### Module map"):text.index("### Tests and benchmarks")]
    package = README.parent / "tagger"
    missing = [str(p.relative_to(package.parent)) for p in sorted(package.rglob("*.py"))
               if p.name != "__init__.py" and f"`{p.stem}.py`" not in table
               and f"/{p.stem}.py`" not in table]
    assert not missing, f"not in the README's module map: {missing}"
