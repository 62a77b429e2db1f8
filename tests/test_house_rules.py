"""House rules that keep lrm_tf easy to read and change (CONTRIBUTING.md)."""

import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(REPO, "lrm_tf")


def _python_files():
    for root, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                yield os.path.join(root, name)


def test_no_library_file_over_400_lines():
    long = {os.path.relpath(p, REPO): n for p in _python_files() if (n := sum(1 for _ in open(p))) > 400}
    assert long == {}


def test_no_references_to_documents_outside_the_repository():
    """Help texts and docstrings cite papers, not a specification's section labels."""
    label = re.compile(r"\bSPEC\b|\bT(?:1[0-4]|[1-9])\b(?![-\d])|README D\d")
    found = [
        f"{os.path.relpath(p, REPO)}:{i}: {line.strip()}"
        for p in _python_files()
        for i, line in enumerate(open(p), 1)
        if label.search(line)
    ]
    assert found == []


def test_importing_lrm_tf_changes_nothing():
    code = (
        "import os; before = dict(os.environ); import lrm_tf, lrm_tf.config, lrm_tf.data; "
        "import sys; print(dict(os.environ) == before, 'tensorflow' in sys.modules)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["True", "False"]  # no environment change, and no TensorFlow for the settings


def test_published_numbers_are_data():
    assert not os.path.exists(os.path.join(PACKAGE, "published.py"))
    sizes = {
        os.path.relpath(p, REPO): sum(1 for _ in open(p))
        for p in _python_files()
        if "published" in os.path.basename(p)
    }
    assert all(n < 200 for n in sizes.values()), sizes
