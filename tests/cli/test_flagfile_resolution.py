"""Every flagfile resolves to the values it had before the redesign of the settings.

tests/data/resolved_flags_before_redesign.json holds, per flagfile, the value of every flag after
parsing (what flags.json records), written by the code before `lrm_tf.config` existed. Flags
may be added since; none may change its value or disappear.
"""

import json
import os

import pytest

from lrm_tf import main
from lrm_tf.cli import flags as cli_flags

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
with open(os.path.join(REPO, "tests", "data", "resolved_flags_before_redesign.json")) as f:
    BEFORE = json.load(f)


# Deliberate changes after the recording, each with its reason (shared with tests/test_flagfiles.py).
with open(os.path.join(REPO, "tests", "data", "resolved_flags_changes.json")) as f:
    _CHANGES = json.load(f)
    _EVERY = {k: v for k, v in _CHANGES["_every_flagfile"].items() if not k.startswith("_")}
    CHANGED_SINCE = {
        stem: {**_EVERY, **{k: v for k, v in _CHANGES.get(stem, {}).items() if not k.startswith("_")}}
        for stem in BEFORE
    }


ADDED = [stem for stem in _CHANGES["_added_since"] if not stem.startswith("_")]


def test_every_flagfile_is_recorded():
    stems = sorted(f[:-4] for f in os.listdir(os.path.join(REPO, "flags")) if f.endswith(".cfg"))
    assert stems == sorted([*BEFORE, *ADDED])


@pytest.mark.parametrize("stem", sorted(BEFORE))
def test_flagfile_resolves_as_before(stem):
    main.FLAGS.unparse_flags()
    # From another folder: nested flagfiles are found relative to the file that includes them.
    cwd = os.getcwd()
    os.chdir("/")
    try:
        main.parse_flags(["lrm_tf", f"--flagfile={os.path.join(REPO, 'flags', stem + '.cfg')}"])
    finally:
        os.chdir(cwd)
    now = cli_flags.resolved()
    before = {**BEFORE[stem], **CHANGED_SINCE.get(stem, {})}
    assert sorted(set(before) - set(now)) == []
    changed = {k: (before[k], now[k]) for k in before if now[k] != before[k]}
    assert changed == {}
