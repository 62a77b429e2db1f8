"""`--help` (issue 15, criterion 4): exit status 0, the flags grouped by what they are for,
each objective term in one line with its paper, no unexplained labels; `--helpfull` is absl's."""

import re

import pytest
from run_utils import run_main

from lrm_tf import config
from lrm_tf.cli import flags as cli_flags
from lrm_tf.cli import help as grouped_help
from lrm_tf.cli import modes  # noqa: F401 (defines --mode)
from lrm_tf.cli.flags import FLAGS


@pytest.fixture(scope="module")
def help_text():
    proc = run_main("--help", check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_help_groups_every_flag_once_and_exits_0(help_text):
    titles = [line for line in help_text.splitlines() if line in grouped_help.GROUPS.values()]
    assert titles == list(grouped_help.GROUPS.values())  # every group, in order
    heads = re.findall(r"^  --(?:\[no\])?([a-z0-9_]+)", help_text, flags=re.M)
    ours = {f.name for m in ("lrm_tf.cli.flags", "lrm_tf.cli.modes") for f in FLAGS.get_flags_for_module(m)}
    assert sorted(heads) == sorted(ours | {"flagfile"})  # each once


def test_help_has_no_unexplained_labels(help_text):
    assert not re.search(r"\bT\d+\b", help_text), re.search(r".*\bT\d+\b.*", help_text).group(0)
    assert "SPEC" not in help_text


def test_groups_come_from_where_settings_are_declared(help_text):
    sections, title = {}, None
    for line in help_text.splitlines():
        if line in grouped_help.GROUPS.values():
            title = line
        elif title:
            sections[title] = sections.get(title, "") + line + "\n"
    groups = {value: key for key, value in grouped_help.GROUPS.items()}
    for cls in config.FLAG_CONFIGS:
        for field in cli_flags.config_flags(cls):
            group = field.metadata.get("group") or cls.HELP_GROUP
            title = grouped_help.GROUPS[group]
            assert re.search(rf"^  --(\[no\])?{field.name}\b", sections[title], flags=re.M), field.name
            assert groups[title] == group
    assert "--[no]deterministic" in sections[grouped_help.GROUPS["execution"]]


def test_each_objective_term_has_a_line_with_its_paper(help_text):
    terms = [f for f in config.Objective.__dataclass_fields__.values() if f.metadata.get("term")]
    assert {f.name for f in terms} >= {"label_smoothing", "logit_squeeze", "adv_train", "alp_weight", "mixup"}
    flat = " ".join(help_text.split())
    for field in terms:
        line = f"* --{field.name}: {' '.join(field.metadata['term'].split())}"
        assert line in flat and re.search(r"\b(19|20)\d\d\b", field.metadata["term"]), field.name


def test_helpfull_keeps_absls_list():
    proc = run_main("--helpfull", check=False)
    assert "absl.flags:" in proc.stdout and "lrm_tf.cli.flags:" in proc.stdout
    assert grouped_help.GROUPS["objective"] not in proc.stdout
