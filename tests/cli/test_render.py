"""What people read is short, what programs read is exact: tables and `show` print floats to about 6
significant digits and whole numbers whole; CSV and JSON keep every digit."""

from __future__ import annotations

import json

from cli import render

UGLY = 0.1 + 0.2  # 0.30000000000000004
BUCKET = {"step": 0, "step_end": 1_999_999, "count": 2_000_000,
          "loss": {"min": 0.1, "max": 0.5, "mean": UGLY, "last": 0.2},
          "lr": {"min": 1234567.0, "max": 1234567.0, "mean": 1234567.0, "last": 1234567.0}}


def test_tables_show_six_significant_digits_and_whole_numbers_whole():
    table = render.to_table([BUCKET], first=("step", "loss"))
    header, _, row = table.splitlines()
    cells = dict(zip(header.split(), row.split(), strict=True))
    assert cells["loss"] == "0.3" and cells["loss_last"] == "0.2"
    assert cells["lr"] == "1234567" and cells["count"] == "2000000" and cells["step_end"] == "1999999"
    assert "0.30000000000000004" not in table and "e+06" not in table


def test_csv_and_json_keep_full_precision(capsys):
    text = render.to_csv([BUCKET], first=("step", "loss"))
    assert "0.30000000000000004" in text and "1234567.0" in text
    render.emit_rows([BUCKET], "json", first=("step", "loss"))
    assert json.loads(capsys.readouterr().out)[0]["loss"]["mean"] == UGLY


def test_show_prints_the_last_loss_short_and_its_json_exact(capsys):
    job = {"id": 1, "name": "ugly", "status": "succeeded", "steps_done": 3, "total_steps": 3,
           "last_loss": UGLY}
    render.show_job(job, as_json=False)
    assert "last_loss    0.3\n" in capsys.readouterr().out
    render.show_job(job, as_json=True)
    assert json.loads(capsys.readouterr().out)["last_loss"] == UGLY
