"""The ``riskgraph`` command line documents itself and reports audit results by exit code."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from gnn.train import TrainConfig
from services.audit import FileAuditSink
from services.auth import verify_token
from services.cli import build_parser, main, train_config
from services.config_files import ConfigFileError
from services.settings import DEV_TOKEN_SECRET

SUBCOMMANDS: dict[tuple[str, ...], tuple[str, ...]] = {
    (): (
        "generate",
        "train",
        "serve",
        "demo",
        "convert",
        "backtest",
        "audit",
        "token",
        "--verbose",
    ),
    ("token", "new"): ("--user", "--tenant", "--roles", "--ttl-hours"),
    ("generate",): ("--out", "--seed", "--accounts", "--days", "--invalid-rate", "--quiet"),
    ("train",): (
        "--stream",
        "--out",
        "--config",
        "--epochs",
        "--seed",
        "--holdout-days",
        "--quiet",
    ),
    ("serve",): ("--model", "--history", "--host", "--port"),
    ("demo",): (
        "--out",
        "--workdir",
        "--seed",
        "--accounts",
        "--days",
        "--epochs",
        "--max-api-payments",
        "--concurrency",
        "--quiet",
    ),
    ("convert",): ("--input", "--out", "--preset", "--mapping", "--label-delay-days", "--quiet"),
    ("backtest",): (
        "--stream",
        "--kafka-bootstrap",
        "--topic-prefix",
        "--from",
        "--to",
        "--model",
        "--policy",
        "--out",
        "--since",
        "--last-days",
        "--until",
        "--label-delay-days",
        "--retrain-every",
        "--train-window",
        "--retrain-model",
        "--train-config",
        "--speed",
        "--checkpoint",
        "--checkpoint-every",
        "--resume",
        "--k",
        "--seed",
        "--quiet",
    ),
    ("audit",): ("verify",),
    ("audit", "verify"): ("path", "--kafka-topic", "--bootstrap"),
}


@pytest.mark.parametrize(
    ("command", "options"),
    list(SUBCOMMANDS.items()),
    ids=[" ".join(c) or "riskgraph" for c in SUBCOMMANDS],
)
def test_help_exits_zero_and_lists_options(
    command: tuple[str, ...], options: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: riskgraph")
    missing = [o for o in options if o not in out]
    assert missing == []


def test_every_option_of_every_command_explains_itself() -> None:
    import argparse

    def undocumented(parser: argparse.ArgumentParser, path: str) -> list[str]:
        out = []
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    out += undocumented(sub, f"{path} {name}")
            elif not action.help:
                out.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
        return out

    parser = build_parser()
    assert len(parser._actions) > 2  # the walk has something to look at
    assert undocumented(parser, "riskgraph") == []


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2
    assert "usage: riskgraph" in capsys.readouterr().err


def test_required_options_are_enforced(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--out", "x"])
    assert exit_info.value.code == 2
    assert "--stream" in capsys.readouterr().err


def write_log(path: Path, n: int = 3) -> None:
    sink = FileAuditSink(path)
    for i in range(n):
        sink.append({"kind": "inference", "request_id": f"tx-{i}"})
    sink.close()


def test_audit_verify_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "audit.log"
    write_log(path)
    assert main(["audit", "verify", str(path)]) == 0
    assert capsys.readouterr().out.startswith("OK: 3 records")


def test_audit_verify_broken(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "audit.log"
    write_log(path)
    text = path.read_text().splitlines(keepends=True)
    path.write_text(text[0] + text[2])
    assert main(["audit", "verify", str(path)]) == 1
    assert "BROKEN at record 1" in capsys.readouterr().err


def test_token_new_prints_a_token_the_api_accepts(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "new", "--user", "ana", "--tenant", "acme", "--roles", "auditor"]) == 0
    token = capsys.readouterr().out.strip()
    who = verify_token(DEV_TOKEN_SECRET, token)
    assert (who.id, who.tenant, who.roles, who.kind) == ("ana", "acme", ("auditor",), "analyst")


def test_train_reads_a_config_file_and_the_options_override_it(tmp_path: Path) -> None:
    config = tmp_path / "train.json"
    config.write_text(json.dumps({"tree_prior": True, "negative_rate": 1.0, "epochs": 3}))
    base = ["train", "--stream", "s", "--out", "o", "--config", str(config)]
    cfg = train_config(build_parser().parse_args(base))
    assert (cfg.tree_prior, cfg.negative_rate, cfg.epochs, cfg.seed) == (True, 1.0, 3, 0)
    cfg = train_config(build_parser().parse_args([*base, "--epochs", "5", "--seed", "2"]))
    assert (cfg.tree_prior, cfg.epochs, cfg.seed) == (True, 5, 2)
    plain = train_config(build_parser().parse_args(["train", "--stream", "s", "--out", "o"]))
    assert plain == TrainConfig()


def test_a_bad_train_config_names_the_field(tmp_path: Path) -> None:
    config = tmp_path / "train.json"
    config.write_text(json.dumps({"negative_rate": 2.0}))
    args = build_parser().parse_args(
        ["train", "--stream", "s", "--out", "o", "--config", str(config)]
    )
    with pytest.raises(ConfigFileError, match=r"--config .*train\.json.*negative_rate"):
        train_config(args)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"negative_rate": 2.0, "epochs": "many"}', r"negative_rate: .*; epochs: "),
        ('{"epochs": 3,', r"not valid JSON: .* line 1"),
        ("[1, 2]", r"expected a JSON object, got list"),
        (None, r"cannot read it"),
    ],
)
def test_a_bad_settings_file_is_a_one_line_error_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, expected: str
) -> None:
    config = tmp_path / "train.json"
    if content is not None:
        config.write_text(content)
    code = main(["train", "--stream", str(tmp_path), "--out", str(tmp_path / "o"),
                 "--config", str(config)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert re.search(r"riskgraph: error: --config \S+train\.json", err), err
    assert re.search(expected, err), err
    assert "Traceback" not in err
    assert not (tmp_path / "o").exists()  # nothing was trained


def test_a_bad_column_mapping_names_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mapping = tmp_path / "mapping.json"
    mapping.write_text(json.dumps({"timestamp": "ts", "no_such_column_role": "x"}))
    code = main(["convert", "--input", str(tmp_path / "t.csv"), "--out", str(tmp_path / "o"),
                 "--mapping", str(mapping)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert "riskgraph: error: --mapping" in err
    assert "no_such_column_role" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("command", ["generate", "demo"])
def test_a_stream_that_would_run_past_the_clock_is_refused_up_front(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: str,
) -> None:
    from feature_stream.generator import GeneratorConfig, last_event_time

    # Ingest refuses events dated after the clock, so such a stream would be dead letters.
    # The clock is set inside the default period (which starts on a fixed date).
    start = GeneratorConfig().start
    monkeypatch.setattr("time.time", lambda: start.timestamp() + 20 * 86400)
    days = 30
    assert last_event_time(GeneratorConfig(days=days)).timestamp() > time.time()
    where = "--out" if command == "generate" else "--workdir"
    code = main([command, where, str(tmp_path / "s"), "--days", str(days), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"riskgraph: error: --days {days}: the stream"), err
    assert not (tmp_path / "s").exists()
