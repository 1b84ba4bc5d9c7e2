"""litefs.yml loading: LiteFS v0.5.14's config tests, Go semantics, strictness and plugin sections."""

from __future__ import annotations

import os
import socket
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from litefs.config import (
    MASK,
    Config,
    ConfigError,
    DataConfig,
    FuseConfig,
    HTTPConfig,
    LeaseConfig,
    LogConfig,
    TracingConfig,
    config_search_paths,
    default_for,
    dump_yaml,
    expand_env,
    find_config_path,
    load_config,
    parse_config,
    validate,
)
from litefs.durations import DurationError, format_duration, parse_duration

# --- plugin-style section types (stand-ins for what the plugins register) ----------------------


@dataclass
class ExecCmd:
    cmd: str = ""
    if_candidate: bool = False


ExecType = str | list[ExecCmd] | None


@dataclass
class ConsulSection:
    url: str = field(default="", metadata={"secret": True})
    key: str = ""
    ttl: float = field(default=10.0, metadata={"duration": True})
    lock_delay: float = field(default=1.0, metadata={"duration": True})


@dataclass
class ProxySection:
    addr: str = ""
    target: str = ""
    db: str = ""
    max_lag: float = field(default=10.0, metadata={"duration": True})
    passthrough: list[str] = field(default_factory=list)


@dataclass
class FooLease:
    """A third-party lease type's section (``lease.foo``)."""

    servers: list[str] = field(default_factory=list)
    weights: dict[str, int] = field(default_factory=dict)
    port: int | str = 7000
    token: str = field(default="", metadata={"secret": True})
    extra: Any = None


@dataclass
class NeedsName:
    name: str
    level: int = 1


SECTIONS = {"exec": ExecType, "lease.consul": ConsulSection, "proxy": ProxySection}


def parse(text: str, **kwargs: Any) -> Config:
    kwargs.setdefault("path", "litefs.yml")
    kwargs.setdefault("environ", {})
    kwargs.setdefault("sections", SECTIONS)
    return parse_config(textwrap.dedent(text), **kwargs)


def parse_error(text: str, **kwargs: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse(text, **kwargs)
    return info.value


# --- TestExpandEnv (LiteFS) ----------------------------------------------------------------------

LITEFS_ENV = {"LITEFS_FOO": "foo", "LITEFS_FOO2": "foo", "LITEFS_BAR": "bar baz"}


@pytest.mark.parametrize(
    ("text", "want"),
    [
        # UnbracedVar
        ("$LITEFS_FOO", "foo"),
        # BracedVar
        ("${LITEFS_FOO}", "foo"),
        ("${ LITEFS_FOO }", "foo"),
        # SingleQuoteExpr
        ("${ LITEFS_FOO == 'foo' }", "true"),
        ("${ LITEFS_FOO != 'foo' }", "false"),
        # DoubleQuoteExpr
        ('${ LITEFS_BAR == "bar baz" }', "true"),
        ('${ LITEFS_BAR != "" }', "true"),
        # VarExpr
        ("${ LITEFS_FOO == LITEFS_FOO2 }", "true"),
        ("${ LITEFS_FOO != LITEFS_BAR }", "true"),
    ],
)
def test_expand_env_litefs_cases(text: str, want: str) -> None:
    assert expand_env(text, LITEFS_ENV) == want


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("no dollars", "no dollars"),
        ("$UNSET", ""),
        ("${UNSET}", ""),
        ("a$LITEFS_FOO-b", "afoo-b"),  # a name is the longest run of [A-Za-z0-9_]
        ("$LITEFS_FOOx", ""),  # ... so this is the unset LITEFS_FOOx
        ("${LITEFS_FOO}x", "foox"),
        ("cost: $", "cost: $"),  # '$' at the very end stays
        ("$ x", "$ x"),  # '$' not followed by a name stays
        ("a$.b", "a$.b"),
        ("a${}b", "ab"),  # "${}" is eaten
        ("a${b", "ab"),  # an unclosed "${" loses those two characters
        ("a${LITEFS_FOO", "aLITEFS_FOO"),
        ("$1abc", "abc"),  # special one-character names: $1 is the (unset) variable "1"
        ("${1}", ""),
        ("$$HOME", "HOME"),  # no escape syntax: $$ is the variable "$"
        ("$-x", "x"),
        ("${*}", ""),
        ("${\tLITEFS_FOO\n}", "foo"),  # trimmed like Go's strings.TrimSpace
        ("${ UNSET == '' }", "true"),
        ("${ UNSET == OTHER_UNSET }", "true"),
        ("${LITEFS_FOO=='foo'}", "true"),
        ("${ LITEFS_FOO == 'foo' || 'x' }", "false"),  # the literal is everything up to the last quote
        ("${ LITEFS_FOO == foo bar }", ""),  # matches no form: looked up as a (unset) name
        ("x: ${LITEFS_FOO}/${LITEFS_BAR}", "x: foo/bar baz"),
    ],
)
def test_expand_env_go_semantics(text: str, want: str) -> None:
    env = dict(LITEFS_ENV)
    assert expand_env(text, env) == want


