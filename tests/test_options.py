"""Options declared once (dataclass field -> flag, default, help, config key), config values through
the flags' own types, dump/load round trips, and the --threads default rule."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import pytest

from robustbench_mr.options import (
    ConfigError,
    add_options,
    check_required,
    config_defaults,
    dump_config,
    effective_config,
    eps_arg,
    from_args,
    load_config,
    option,
    positive_int,
)
from robustbench_mr.threads import default_threads


@dataclass(frozen=True)
class Demo:
    target: Path = option(positional=True, help="what to work on")
    eps: float = option(type=eps_arg, help="a radius")
    n: int = option(10, type=positive_int, help="how many")
    mode: str = option("fast", choices=("fast", "exact"), help="how")
    names: tuple[str, ...] = option((), flag="--name", help="repeatable")
    step: float = option(2 / 255, type=eps_arg, help="a step")
    label: str | None = option(None, default_text="the target's", help="a label")
    dry: bool = option(False, help="do nothing")
    internal: int = option(7, cli=False, help="API only")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="demo")
    add_options(p, Demo)
    return p


def test_fields_become_flags_with_their_defaults_in_the_help() -> None:
    p = _parser()
    text = p.format_help()
    assert "--n N" in text and "how many (default: 10)" in text
    assert "a step (default: 2/255)" in text and "a label (default: the target's)" in text
    assert "a radius (required)" in text and "--internal" not in text
    assert {"fast", "exact"} <= set(p._option_string_actions["--mode"].choices)


def test_from_args_builds_the_dataclass_and_keeps_api_only_fields() -> None:
    p = _parser()
    args = p.parse_args(["t.pt", "--eps", "8/255", "--name", "a", "--name", "b", "--dry"])
    check_required(p, args)
    d = from_args(Demo, args)
    assert d == Demo(Path("t.pt"), 8 / 255, names=("a", "b"), dry=True)
    assert d.internal == 7 and isinstance(d.target, Path)
    assert from_args(Demo, args, n=3).n == 3


def test_a_required_option_missing_everywhere_is_argparses_usage_error(capsys: pytest.CaptureFixture) -> None:
    p = _parser()
    args = p.parse_args(["t.pt"])
    with pytest.raises(SystemExit) as exc:
        check_required(p, args)
    assert exc.value.code == 2
    assert "the following arguments are required: --eps" in capsys.readouterr().err


def test_config_values_go_through_the_flags_types_and_choices() -> None:
    p = _parser()
    got = config_defaults(p, {"target": "x.pt", "eps": "4/255", "n": 5, "mode": "exact", "names": ["a"], "dry": True}, "f.yaml")
    assert got == {"target": Path("x.pt"), "eps": 4 / 255, "n": 5, "mode": "exact", "names": ["a"], "dry": True}
    assert config_defaults(p, {"step": 0.1}, "f.yaml") == {"step": 0.1}  # a YAML float, parsed as on the command line


@pytest.mark.parametrize(("values", "message"), [
    ({"n": 0}, "f.yaml: n: '0' must be positive"),
    ({"n": "many"}, "f.yaml: n: 'many' is not an integer"),
    ({"eps": "8/255/2"}, "f.yaml: eps: eps '8/255/2' is not a number"),
    ({"eps": 0}, "f.yaml: eps: eps '0' is zero"),
    ({"mode": "slow"}, "f.yaml: mode: 'slow' is not one of fast, exact"),
    ({"dry": "yes"}, "f.yaml: dry: expected true or false"),
    ({"n": [1, 2]}, "f.yaml: n: expected one value"),
    ({"colour": "red"}, "f.yaml: unknown key 'colour'; known keys: target, eps, n, mode, names, step, label, dry"),
    ({"internal": 3}, "unknown key 'internal'"),
])
def test_bad_config_values_are_one_line_naming_the_key(values: dict, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        config_defaults(_parser(), values, "f.yaml")
    assert message in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize("suffix", [".yaml", ".toml"])
def test_dump_then_load_gives_the_same_values(tmp_path: Path, suffix: str) -> None:
    p = _parser()
    args = p.parse_args(["dir/t.pt", "--eps", "8/255", "--name", 'we"ird', "--dry"])
    values = effective_config(p, args)
    f = tmp_path / f"c{suffix}"
    f.write_text(dump_config(values, suffix[1:]))
    loaded = load_config(f)
    p2 = _parser()
    p2.set_defaults(**config_defaults(p2, loaded, str(f)))
    assert effective_config(p2, p2.parse_args([])) == values
    assert values["eps"] == 8 / 255 and values["names"] == ['we"ird'] and values["label"] is None


@pytest.mark.parametrize(("name", "text", "problem"), [
    ("c.yaml", "n: [1\n", "not valid YAML"),
    ("c.toml", "n = \n", "not valid TOML"),
    ("c.yaml", "- 1\n- 2\n", "expected a mapping"),
    ("c.json", "{}", "unknown file type '.json'"),
])
def test_unreadable_config_files_are_one_line(tmp_path: Path, name: str, text: str, problem: str) -> None:
    f = tmp_path / name
    f.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_config(f)
    assert problem in str(exc.value) and str(f) in str(exc.value) and "\n" not in str(exc.value)


def test_a_missing_config_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize(("jobs", "cores", "load", "expected"), [
    (1, 8, 0.0, 8),    # idle machine, one process: every core
    (8, 8, 0.0, 1),    # 8 workers: one thread each
    (3, 8, 0.0, 2),    # 8 // 3
    (1, 2, 3.1, 1),    # a busy shared 2-core machine: 1, never 0
    (1, 16, 4.4, 12),  # 4 cores busy elsewhere
    (16, 4, 0.0, 1),   # more workers than cores
])
def test_the_threads_default_never_oversubscribes(jobs: int, cores: int, load: float, expected: int) -> None:
    threads = default_threads(jobs, cores=cores, load=load, environ={})
    assert threads == expected
    assert threads * jobs <= max(cores, jobs)


def test_the_users_omp_num_threads_is_the_default_but_not_our_own_leftover() -> None:
    assert default_threads(4, cores=8, load=0.0, environ={"OMP_NUM_THREADS": "3"}) == 3
    # set by apply_threads for child processes: recomputed, not inherited as a user's choice
    assert default_threads(4, cores=8, load=0.0, environ={"OMP_NUM_THREADS": "1", "ROBUSTBENCH_MR_THREADS": "1"}) == 2
