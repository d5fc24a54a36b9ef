"""Processing rules (the Datadog Agent's log_processing_rules): exclude, include, mask, in order,
on real gunicorn lines and records, with their counts, their config and their errors."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import orjson
import pytest

from logpipe import AccessParser, ErrorParser
from logpipe.checkpoints import CheckpointStore
from logpipe.cli.config import ConfigError, apply_config
from logpipe.cli.main import main
from logpipe.cli.options import processing_rules
from logpipe.event import Event, Token
from logpipe.pipeline.batch import access_events, error_events
from logpipe.pipeline.follow_loop import FollowPipeline
from logpipe.pipeline.rules import (
    ENGINE,
    EXCLUDE,
    INCLUDE,
    MASK,
    RuleError,
    Rules,
    RuleSpec,
    build_rules,
    check_pattern,
    compile_pattern,
)
from logpipe.sinks.ndjson import NdjsonSink
from logpipe.sources.follower import Follower, FollowSpec
from logpipe.sources.multiline import Multiline

LOGS = Path(__file__).resolve().parents[1] / "fixtures" / "logs" / "default"
ACCESS = (LOGS / "access.log").read_bytes()
ERROR = (LOGS / "error.log").read_bytes()
HEALTH = r"GET /status/200 HTTP"  # 3 probe-like lines of the fixture
REFERER_ID = r"([?&]id=)\d+"  # in the referer of 20 lines


def rules(*specs: RuleSpec) -> Rules:
    built = build_rules(specs)
    assert built is not None
    return built


def access(ruleset: Rules, path: str | None = None) -> list[Event]:
    chosen = ruleset.for_input("access", path)
    return list(access_events(io.BytesIO(ACCESS), AccessParser(), path=path, rules=chosen))


def errors(ruleset: Rules | None) -> list[Event]:
    chosen = ruleset.for_input("error") if ruleset is not None else None
    multiline = Multiline[bytes](r"\[\d{4}-\d{2}-\d{2}")
    return list(error_events(io.BytesIO(ERROR), ErrorParser(), multiline, rules=chosen))


def test_health_checks_excluded_and_a_token_masked_on_the_fixture_lines() -> None:
    assert ACCESS.count(b"GET /status/200 HTTP") == 3
    ruleset = rules(
        RuleSpec(EXCLUDE, HEALTH, name="exclude_healthchecks"),
        RuleSpec(MASK, REFERER_ID, name="mask_ids", replace_placeholder="${1}[REDACTED]"),
    )
    events = access(ruleset)
    assert len(events) == 115 - 3
    assert ruleset.counts.excluded == 3
    lines = ACCESS.splitlines()
    masked = [line for line in lines if b"?id=" in line and b"GET /status/200 HTTP" not in line]
    assert len(masked) == 19  # one probe line has an id too: excluded first, not masked
    assert ruleset.counts.masked == 19
    assert not any("GET /status/200 HTTP" in event["message"] for event in events)
    referers = [event["http"]["referer"] for event in events if "?id=" in event["message"]]
    assert len(referers) == 19
    assert set(referers) == {"https://shop.example.com/products?id=[REDACTED]"}
    assert all("logpipe.parse_error" not in str(event) for event in events)  # still parsed


def test_rules_run_in_their_order() -> None:
    exclude_42 = RuleSpec(EXCLUDE, r"id=42")
    mask = RuleSpec(MASK, REFERER_ID, replace_placeholder="${1}X")
    masked_first = rules(mask, exclude_42)
    assert len(access(masked_first)) == 115  # the exclusion saw the masked text
    assert (masked_first.counts.excluded, masked_first.counts.masked) == (0, 20)
    excluded_first = rules(exclude_42, mask)
    assert len(access(excluded_first)) == 95
    assert (excluded_first.counts.excluded, excluded_first.counts.masked) == (20, 0)


def test_include_at_match_keeps_only_matches_and_counts_the_rest() -> None:
    ruleset = rules(RuleSpec(INCLUDE, r'" (4|5)\d\d '))
    events = access(ruleset)
    assert events and all(event["http"]["status_code"] >= 400 for event in events)
    assert len(events) + ruleset.counts.excluded == 115


def test_error_records_are_ruled_whole_and_applies_to_picks_the_input() -> None:
    everything = errors(None)
    with_traceback = [event for event in everything if "Traceback" in event["message"]]
    assert len(with_traceback) == 8
    ruleset = rules(RuleSpec(EXCLUDE, "Traceback", applies_to="error"))
    kept = errors(ruleset)
    assert len(kept) == len(everything) - 8
    assert ruleset.counts.excluded == 8
    assert ruleset.for_input("access") is None  # the access route stays on its fast path
    only_access = rules(RuleSpec(EXCLUDE, "Traceback", applies_to="access"))
    assert len(errors(only_access)) == len(everything)


def test_a_mask_in_a_record_reaches_the_stack() -> None:
    ruleset = rules(RuleSpec(MASK, r'File "[^"]*"', replace_placeholder='File "<app>"'))
    events = errors(ruleset)
    stacks = [event["error"]["stack"] for event in events if "stack" in event.get("error", {})]
    assert stacks and all('File "/' not in stack for stack in stacks)
    assert ruleset.counts.masked == len(stacks)


def test_path_globs_choose_the_files() -> None:
    ruleset = rules(RuleSpec(EXCLUDE, HEALTH, path="/var/log/shop/*.log"))
    assert len(access(ruleset, "/var/log/shop/access.log")) == 112
    assert len(access(ruleset, "/var/log/blog/access.log")) == 115


def test_placeholders_expand_as_go_does() -> None:
    ruleset = rules(
        RuleSpec(MASK, r"(?P<key>token)=(\w+)", replace_placeholder="$key=${2}-$$-$9-\\1")
    )
    chosen = ruleset.for_input("access")
    assert chosen is not None
    assert chosen.apply("a token=abc b") == "a token=abc-$--\\1 b"


def test_a_dropped_line_s_end_is_carried_by_the_kept_line_before_it() -> None:
    lines = b"keep 1\ndrop\ndrop\nkeep 2\ndrop\n"
    ruleset = rules(RuleSpec(EXCLUDE, "^drop$"))
    chosen = ruleset.for_input("access")
    assert chosen is not None
    from logpipe.lines import read_batches

    (batch,) = read_batches(io.BytesIO(lines))
    kept = [(data, start, end) for data, start, end, _ in chosen.lines(batch)]
    assert kept == [("keep 1", 0, 17), ("keep 2", 17, len(lines))]


def test_the_hostile_input_stays_linear() -> None:
    assert ENGINE == "re2"
    hostile = "a" * 200_000 + "!"
    chosen = rules(RuleSpec(EXCLUDE, r"(a+)+$"), RuleSpec(EXCLUDE, r"(a|aa)*b")).for_input("access")
    assert chosen is not None
    started = time.perf_counter()
    for _ in range(10):
        assert chosen.apply(hostile) == hostile
    assert time.perf_counter() - started < 1.0  # backtracking would take longer than the universe
    # without RE2, such patterns are refused before they run
    for pattern, problem in [
        (r"(a+)+$", "a quantifier inside a quantifier"),
        (r"(a)\1", "a backreference"),
        (r"x(?=y)", "a lookaround"),
    ]:
        with pytest.raises(RuleError, match=problem):
            check_pattern(pattern, "rule")
    check_pattern(r"GET /healthz|(foo|bar)+ [a-z]{2,8}", "rule")


def test_bad_patterns_are_one_clear_error() -> None:
    with pytest.raises(RuleError) as caught:
        compile_pattern(r"(a)\1", "exclude_at_match rule 'x'")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(r"exclude_at_match rule 'x': bad pattern '(a)\\1':")
    with pytest.raises(RuleError, match="the pattern is empty"):
        compile_pattern("", "rule")


def test_a_bad_option_pattern_is_one_setup_error_line(capfd: pytest.CaptureFixture[str]) -> None:
    assert main(["parse", "--kind", "access", "--exclude-at-match", "([a-z]", "/dev/null"]) == 2
    err = capfd.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("logpipe: error: exclude_at_match rule '--exclude-at-match': bad pattern")
    assert main(["parse", "--kind", "access", "--mask", "no-equals", "/dev/null"]) == 2
    err = capfd.readouterr().err
    assert err == "logpipe: error: --mask 'no-equals': expected REGEX=PLACEHOLDER\n"


def test_the_parse_command_takes_the_options_in_order(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(ACCESS)
    args = ["parse", "--kind", "access", "--mask", "([?&]id=)\\d+=${1}X", "--exclude-at-match"]
    assert main([*args, "id=X", str(log)]) == 0
    assert capfd.readouterr().out.count("\n") == 95  # masked, then excluded on the mask
    reverse = ["parse", "--kind", "access", "--exclude-at-match", "id=X", *args[3:5]]
    assert main([*reverse, str(log)]) == 0
    assert capfd.readouterr().out.count("\n") == 115  # excluded first: nothing matched yet


CONFIG = """
access = ["/var/log/gunicorn/access.log"]
exclude-at-match = ["from the config's options"]