def test_expand_env_special_names_are_looked_up() -> None:
    assert expand_env("$1 ${2} $$", {"1": "one", "2": "two", "$": "pid"}) == "one two pid"


def test_expand_env_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LITEFS_TEST_X", "xx")
    assert expand_env("${LITEFS_TEST_X}") == "xx"


# --- durations -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("10s", 10.0),
        ("1m30s", 90.0),
        ("500ms", 0.5),
        ("1.5h", 5400.0),
        ("0", 0.0),
        ("-0", 0.0),
        ("+10s", 10.0),
        ("-1.5s", -1.5),
        ("2us", 2e-6),
        ("2\u00b5s", 2e-6),
        ("2\u03bcs", 2e-6),
        ("3ns", 3e-9),
        (".5s", 0.5),
        ("1.s", 1.0),
        ("1h2m3s4ms", 3723.004),
        ("10m", 600.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds, abs=1e-12)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", 'time: invalid duration ""'),
        ("10", 'time: missing unit in duration "10"'),
        ("10x", 'time: unknown unit "x" in duration "10x"'),
        ("s", 'time: invalid duration "s"'),
        (".s", 'time: invalid duration ".s"'),
        ("--1s", 'time: invalid duration "--1s"'),
        ("1 s", 'time: unknown unit " s" in duration "1 s"'),
        ("3000000h", 'time: invalid duration "3000000h"'),
    ],
)
def test_parse_duration_errors(text: str, message: str) -> None:
    with pytest.raises(DurationError) as info:
        parse_duration(text)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (1e-9, "1ns"),
        (1.1e-6, "1.1\u00b5s"),
        (2.2e-3, "2.2ms"),
        (3.3, "3.3s"),
        (10, "10s"),
        (60, "1m0s"),
        (245, "4m5s"),
        (245.001, "4m5.001s"),
        (3600, "1h0m0s"),
        (18367.001, "5h6m7.001s"),
        (600, "10m0s"),
        (-60, "-1m0s"),
        (0.5, "500ms"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("text", ["10s", "1m30s", "500ms", "1h2m3.5s", "3ns", "7\u00b5s"])
def test_duration_round_trip(text: str) -> None:
    assert parse_duration(format_duration(parse_duration(text))) == parse_duration(text)


# --- defaults --------------------------------------------------------------------------------------


def test_defaults_are_litefs_defaults() -> None:
    config = Config()
    assert config.exit_on_error is True
    assert config.skip_sync is False
    assert config.strict_verify is False
    assert config.fuse == FuseConfig(dir="/litefs", allow_other=False, debug=False)
    assert config.data == DataConfig(
        dir="/var/lib/litefs", compress=True, retention=600.0, retention_monitor_interval=60.0
    )
    assert config.http == HTTPConfig(addr=":20202", snapshot_timeout=0.0)
    assert config.lease == LeaseConfig(
        type="",
        hostname="",
        advertise_url="",
        candidate=True,
        promote=False,
        reconnect_delay=1.0,
        demote_delay=10.0,
        databases=[],
    )
    assert config.log == LogConfig(format="text", timestamp=False, debug=False)
    assert config.tracing == TracingConfig(enabled=True, path="", max_size=64, max_count=8, compress=True)


@pytest.mark.parametrize("text", ["", "\n", "# only a comment\n", "---\n"])
def test_empty_file_gives_defaults(text: str) -> None:
    config = parse(text)
    assert config.fuse == FuseConfig() and config.lease == LeaseConfig() and config.tracing == TracingConfig()
    assert config.section("exec") is None
    assert config.section("proxy") == ProxySection()


def test_omitted_keys_keep_defaults() -> None:
    config = parse("data:\n  compress: false\n")
    assert config.data == DataConfig(compress=False)
    assert config.fuse == FuseConfig()


def test_null_values_keep_defaults() -> None:
    # yaml.v3 leaves a typed field alone when given null.
    config = parse("fuse:\n  dir:\ndata:\nlease:\n  candidate: ~\n  databases:\n")
    assert config.fuse.dir == "/litefs"
    assert config.data == DataConfig()
    assert config.lease.candidate is True
    assert config.lease.databases == []


# --- TestUnmarshalConfig (LiteFS) ------------------------------------------------------------------

SAMPLE = """\
fuse:
  dir: "/litefs"
  allow-other: false
  debug: false

data:
  dir: "/var/lib/litefs"
  retention: "10m"
  retention-monitor-interval: "1m"

exec: "myapp -addr :8081"
skip-sync: false
exit-on-error: false

http:
  addr: ":20202"

proxy:
  addr: ":8080"
  target: "localhost:8081"
  db: "my.db"
  passthrough: ["/debug/*", "*.png"]

lease:
  type: "consul"
  advertise-url: "http://myhost:20202"
  hostname: "myhost"
  candidate: true
  consul:
    url: "http://myhost:8500"
    key: "litefs/primary"
    ttl: "10s"
    lock-delay: "1s"

tracing:
  path: "/var/log/litefs/trace.log"
  max-size: 64
  max-count: 10
  compress: true
"""


def test_unmarshal_config_ok() -> None:
    config = parse(SAMPLE, expand=False)
    assert config.data.dir == "/var/lib/litefs"
    assert config.fuse.dir == "/litefs"
    assert config.fuse.debug is False
    assert config.http.addr == ":20202"
    assert config.lease.type == "consul"
    assert config.lease.hostname == "myhost"
    assert config.lease.advertise_url == "http://myhost:20202"
    consul = config.section("lease.consul")
    assert consul.url == "http://myhost:8500"
    assert consul.key == "litefs/primary"
    assert consul.ttl == 10.0
    assert consul.lock_delay == 1.0
    assert config.lease.candidate is True
    # and the rest of the sample
    assert config.exit_on_error is False
    assert config.data.retention == 600.0 and config.data.retention_monitor_interval == 60.0
    assert config.section("exec") == "myapp -addr :8081"
    assert config.section("proxy") == ProxySection(
        addr=":8080", target="localhost:8081", db="my.db", passthrough=["/debug/*", "*.png"]
    )
    assert config.tracing.max_count == 10


def test_unmarshal_config_unknown_field() -> None:
    err = parse_error("data:\n  bar: 123")
    assert (err.path, err.line, err.key) == ("litefs.yml", 2, "data.bar")
    assert str(err).startswith('litefs.yml:2: unknown key "data.bar"')


# --- TestConfig (LiteFS): exec forms ---------------------------------------------------------------


def test_config_empty_exec() -> None:
    assert parse("exec:\n").section("exec") is None


def test_config_inline_exec() -> None:
    assert parse('exec: "run me"').section("exec") == "run me"


def test_config_single_exec() -> None:
    assert parse('exec:\n  - cmd: "run me"\n').section("exec") == [ExecCmd(cmd="run me")]


def test_config_multi_exec() -> None:
    config = parse('exec:\n  - cmd: "run me"\n    if-candidate: true\n\n  - cmd: "run me too"\n')
    assert config.section("exec") == [ExecCmd("run me", True), ExecCmd("run me too", False)]


def test_config_exec_mapping_is_rejected() -> None:
    err = parse_error("exec:\n  cmd: x\n")
    assert err.key == "exec"
    assert "expected a string or a list, found a mapping" in str(err)


# --- TestMountCommand_Validate (LiteFS) -----------------------------------------------------------


def test_validate_fuse_directory_required() -> None:
    config = Config()
    config.fuse.dir = ""
    with pytest.raises(ConfigError) as info:
        validate(config)
    assert str(info.value) == "fuse directory required"


def test_validate_data_directory_required(tmp_path: Path) -> None:
    config = Config()
    config.fuse.dir = str(tmp_path)
    config.data.dir = ""
    with pytest.raises(ConfigError) as info:
        validate(config)
    assert str(info.value) == "data directory required"


def test_validate_matching_dirs(tmp_path: Path) -> None:
    config = Config()
    config.fuse.dir = str(tmp_path)
    config.data.dir = str(tmp_path)
    with pytest.raises(ConfigError) as info:
        validate(config)
    assert str(info.value) == "fuse directory and data directory cannot be the same path"


def test_validate_database_filter_on_candidate() -> None:
    err = parse_error("lease:\n  candidate: true\n  databases: [x.db]\n")
    assert err.message == "cannot specify a database replication filter on candidate nodes"
    assert (err.line, err.key) == (3, "lease.databases")
    config = parse("lease:\n  candidate: false\n  databases: [x.db]\n")
    assert config.lease.databases == ["x.db"]


def test_validation_errors_from_a_file_name_the_line() -> None:
    err = parse_error("fuse:\n  dir: /x\ndata:\n  dir: /x\n")
    assert str(err) == "litefs.yml:4: fuse directory and data directory cannot be the same path"
    err = parse_error('fuse:\n  dir: ""\n')
    assert str(err) == "litefs.yml:2: fuse directory required"


def test_lease_type_is_not_checked_here() -> None:
    assert parse("lease:\n  type: zookeeper\n").lease.type == "zookeeper"


def test_check_false_skips_validation() -> None:
    assert parse('fuse:\n  dir: ""\n', check=False).fuse.dir == ""


# --- scalars read like Go's yaml.v3 ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("true", True),
        ("True", True),
        ("TRUE", True),
        ("false", False),
        ("FALSE", False),
        ("yes", True),
        ("Yes", True),
        ("on", True),
        ("ON", True),
        ("y", True),
        ("Y", True),
        ("no", False),
        ("off", False),
        ("n", False),
        ('"yes"', True),  # yaml.v3 also takes 1.1 booleans from quoted strings into a bool field
        ("'off'", False),
    ],
)
def test_booleans(text: str, want: bool) -> None:
    assert parse(f"skip-sync: {text}\n").skip_sync is want


