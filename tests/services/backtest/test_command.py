"""``riskgraph backtest``'s options: wiring, refusals, and a policy challenger end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gnn.artifact import ModelBundle, save_artifact
from gnn.train import DAY
from services.backtest.command import check_args, retrain_schedule
from services.cli import build_parser
from services.cli import main as cli


def _args(*argv: str) -> object:
    return build_parser().parse_args(["backtest", "--out", "x", "--model", "a=A", *argv])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--stream", "s", "--from", "2026-03-01T00:00:00Z"), "use --kafka-bootstrap"),
        (("--stream", "s", "--resume"), "--resume needs --checkpoint"),
        (("--stream", "s", "--train-window", "7d"), "need --retrain-every"),
        (("--stream", "s", "--workers", "0"), "--workers must be at least 1"),
        (("--stream", "s", "--workers", "2", "--retrain-every", "1d"), "not with --retrain-every"),
        (
            ("--stream", "s", "--workers", "2", "--checkpoint", "c", "--speed", "5"),
            "not with --checkpoint, --speed",
        ),
        (("--kafka-bootstrap", "k:9092", "--workers", "2"), "not with --kafka-bootstrap"),
    ],
)
def test_options_that_would_be_ignored_are_refused(argv: tuple[str, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_args(_args(*argv))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--resume",), "--resume needs --checkpoint DIR"),
        (("--since", "yesterday"), "--since wants an ISO 8601 time, got 'yesterday'"),
        (("--until", "2026-13-01"), "--until wants an ISO 8601 time"),
        (
            ("--workers", "2", "--speed", "3"),
            "--workers > 1 replays files in slices; not with --speed",
        ),
    ],
)
def test_refused_options_are_a_usage_error_not_a_traceback(
    argv: tuple[str, ...], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["backtest", "--stream", str(tmp_path), "--model", str(tmp_path), "--out", "x", *argv]
    assert cli(args) == 2
    err = capsys.readouterr().err
    assert f"riskgraph: error: {message}" in err
    assert "Traceback" not in err


def test_stream_and_kafka_are_exclusive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _args("--stream", "s", "--kafka-bootstrap", "127.0.0.1:9092")
    assert "not allowed with argument" in capsys.readouterr().err


def test_the_schedule_retrains_the_challenger_unless_told(tmp_path: Path) -> None:
    config = tmp_path / "train.json"
    config.write_text(json.dumps({"epochs": 2, "label_delay_days": 3}))
    models = {"champion": Path("c"), "challenger": Path("d")}
    args = _args("--stream", "s", "--retrain-every", "7d", "--train-window", "4w")
    schedule = retrain_schedule(args, models)  # type: ignore[arg-type]
    assert schedule is not None
    assert (schedule.model, schedule.every_s, schedule.window_s) == (
        "challenger",
        7 * DAY,
        28 * DAY,
    )
    args = _args("--stream", "s", "--retrain-every", "1d", "--retrain-model", "champion",
                 "--train-config", str(config))  # fmt: skip
    schedule = retrain_schedule(args, models)  # type: ignore[arg-type]
    assert schedule is not None and schedule.model == "champion"
    assert (schedule.train.epochs, schedule.train.label_delay_days) == (2, 3)
    assert retrain_schedule(_args("--stream", "s"), models) is None  # type: ignore[arg-type]


def test_a_policy_challenger_from_the_command_line_and_a_resumed_finished_run(
    stream: Path, bundle: ModelBundle, tmp_path: Path
) -> None:
    model = save_artifact(tmp_path / "model", bundle, "test model")
    strict = tmp_path / "strict.json"
    strict.write_text(
        json.dumps({"riskgraph": {"decision": {"config": {"decline_threshold": 0.49}}}})
    )
    argv = ["backtest", "--stream", str(stream), "--model", f"champion={model}"]
    argv += ["--model", f"strict={model}", "--policy", f"strict={strict}", "--last-days", "0.5"]
    argv += ["--k", "5", "--quiet", "--checkpoint", str(tmp_path / "ckpt")]
    assert cli([*argv, "--out", str(tmp_path / "a")]) == 0
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    deltas = report["action_deltas_vs_champion"]["strict"]
    assert deltas["changed"] > 0 and deltas["decline_rate"]["delta"] > 0
    revisions = {n: m["policy_revision"] for n, m in report["models"].items()}
    assert revisions["strict"].startswith(revisions["champion"] + "+local-")
    assert "Actions: challengers vs champion" in (tmp_path / "a" / "report.html").read_text()

    # Resuming a finished run scores nothing again and reports the same.
    assert cli([*argv, "--resume", "--out", str(tmp_path / "b")]) == 0
    csv_a = (tmp_path / "a" / "scores.csv").read_text()
    assert (tmp_path / "b" / "scores.csv").read_text() == csv_a


def test_inputs_that_cannot_be_backtested_are_one_line_errors(
    stream: Path, bundle: ModelBundle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = save_artifact(tmp_path / "model", bundle, "test model")
    (tmp_path / "empty").mkdir()
    (tmp_path / "not-a-model").mkdir()
    cases = [
        (["--stream", str(tmp_path / "missing"), "--model", str(model)], "not a directory"),
        (["--stream", str(tmp_path / "empty"), "--model", str(model)], "no stream files"),
        (
            ["--stream", str(stream), "--model", f"m={tmp_path / 'not-a-model'}"],
            "--model m=",
        ),
        (
            ["--stream", str(stream), "--model", str(model), "--since", "2030-01-01T00:00:00Z"],
            "no payment of",
        ),
    ]
    for argv, message in cases:
        code = cli(["backtest", *argv, "--out", str(tmp_path / "out"), "--quiet"])
        err = capsys.readouterr().err
        assert code == 2, err
        assert err.startswith("riskgraph: error: ") and message in err, err
        assert "Traceback" not in err


def test_the_report_keeps_every_dead_letter_with_its_reason(
    stream: Path, bundle: ModelBundle, tmp_path: Path
) -> None:
    import shutil

    copy = tmp_path / "stream"
    shutil.copytree(stream, copy)
    with open(copy / "payments.jsonl", "ab") as fh:
        fh.write(b"{truncated\n")
        fh.write(b'{"type":"payment","event_id":"caf\xe9"}\n')
    model = save_artifact(tmp_path / "model", bundle, "test model")
    argv = ["backtest", "--stream", str(copy), "--model", str(model), "--last-days", "0.5"]
    assert cli([*argv, "--quiet", "--out", str(tmp_path / "out")]) == 0
    lines = (tmp_path / "out" / "dead_letters.jsonl").read_text().splitlines()
    letters = [json.loads(line) for line in lines]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert len(letters) == report["replay"]["dead_letters"]
    values = [d["value"] for d in letters]
    assert "{truncated" in values
    assert any("caf\\xe9" in str(v) for v in values)
    assert all(d["reason"] and "field" in d for d in letters)