[[log_processing_rules]]
type = "exclude_at_match"
name = "exclude_healthchecks"
pattern = "GET /healthz"
applies_to = "access"

[[log_processing_rules]]
type = "mask_sequences"
name = "mask_api_keys"
replace_placeholder = "api_key=[MASKED]"
pattern = "api_key=\\\\w+"

[[log_processing_rules]]
type = "include_at_match"
name = "only_shop"
pattern = "shop"
path = "/var/log/shop/*"
"""


def test_config_tables_take_the_agent_s_names(tmp_path: Path) -> None:
    from logpipe.cli.follow import build_parser

    (tmp_path / "rules.toml").write_text(CONFIG)
    parser = build_parser()
    apply_config(parser, str(tmp_path / "rules.toml"))
    args = parser.parse_args(["--mask", "secret=X", "--exclude-at-match", "on the line"])
    built = processing_rules(args)
    assert built is not None
    assert [(spec.type, spec.name) for spec in built.specs] == [
        (EXCLUDE, "exclude_healthchecks"),
        (MASK, "mask_api_keys"),
        (INCLUDE, "only_shop"),
        (EXCLUDE, "--exclude-at-match"),  # the config file's option
        (MASK, "--mask"),  # then the command line's, in their order
        (EXCLUDE, "--exclude-at-match"),
    ]
    assert built.specs[0].applies_to == "access" and built.specs[2].path == "/var/log/shop/*"
    error_rules = built.for_input("error")
    assert error_rules is not None
    assert error_rules.apply("x api_key=abc123 secret") == "x api_key=[MASKED] X"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('type = "exclude_at_match"\npattern = "(a)\\\\1"', "bad pattern '(a)\\\\1'"),
        ('type = "drop"\npattern = "x"', "type must be one of"),
        ('type = "multi_line"\npattern = "x"', "use --multiline-pattern"),
        ('type = "mask_sequences"\npattern = "x"', "needs a replace_placeholder"),
        ('type = "exclude_at_match"\npattern = "x"\napplies_to = "all"', "applies_to must be"),
        ('type = "exclude_at_match"\npatern = "x"', "unknown key 'patern'"),
    ],
)
def test_bad_config_rules_are_one_line(tmp_path: Path, table: str, message: str) -> None:
    from logpipe.cli.follow import build_parser

    path = tmp_path / "bad.toml"
    path.write_text(f"[[log_processing_rules]]\n{table}\n")
    with pytest.raises(ConfigError) as caught:
        apply_config(build_parser(), str(path))
    text = str(caught.value)
    assert message in text and "\n" not in text
    assert text.startswith(f"--config {path}: log_processing_rules #1")


class DeferredSink(NdjsonSink):
    """Like the Datadog sink: a token per event, given back only when ``release``d."""

    def __init__(self) -> None:
        super().__init__(io.BytesIO(), fsync=False)
        self.held: list[Token] = []
        self.events = 0

    def send(self, events: Iterable[tuple[Event, int]], key: str, end: int) -> list[Token]:
        for _, offset in events:
            self.held.append((key, offset))
            self.events += 1
        return []

    def release(self) -> list[Token]:
        held, self.held = self.held, []
        return held


def test_follow_acknowledges_dropped_lines_after_what_came_before(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    kept = b'127.0.0.1 - - [25/Nov/2026:04:22:59 +0000] "GET /x HTTP/1.1" 200 5 "-" "t"\n'
    probe = kept.replace(b"/x", b"/healthz")
    log.write_bytes(kept + probe)
    store = CheckpointStore(tmp_path / "state", on_problem=lambda message: None)
    tail = Follower([FollowSpec(str(log), "access")], store, start_at="beginning")
    sink = DeferredSink()
    ruleset = rules(RuleSpec(EXCLUDE, "GET /healthz"), RuleSpec(MASK, "/x", "", "/y"))
    pipeline = FollowPipeline(
        tail, sink, access=AccessParser(), errors=ErrorParser(), rules=ruleset
    )
    pipeline._send(tail.poll())
    assert [end for _, end in sink.held] == [len(kept + probe)]  # the probe rides on it
    with open(log, "ab") as file:
        file.write(probe * 2)  # a batch dropped whole, while the first is not delivered yet
    pipeline._send(tail.poll())
    assert offset(tail) == 0  # nothing acknowledged: the kept line is still held
    pipeline._acknowledge(sink.release())
    assert offset(tail) == len(kept + probe * 3)  # the dropped batch comes with it
    with open(log, "ab") as file:
        file.write(probe)
    pipeline._send(tail.poll())
    assert offset(tail) == len(kept + probe * 4)  # nothing held: acknowledged at once
    assert sink.events == 1
    assert "excluded=4 masked=1" in pipeline.status(0.0)
    tail.close()


def offset(tail: Follower) -> int:
    return max(tail._positions.offsets.values(), default=0)


@pytest.mark.integration
def test_follow_command_excludes_on_a_real_file(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "logpipe",
            "--access",
            str(LOGS / "access.log"),
            "--state-dir",
            str(tmp_path / "state"),
            "--start-at",
            "beginning",
            "--exit-idle",
            "0.5",
            "--dogstatsd",
            "off",
            "--exclude-at-match",
            HEALTH,
            "--mask",
            REFERER_ID + "=${1}[REDACTED]",
        ],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    events = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert len(events) == 112
    assert sum(b"?id=[REDACTED]" in line for line in result.stdout.splitlines()) == 19
    (checkpoint,) = CheckpointStore(tmp_path / "state").load().values()
    assert checkpoint.offset == len(ACCESS)  # the excluded lines are covered too


def test_lines_to_repair_are_ruled_and_keep_their_repair_flags() -> None:
    first = ACCESS.splitlines()[0]
    data = first + b"\r\n" + first.replace(b"/status/200", b"/bad\xff") + b"\n"
    ruleset = rules(RuleSpec(EXCLUDE, "GET /status/200 "))
    events = list(
        access_events(io.BytesIO(data), AccessParser(), rules=ruleset.for_input("access"))
    )
    assert len(events) == 1 and ruleset.counts.excluded == 1
    assert events[0]["logpipe"]["invalid_utf8"] is True  # the kept line went through parse


def replay_with_rules(tmp_path: Path, *jobs: str) -> tuple[int, list[bytes]]:
    out = tmp_path / "out.ndjson"
    arguments = ["replay", "--access", str(LOGS / "access.log"), "--error", str(LOGS / "error.log")]
    arguments += ["--output", f"file:{out}", "--state-dir", str(tmp_path / "state")]
    arguments += ["--dogstatsd", "off", "--max-age", "none", "--quiet", *jobs]
    arguments += ["--exclude-at-match", HEALTH, "--mask", REFERER_ID + "=${1}[REDACTED]"]
    status = main(arguments)
    return status, out.read_bytes().splitlines()


def test_replay_takes_the_rules_and_says_their_counts(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    status, lines = replay_with_rules(tmp_path, "--jobs", "1")
    assert status == 0
    err = capfd.readouterr().err
    records = len(errors(None))
    assert len(lines) == 112 + records
    assert sum(b"?id=[REDACTED]" in line for line in lines) == 19
    assert f"{112 + records} events; processing rules: excluded=3 masked=19" in err
    # the ledger covers the excluded lines: a second run sends nothing
    state = ["--state-dir", str(tmp_path / "state"), "--dogstatsd", "off", "--quiet"]
    options = ["--output", "file:/dev/null", "--max-age", "none", "--exclude-at-match", HEALTH]
    again = main(["replay", "--access", str(LOGS / "access.log"), *state, *options])
    assert again == 0
    assert "already delivered: 1 files" in capfd.readouterr().err


@pytest.mark.integration
def test_replay_counts_come_back_from_worker_processes(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    status, lines = replay_with_rules(tmp_path, "--jobs", "2")
    assert status == 0
    assert "processing rules: excluded=3 masked=19" in capfd.readouterr().err
    assert sum(b"?id=[REDACTED]" in line for line in lines) == 19


def test_a_placeholder_cannot_break_a_line() -> None:
    with pytest.raises(RuleError, match="line break or NUL"):
        build_rules([RuleSpec(MASK, "x", replace_placeholder="a\nb")])


def test_plain_patterns_run_on_re_and_mean_the_same() -> None:
    assert compile_pattern(r"GET /status/200 HTTP", "rule").__class__.__module__ == "re"
    assert compile_pattern(r"a\.b", "rule").search("xa.by")
    assert not compile_pattern(r"a\.b", "rule").search("axb")
    for pattern in [r"(?i)get", r"a|b", r"\d+", r"\Qa.b\E", r"x*"]:  # RE2's
        assert compile_pattern(pattern, "rule").__class__.__module__ != "re", pattern
    assert compile_pattern(r"\Qa.b\E", "rule").search("a.b")