@pytest.mark.parametrize("text", ['"true"', "1", "0", "tru", "[true]", "{a: 1}", "'False'"])
def test_booleans_rejected(text: str) -> None:
    err = parse_error(f"\nfuse:\n  debug: {text}\n")
    assert err.key == "fuse.debug" and err.line == 3
    assert "expected a boolean" in str(err)


def test_quoted_true_hint() -> None:
    assert "(remove the quotes)" in str(parse_error('skip-sync: "true"'))


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("64", 64),
        ("0x40", 64),
        ("0o100", 64),
        ("0100", 64),
        ("1_000", 1000),
        ("+5", 5),
        ("64.0", 64),
        ("-3", -3),
    ],
)
def test_integers(text: str, want: int) -> None:
    assert parse(f"tracing:\n  max-size: {text}\n").tracing.max_size == want


@pytest.mark.parametrize("text", ['"64"', "64.5", "big", "true", ".inf", "[1]"])
def test_integers_rejected(text: str) -> None:
    err = parse_error(f"tracing:\n  max-count: {text}\n")
    assert (err.key, err.line) == ("tracing.max-count", 2)
    assert "expected an integer" in str(err)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("myhost", "myhost"),
        ("'quoted'", "quoted"),
        ("123", "123"),  # any scalar reads into a string field, as written
        ("0x10", "0x10"),
        ("yes", "yes"),
        ("1:30", "1:30"),  # not a YAML 1.1 sexagesimal number
        ("2001-12-14", "2001-12-14"),
        ("1.50", "1.50"),
    ],
)
def test_strings_take_any_scalar_as_written(text: str, want: str) -> None:
    assert parse(f"lease:\n  hostname: {text}\n").lease.hostname == want


