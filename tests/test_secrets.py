"""A password in ``--api-base`` never leaks (issue 15, point 10): not to stderr, the logs, the
report, the runs table, ``ls``, ``history`` or the manifest file itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from crawler.redact import mask_text
from crawler.simulator import SimulatorConfig, serve_in_thread
from tests.conftest import FAST, run_cli, small_catalogue

SECRET = "s3cr3t-Passw0rd"


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("http://user:pw@host/x", "http://user:***@host/x"),
        ("see https://u:p%40ss@h:80/a?b=c@d", "see https://u:***@h:80/a?b=c@d"),
        ("http://host/x?e=a@b", "http://host/x?e=a@b"),
        ("postgresql://postgres@127.0.0.1/db", "postgresql://postgres@127.0.0.1/db"),
    ],
)
def test_mask_text(text: str, masked: str) -> None:
    assert mask_text(text) == masked


def test_a_password_in_the_api_base_is_masked_everywhere(
    tmp_path: Path, fast_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    catalogue = small_catalogue(4)
    broken = next(
        i["id"]
        for i in catalogue.records("SectionImage")
        if i["data_set_id"] == 100141599 and not i["failed"]
    )
    config = SimulatorConfig(permanent_failures={broken: "http_500"})
    with serve_in_thread(catalogue, config) as sim:
        base = sim.base_url.replace("http://", f"http://reader:{SECRET}@")
        out = tmp_path / "m"
        result = run_cli(
            capsys, "mirror", "--dataset", "100141599", "--out", str(out), "--api-base", base,
            "--config", str(fast_config), "--retries", "1", *FAST,
        )  # fmt: skip
        assert result.code == 1, result.err
        assert sim.counters.by_status[200] > 0  # the credentials did not stop the requests
        unreachable = run_cli(
            capsys, "mirror", "--dataset", "100141599", "--out", str(tmp_path / "u"),
            "--api-base", f"http://reader:{SECRET}@127.0.0.1:9", "--config", str(fast_config),
            "--retries", "0", *FAST,
        )  # fmt: skip
    assert unreachable.code == 1 and "reader:***@127.0.0.1:9" in unreachable.err
    assert "item.failed" in result.err and "reader:***@" in result.err
    outputs = [result.err, result.out, unreachable.err]
    for command in (["ls"], ["ls", "--format", "table"], ["history", "--json"], ["status"]):
        shown = run_cli(capsys, *command, "--out", str(out))
        assert shown.code == 0, shown.err
        outputs += [shown.out, shown.err]
    assert "reader:***@" in outputs[-8]  # ls names the masked URL
    for text in outputs:
        assert SECRET not in text
    for path in [*out.rglob("*"), *(tmp_path / "u").rglob("*")]:
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_the_last_line_of_a_failed_run_masks_the_url_it_names() -> None:
    from crawler.cli.app import _describe
    from crawler.errors import ContentError

    line = _describe(ContentError("bad tree", url="http://reader:s3cret@example.org/x.json"))
    assert "s3cret" not in line and "example.org/x.json" in line
