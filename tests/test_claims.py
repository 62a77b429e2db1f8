"""The claims table: checked data, one generated copy in benchmarks/RESULTS.md."""

import json
import os

import pytest

from lrm_tf.report import claims

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOOD = {f: f"{f} text" for f in claims.FIELDS} | {"verdict": "not reproduced"}


def test_every_claim_has_every_field_and_a_known_verdict():
    rows = claims.load()
    assert rows and all(r["verdict"] in claims.VERDICTS for r in rows)


@pytest.mark.parametrize(
    "change,message",
    [
        ({"verdict": "sort of"}, "is not one of"),
        ({"ours": ""}, "missing ours"),
        ({"paper": None}, "missing paper"),
    ],
)
def test_a_bad_claim_is_refused_in_one_line(change, message):
    text = json.dumps({"claims": [GOOD, GOOD | change]})
    with pytest.raises(claims.ClaimsError, match=message) as e:
        claims.load(text)
    assert str(e.value).startswith("claim 2") and "\n" not in str(e.value)


def test_table_rows_and_escaping():
    table = claims.markdown([GOOD | {"claim": "a | b"}])
    lines = table.splitlines()
    assert lines[0].startswith("| # | claim |") and lines[2].startswith("| 1 | a \\| b |")
    assert "**not reproduced**" in lines[2] and "1. reason text Command: `command text`" in table


def test_render_inserts_then_replaces_between_the_markers():
    first = claims.render_results("# Title\n\nOlder tables.\n", [GOOD])
    assert first.startswith("# Title\n\n## Claims") and first.endswith("Older tables.\n")
    again = claims.render_results(first, [GOOD | {"ours": "42%"}])
    assert again.count(claims.BEGIN) == 1 and "42%" in again and "Older tables." in again


def test_results_md_is_up_to_date():
    with open(os.path.join(REPO, claims.RESULTS), encoding="utf-8") as f:
        text = f.read()
    assert claims.render_results(text) == text, f"stale: run `{claims.COMMAND}`"


def test_compare_mode_without_runs_prints_the_claims(tmp_path, capsys):
    from lrm_tf import main

    code = main.run_argv(["lrm_tf", "--mode=compare", f"--model_dir={tmp_path / 'out'}"])
    out = capsys.readouterr().out
    assert code == 0 and claims.markdown() in out