@pytest.mark.parametrize("text", ["[a, b]", "{a: b}"])
def test_strings_reject_collections(text: str) -> None:
    err = parse_error(f"lease:\n  hostname: {text}\n")
    assert err.key == "lease.hostname" and "expected a string" in str(err)


@pytest.mark.parametrize(
    ("text", "want"),
    [('"10s"', 10.0), ("10s", 10.0), ("1m30s", 90.0), ("500ms", 0.5), ("0", 0.0), ('"0"', 0.0)],
)
def test_duration_fields(text: str, want: float) -> None:
    assert parse(f"data:\n  retention: {text}\n").data.retention == want


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("10", "found the number 10 (add a unit)"),
        ("1.5", "found the number 1.5"),
        ("10x", 'time: unknown unit "x" in duration "10x"'),
        ('"10"', 'time: missing unit in duration "10"'),
        ("true", "found the boolean true"),
        ("[1s]", "found a list"),
    ],
)
def test_duration_fields_rejected(text: str, fragment: str) -> None:
    err = parse_error(f"lease:\n  reconnect-delay: {text}\n")
    assert (err.key, err.line) == ("lease.reconnect-delay", 2)
    assert fragment in str(err)


def test_literal_field() -> None:
    assert parse("log:\n  format: json\n").log.format == "json"
    err = parse_error("log:\n  format: xml\n")
    assert err.key == "log.format"
    assert 'expected one of "text", "json", found the string "xml"' in str(err)


def test_list_field() -> None:
    config = parse("lease:\n  candidate: false\n  databases:\n    - a.db\n    - b.db\n")
    assert config.lease.databases == ["a.db", "b.db"]
    err = parse_error("lease:\n  candidate: false\n  databases: a.db\n")
    assert err.key == "lease.databases" and "expected a list, found the string" in str(err)
    err = parse_error("lease:\n  candidate: false\n  databases:\n    - a.db\n    - [b]\n")
    assert (err.key, err.line) == ("lease.databases[1]", 5)


def test_root_must_be_a_mapping() -> None:
    err = parse_error("- a\n- b\n")
    assert "expected a mapping, found a list" in str(err)


def test_merge_keys() -> None:
    text = "base: &base\n  dir: /from-anchor\n  debug: true\nfuse:\n  <<: *base\n  debug: false\n"
    # The anchor lives in a registered free-form section, so the file stays strict.
    config = parse(text, sections={"base": Any})
    assert config.fuse.dir == "/from-anchor" and config.fuse.debug is False
    err = parse_error("base: &base\n  dirr: /x\nfuse:\n  <<: *base\n", sections={"base": Any})
    assert err.key == "fuse.dirr"


# --- strictness: unknown keys at every level ---------------------------------------------------------


def test_unknown_top_level_key_with_suggestion() -> None:
    err = parse_error("fuse:\n  dir: /mnt\nexit-on-eror: false\n")
    assert str(err) == 'litefs.yml:3: unknown key "exit-on-eror" (did you mean "exit-on-error"?)'
    assert (err.path, err.line, err.key) == ("litefs.yml", 3, "exit-on-eror")


def test_snake_case_key_suggests_kebab_case() -> None:
    err = parse_error("fuse:\n  allow_other: true\n")
    assert 'unknown key "fuse.allow_other" (did you mean "allow-other"?)' in str(err)


def test_unknown_key_in_registered_section() -> None:
    err = parse_error("lease:\n  type: consul\n  consul:\n    url: http://c:8500\n    ttll: 10s\n")
    assert str(err) == 'litefs.yml:5: unknown key "lease.consul.ttll" (did you mean "ttl"?)'


def test_misspelt_registered_section() -> None:
    err = parse_error("lease:\n  type: consul\n  consl:\n    url: x\n")
    assert str(err) == 'litefs.yml:3: unknown key "lease.consl" (did you mean "consul"?)'


def test_unknown_key_in_list_item() -> None:
    err = parse_error("exec:\n  - cmd: a\n  - cmd: b\n    if-candiate: true\n")
    assert (err.key, err.line) == ("exec[1].if-candiate", 4)
    assert 'did you mean "if-candidate"' in str(err)


def test_litefs_section_without_its_plugin() -> None:
    err = parse_error("proxy:\n  target: localhost:8081\n", sections={})
    assert err.key == "proxy" and err.line == 1
    assert "no installed plugin provides this section" in str(err)
    assert '"proxy" plugin' in str(err)
    err = parse_error("lease:\n  etcd:\n    key: k\n", sections={})
    assert "no installed plugin provides this section" in str(err) and "lease_etcd" in str(err)


def test_third_party_lease_section_registered_or_not() -> None:
    text = """\
    lease:
      type: foo
      foo:
        servers: [a, b]
        weights: {a: 1, b: 2}
        port: http
        extra: {anything: [1, yes, "x"]}
    """
    config = parse(text, sections={"lease.foo": FooLease})
    assert config.lease.type == "foo"
    assert config.section("lease.foo") == FooLease(
        servers=["a", "b"], weights={"a": 1, "b": 2}, port="http", extra={"anything": [1, "yes", "x"]}
    )
    assert (
        parse("lease:\n  foo:\n    port: 8\n", sections={"lease.foo": FooLease}).section("lease.foo").port
        == 8
    )
    err = parse_error(text, sections={})
    assert (err.key, err.line) == ("lease.foo", 3)
    assert 'no installed lease plugin provides a "lease.foo" section' in str(err)


def test_unknown_key_without_suggestion_lists_known_keys() -> None:
    err = parse_error("data:\n  zzzz: 1\n")
    assert "compress, dir, retention, retention-monitor-interval" in str(err)


def test_all_errors_are_reported() -> None:
    err = parse_error("fuse:\n  dirr: /a\ndata:\n  compress: maybe\nlog:\n  format: xml\n")
    assert [(e.key, e.line) for e in err.errors] == [
        ("fuse.dirr", 2),
        ("data.compress", 4),
        ("log.format", 6),
    ]
    assert (err.key, err.line) == ("fuse.dirr", 2)
    assert str(err).splitlines()[1].startswith("litefs.yml:4: data.compress: expected a boolean")


def test_duplicate_keys() -> None:
    err = parse_error("fuse:\n  dir: /a\n  dir: /b\n")
    assert str(err) == 'litefs.yml:3: mapping key "dir" already defined at line 2'


def test_yaml_syntax_error_names_line() -> None:
    err = parse_error("fuse:\n  dir: /a\n data: [\n")
    assert err.path == "litefs.yml" and err.line is not None and err.line >= 3
    assert "invalid YAML" in str(err)


def test_more_than_one_document() -> None:
    err = parse_error("fuse: {dir: /a}\n---\nfuse: {dir: /b}\n")
    assert err.line == 2 and "invalid YAML" in str(err)


def test_section_type_errors() -> None:
    err = parse_error("proxy: 5\n")
    assert str(err) == "litefs.yml:1: proxy: expected a mapping, found the integer 5"
    err = parse_error("fuse: [1]\n")
    assert str(err) == "litefs.yml:1: fuse: expected a mapping, found a list"


# --- plugin sections ------------------------------------------------------------------------------------


def test_sections_hold_defaults_when_absent() -> None:
    config = parse("fuse:\n  dir: /mnt\n")
    assert config.sections == {"exec": None, "lease.consul": ConsulSection(), "proxy": ProxySection()}
    assert config.section("lease.consul") == ConsulSection()


def test_section_accessor_on_a_bare_config() -> None:
    config = Config(section_types={"proxy": ProxySection})
    assert config.section("proxy") == ProxySection()
    with pytest.raises(KeyError):
        config.section("nope")


def test_required_field_in_plugin_section() -> None:
    err = parse_error("thing:\n  level: 2\n", sections={"thing": NeedsName})
    assert err.key == "thing" and 'missing required key "thing.name"' in str(err)
    assert parse("thing:\n  name: x\n", sections={"thing": NeedsName}).section("thing") == NeedsName("x", 1)


@dataclass
class CheckedSection:
    port: int = 80

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"port {self.port} is out of range")


def test_plugin_section_post_init_check() -> None:
    err = parse_error("\nchecked:\n  port: 70000\n", sections={"checked": CheckedSection})
    assert str(err) == "litefs.yml:3: checked: port 70000 is out of range"
    assert (
        parse("checked:\n  port: 8080\n", sections={"checked": CheckedSection}).section("checked").port
        == 8080
    )


def test_bad_required_value_reports_only_the_value() -> None:
    err = parse_error("thing:\n  name: [x]\n", sections={"thing": NeedsName})
    assert [e.key for e in err.errors] == ["thing.name"]


def test_nested_section_without_a_core_parent() -> None:
    config = parse("acme:\n  widget:\n    name: w\n", sections={"acme.widget": NeedsName})
    assert config.section("acme.widget") == NeedsName("w")
    err = parse_error("acme:\n  gadget: {}\n", sections={"acme.widget": NeedsName})
    assert err.key == "acme.gadget"


def test_plugin_may_not_shadow_a_core_key() -> None:
    with pytest.raises(ConfigError, match="core key"):
        parse("", sections={"fuse": ProxySection})
    with pytest.raises(ConfigError, match="core key"):
        parse("", sections={"lease.type": str})


@pytest.mark.parametrize(
    ("tp", "want"),
    [
        (ProxySection, ProxySection()),
        (ExecType, None),
        (list[str], []),
        (dict[str, int], {}),
        (str, ""),
        (int, 0),
    ],
)
def test_default_for(tp: Any, want: Any) -> None:
    assert default_for(tp) == want


# --- secrets ----------------------------------------------------------------------------------------------


def test_secret_plain_string() -> None:
    config = parse("lease:\n  consul:\n    url: http://:tok@c:8500\n")
    assert config.section("lease.consul").url == "http://:tok@c:8500"


def test_secret_from_env() -> None:
    text = 'lease:\n  consul:\n    url: {"$env": "CONSUL_URL"}\n'
    config = parse(text, environ={"CONSUL_URL": "https://:s3cr3t@consul"})
    assert config.section("lease.consul").url == "https://:s3cr3t@consul"
    err = parse_error(text, environ={})
    assert (err.key, err.line) == ("lease.consul.url", 3)
    assert 'environment variable "CONSUL_URL" is not set' in str(err)


def test_secret_from_file(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "token").write_text("tok3n\n")
    path = tmp_path / "litefs.yml"
    path.write_text(
        'lease:\n  consul:\n    url: {"$file": "secrets/token"}\n'
        f'  foo:\n    token: {{"$file": "{tmp_path}/secrets/token"}}\n'
    )
    config = load_config(path, environ={"HOSTNAME": "h"}, sections={**SECTIONS, "lease.foo": FooLease})
    assert config.section("lease.consul").url == "tok3n"  # relative to the config file's directory
    assert config.section("lease.foo").token == "tok3n"
    path.write_text('lease:\n  consul:\n    url: {"$file": "missing"}\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={"HOSTNAME": "h"}, sections=SECTIONS)
    assert (info.value.key, info.value.line) == ("lease.consul.url", 3)
    assert f"cannot read secret file {tmp_path}/missing" in str(info.value)


def test_secret_keys_survive_env_expansion() -> None:
    # "$env"/"$file" are not variables while loading; "${env}" still is.
    text = 'lease:\n  hostname: ${env}\n  consul:\n    url: {"$env": "U"}\n'
    config = parse(text, environ={"U": "http://x", "env": "prod"})
    assert config.section("lease.consul").url == "http://x"
    assert config.lease.hostname == "prod"


@pytest.mark.parametrize(
    "value",
    ['{"$env": "A", "$file": "b"}', '{"$envv": "A"}', '{"$env": ""}', '{"$env": [A]}'],
)
def test_bad_secret_references(value: str) -> None:
    err = parse_error(f"lease:\n  consul:\n    url: {value}\n", environ={"A": "a"})
    assert err.key == "lease.consul.url" and err.line == 3


def test_secret_syntax_only_on_secret_fields() -> None:
    err = parse_error('lease:\n  consul:\n    key: {"$env": "A"}\n', environ={"A": "a"})
    assert err.key == "lease.consul.key" and "expected a string, found a mapping" in str(err)


# --- effective config ---------------------------------------------------------------------------------------


def test_to_dict_masks_secrets_and_formats_durations() -> None:
    config = parse(SAMPLE, expand=False)
    data = config.to_dict()
    assert data["data"]["retention"] == "10m0s"
    assert data["lease"]["reconnect-delay"] == "1s"
    assert data["lease"]["advertise-url"] == "http://myhost:20202"
    assert data["lease"]["consul"] == {"url": MASK, "key": "litefs/primary", "ttl": "10s", "lock-delay": "1s"}
    assert data["exec"] == "myapp -addr :8081"
    assert data["proxy"]["passthrough"] == ["/debug/*", "*.png"]
    assert config.to_dict(mask_secrets=False)["lease"]["consul"]["url"] == "http://myhost:8500"
    assert "exec" not in parse("").to_dict()  # a None section is left out
    assert parse("").to_dict()["lease"]["consul"]["url"] == ""  # an unset secret shows as empty


def test_dump_yaml_round_trips() -> None:
    config = parse(SAMPLE, expand=False)
    text = dump_yaml(config, mask_secrets=False)
    again = parse(text, expand=False)
    assert again == config
    assert "'********'" in dump_yaml(config) and "myhost:8500" not in dump_yaml(config)


def test_dump_yaml_is_plain_yaml() -> None:
    data = yaml.safe_load(dump_yaml(parse("exec:\n  - cmd: run\n")))
    assert data["exec"] == [{"cmd": "run", "if-candidate": False}]
    assert data["fuse"] == {"dir": "/litefs", "allow-other": False, "debug": False}


# --- finding and loading the file ------------------------------------------------------------------


def test_search_path_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cwd = tmp_path / "work"
    home = tmp_path / "home"
    cwd.mkdir()
    home.mkdir()
    (home / "litefs.yml").write_text("")
    assert find_config_path(None, cwd=cwd, home=home) == home / "litefs.yml"
    (cwd / "litefs.yml").write_text("")
    assert find_config_path(None, cwd=cwd, home=home) == cwd / "litefs.yml"
    monkeypatch.chdir(cwd)
    found = find_config_path(None, home=home)
    assert found.is_absolute() and found == cwd / "litefs.yml"


def test_search_path_uses_the_os_user_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pwd

    monkeypatch.setenv("HOME", str(tmp_path / "elsewhere"))  # LiteFS reads the user record, not $HOME
    paths = config_search_paths(cwd=tmp_path)
    assert paths == [
        tmp_path / "litefs.yml",
        Path(pwd.getpwuid(os.getuid()).pw_dir) / "litefs.yml",
        Path("/etc/litefs.yml"),
    ]


@pytest.mark.skipif(Path("/etc/litefs.yml").exists(), reason="a real /etc/litefs.yml is present")
def test_config_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        find_config_path(None, cwd=tmp_path, home=tmp_path / "nohome")
    assert str(info.value) == "config file not found"


def test_explicit_path(tmp_path: Path) -> None:
    path = tmp_path / "custom.yml"
    path.write_text("fuse:\n  dir: /m\n")
    assert find_config_path(str(path)) == path
    with pytest.raises(ConfigError) as info:
        find_config_path(str(tmp_path / "missing.yml"))
    assert info.value.path == str(tmp_path / "missing.yml")


def test_load_config_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "litefs.yml"
    path.write_text("fuse:\n  dir: /m\n\ndata:\n  dirr: /d\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert info.value.path == str(path)
    assert str(info.value).startswith(f'{path}:5: unknown key "data.dirr"')


def test_load_config_rejects_non_utf8(tmp_path: Path) -> None:
    path = tmp_path / "litefs.yml"
    path.write_bytes(b"fuse:\n  dir: \xff\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path, environ={})


def test_load_config_searches_when_no_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "litefs.yml").write_text("http:\n  addr: ':9999'\n")
    monkeypatch.chdir(tmp_path)
    config = load_config(environ={})
    assert config.http.addr == ":9999"
    assert config.source == str(tmp_path / "litefs.yml")


def test_hostname_filled_in_for_expansion(tmp_path: Path) -> None:
    path = tmp_path / "litefs.yml"
    path.write_text("lease:\n  hostname: ${HOSTNAME}\n")
    environ: dict[str, str] = {}
    assert load_config(path, environ=environ).lease.hostname == socket.gethostname()
    assert environ == {}  # a given mapping is not modified
    assert load_config(path, environ={"HOSTNAME": "given"}).lease.hostname == "given"
    assert load_config(path, environ={"HOSTNAME": ""}).lease.hostname == socket.gethostname()


def test_hostname_set_in_os_environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOSTNAME", raising=False)
    path = tmp_path / "litefs.yml"
    path.write_text("lease:\n  advertise-url: http://${HOSTNAME}:20202\n")
    config = load_config(path)
    assert os.environ["HOSTNAME"] == socket.gethostname()
    assert config.lease.advertise_url == f"http://{socket.gethostname()}:20202"


def test_no_expand(tmp_path: Path) -> None:
    path = tmp_path / "litefs.yml"
    path.write_text("lease:\n  hostname: ${MY_HOST}\n")
    assert load_config(path, environ={"MY_HOST": "h"}).lease.hostname == "h"
    assert load_config(path, expand=False, environ={"MY_HOST": "h"}).lease.hostname == "${MY_HOST}"


def test_expansion_feeds_yaml_types() -> None:
    text = "lease:\n  candidate: ${FLY_REGION == PRIMARY_REGION}\n"
    assert parse(text, environ={"FLY_REGION": "ord", "PRIMARY_REGION": "ord"}).lease.candidate is True
    assert parse(text, environ={"FLY_REGION": "lhr", "PRIMARY_REGION": "ord"}).lease.candidate is False
