"""Every flagfile in flags/ parses, validates and runs end to end, so that none can rot.

One subprocess (this file run as a script) pays the TensorFlow import once and, for each
flagfile, in this order:

1. validates the flagfile as written (`lrm_tf.main.validate()` on its own flags: attack names
   of --eval_attacks and --adv_train, eps/step, every value), overriding only --model_dir and,
   for --mode=eval/transfer flagfiles, --load_from and --transfer_targets (pointed at the runs
   this test made from the flagfiles they name; training flagfiles therefore run first);
2. runs it through `lrm_tf.main.run_argv` on synthetic data of the dataset's shape with
   `--synthetic_data=16 --train_steps=1 --batch_size=8 --eval_examples=4 --eval_batch_size=4
   --eval_attacks=clean --overwrite --verbose=0` (--mode=transfer: --eval_attacks=fgsm_xent, it
   needs an attack, from the first source only). Training attacks (--adv_train) still run at
   their own step count (PGD-40 on 8 MNIST images is cheap). To keep CI fast, wide_resnet
   flagfiles (WRN-28-10 / WRN-32-10, 36-46 M parameters) run with `--depth=8 --width=1` and
   resnet_simple flagfiles (Madry's ResNet, 5 units per stage) as resnet8 (1 unit per stage):
   the same code paths, small networks; runs nothing loads skip the export (--export=false).

It prints one JSON line per flagfile; the tests below check them one flagfile at a time.

LRM_TF_FLAGFILE_RUNS=distinct (CI) runs step 2 only for the first flagfile of each distinct
structure (same flag names and non-numeric values, e.g. the 39 MNIST rows of Shafahi's table 6
are 5 structures) and the runs those load; every flagfile is still validated as written
(against stand-in run directories where a run it loads was skipped). Measured on the 2-core
development machine: see flags/README.md ("Tests").
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

from lrm_tf.cli.flagfile import expand_flagfiles, read_flagfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
FLAGS_DIR = os.path.join(REPO, "flags")
FAST_OVERRIDES = [
    "--synthetic_data=16",
    "--train_steps=1",
    "--batch_size=8",
    "--eval_examples=4",
    "--eval_batch_size=4",
    "--eval_attacks=clean",
    "--overwrite",
    "--verbose=0",
]
# Same code path, a small network: WRN-28-10/32-10 (36-46 M parameters) -> depth 8 width 1;
# Madry's simple ResNet (5 units per stage) -> the same family with 1 unit per stage.
MODEL_OVERRIDES = {"wide_resnet": ["--depth=8", "--width=1"], "resnet_simple": ["--model=resnet8"]}


def flagfiles():
    """The table rows and starting points: flags/*.cfg (the recipes in flags/base/ are not rows)."""
    return sorted(os.path.join(FLAGS_DIR, f) for f in os.listdir(FLAGS_DIR) if f.endswith(".cfg"))


def stem(path):
    return os.path.splitext(os.path.basename(path))[0]


NUMERIC = re.compile(r"^-?[0-9.e+-]*$")
PER_RUN = ("model_dir", "load_from", "transfer_targets", "eval_attacks", "seed")


def structure(path):
    """What a flagfile exercises apart from its numbers: flag names and non-numeric values."""
    return tuple(
        sorted(
            (k, "#" if NUMERIC.match(v) else v) for k, v in read_flagfile(path).items() if k not in PER_RUN
        )
    )


def uses(path):
    """Stems of the runs a flagfile loads (--load_from, --transfer_targets: runs/<stem>)."""
    flags = read_flagfile(path)
    paths = [p for key in ("load_from", "transfer_targets") for p in flags.get(key, "").split(",") if p]
    return [os.path.basename(os.path.normpath(p)) for p in paths]


def run_uses(path):
    """Stems of the runs a flagfile's end-to-end run here loads (transfer: the first source)."""
    flags = read_flagfile(path)
    sources = [p for p in flags.get("load_from", "").split(",") if p]
    if flags.get("mode") == "transfer":
        sources = sources[:1] + [p for p in flags.get("transfer_targets", "").split(",") if p]
    return [os.path.basename(os.path.normpath(p)) for p in sources]


def plan(order, distinct_only):
    """Stems to run end to end: all, or the first of each structure plus the runs those load."""
    if not distinct_only:
        return {stem(p) for p in order}
    seen, selected = set(), set()
    for p in order:
        if structure(p) not in seen:
            seen.add(structure(p))
            selected.add(stem(p))
    return selected | {u for p in order if stem(p) in selected for u in run_uses(p)}


def run_order(paths):
    """Training flagfiles first, then those that use other flagfiles' runs."""
    return sorted(paths, key=lambda p: (bool(uses(p)), stem(p)))


# ----------------------------------------------------------------------------- the subprocess
def _child(out_root, paths):
    import contextlib
    import io
    import traceback

    from lrm_tf import main as lrm_main

    def capture(fn):
        buf = io.StringIO()
        try:
            with contextlib.redirect_stderr(buf), contextlib.redirect_stdout(io.StringIO()):
                code = fn()
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except Exception:  # noqa: BLE001 - reported per flagfile, never hides another
            code, buf = -1, io.StringIO(traceback.format_exc())
        return code, buf.getvalue().strip()[-2000:]

    import gc

    import keras

    order = run_order(paths)
    distinct_only = os.environ.get("LRM_TF_FLAGFILE_RUNS", "all") == "distinct"
    selected = plan(order, distinct_only)
    needed = {u for p in order if stem(p) in selected for u in run_uses(p)}  # runs others load
    for path in order:
        keras.backend.clear_session()
        gc.collect()
        flags = read_flagfile(path)
        name = stem(path)
        own = ["lrm_tf", f"--flagfile={path}", f"--model_dir={os.path.join(out_root, name)}"]
        for key in ("load_from", "transfer_targets"):
            if flags.get(key):
                runs = [
                    os.path.join(out_root, os.path.basename(os.path.normpath(p)))
                    for p in flags[key].split(",")
                    if p
                ]
                own.append(f"--{key}={','.join(runs)}")
                for run in runs:  # a run this test skipped: a stand-in so validation can see it
                    if not os.path.exists(run):
                        os.makedirs(run)
                        with open(os.path.join(run, "flags.json"), "w") as f:
                            f.write("{}")

        def validate():
            lrm_main.FLAGS.unparse_flags()
            try:
                lrm_main.FLAGS(expand_flagfiles(own))  # base recipes: nested --flagfile
                lrm_main.validate()
            except lrm_main.UsageError as e:
                print(f"error: {e}", file=sys.stderr)
                return 2
            except Exception as e:  # absl flag errors
                print(f"error: {e}", file=sys.stderr)
                return 2
            return 0

        t0 = time.time()
        valid, valid_err = capture(validate)
        extra = list(MODEL_OVERRIDES.get(flags.get("model"), []))
        if flags.get("mode") == "transfer":  # one source is enough once all are validated
            first = [a for a in own if a.startswith("--load_from=")][0].split(",")[0]
            extra += ["--eval_attacks=fgsm_xent", first]
        if float(flags.get("eps", 0)) > 1:  # an L2 budget: only its own (L2) attacks accept it
            extra += [f"--eval_attacks={flags['eval_attacks']}"]
        if name not in needed and flags.get("mode", "train") == "train":
            extra += ["--export=false"]  # nothing loads this run: skip the SavedModel write
        if name in selected:
            rc, err = capture(lambda: lrm_main.run_argv(expand_flagfiles(own) + FAST_OVERRIDES + extra))
        else:
            rc, err = "skipped", ""
        print(
            json.dumps(
                {
                    "stem": name,
                    "validate": valid,
                    "validate_error": valid_err,
                    "rc": rc,
                    "error": err,
                    "seconds": round(time.time() - t0, 2),
                }
            ),
            flush=True,
        )


# ----------------------------------------------------------------------------- the tests
if __name__ != "__main__":
    import pytest

    ALL = flagfiles()

    @pytest.fixture(scope="module")
    def runs(tmp_path_factory):
        out = tmp_path_factory.mktemp("flagfile_runs")
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        t0 = time.time()
        proc = subprocess.run(
            [sys.executable, os.path.abspath(__file__), str(out), *ALL],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=3600,
        )
        lines = {}
        for line in proc.stdout.splitlines():
            if line.startswith("{"):
                record = json.loads(line)
                lines[record["stem"]] = record
        print(f"\n{len(lines)} flagfiles in {time.time() - t0:.0f} s", file=sys.stderr)
        assert lines, f"the flagfile runner printed nothing (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
        return lines

    @pytest.mark.parametrize("path", ALL, ids=[stem(p) for p in ALL])
    def test_flagfile_validates_and_runs(runs, path):
        record = runs.get(stem(path))
        assert record is not None, f"{stem(path)}: the runner stopped before it"
        assert record["validate"] == 0, (
            f"{stem(path)} does not validate as written: {record['validate_error']}"
        )
        assert record["rc"] in (0, "skipped"), (
            f"{stem(path)} failed end to end (exit {record['rc']}): {record['error']}"
        )

    @pytest.mark.parametrize("path", ALL, ids=[stem(p) for p in ALL])
    def test_flagfile_conventions(path):
        """A leading comment, its own run directory, no machine-specific data paths, and each
        published white-box column among its --eval_attacks."""
        from lrm_tf.report.published import PUBLISHED, UNPUBLISHED

        with open(path) as f:
            text = f.read()
        flags = read_flagfile(path)
        name = stem(path)
        assert text.startswith("#"), f"{name}: start with a comment naming paper, table and row"
        assert "local_data" not in flags and "data_dir" not in flags, f"{name}: users add data paths"
        if name in UNPUBLISHED:
            return
        assert flags.get("model_dir") == f"runs/{name}", f"{name}: --model_dir=runs/{name}"
        attacks = flags.get("eval_attacks", "").split(",")
        for key in PUBLISHED[name]["results"]:
            if not key.startswith("blackbox:"):
                assert key in attacks, f"{name}: published column {key} missing from --eval_attacks"
        if flags.get("mode") == "transfer":
            sources = {os.path.basename(os.path.normpath(p)) for p in flags["load_from"].split(",")}
            for key in PUBLISHED[name]["results"]:
                _, source, attack = key.split(":")
                assert source in sources and attack in attacks, f"{name}: {key} is not made here"
        for source in uses(path):
            assert os.path.exists(os.path.join(FLAGS_DIR, source + ".cfg")), (
                f"{name}: --load_from/--transfer_targets name no flagfile (runs/{source})"
            )

    def test_every_flagfile_has_a_published_entry_and_back():
        from lrm_tf.report.published import PUBLISHED, UNPUBLISHED

        stems = {stem(p) for p in ALL}
        assert sorted(stems - set(PUBLISHED) - set(UNPUBLISHED)) == [], "flagfiles without an entry"
        assert sorted(set(PUBLISHED) - stems) == [], "published entries without a flagfile"
        assert sorted(set(UNPUBLISHED) - stems) == [], "UNPUBLISHED names without a flagfile"
        assert not set(PUBLISHED) & set(UNPUBLISHED)

    def test_generated_headers_and_index_are_up_to_date():
        """Flagfile headers and the flags/README.md index are copies of published.json."""
        from lrm_tf.report import catalogue

        stale = catalogue.stale_files(FLAGS_DIR)
        assert stale == [], f"stale copies of published.json; run `{catalogue.COMMAND}`: {stale}"

    def test_regenerating_a_header_keeps_the_flags():
        from lrm_tf.report import catalogue

        text = "# an outdated header\n# Published: clean 1%.\n--mode=train\n# a later comment\n--seed=3\n"
        out = catalogue.render_flagfile(text, "lrm_t1_cifar10_lrm")
        assert out.endswith("--mode=train\n# a later comment\n--seed=3\n")
        assert out.startswith("# Summers & Dinneen") and "# Published: clean 68.5%, fgsm_xent 52.8%" in out
        assert "outdated" not in out

    def test_blackbox_sources_are_flagfiles():
        from lrm_tf.report.published import EXTERNAL_SOURCES, PUBLISHED

        stems = {stem(p) for p in ALL}
        for name, entry in PUBLISHED.items():
            for key in entry["results"]:
                if key.startswith("blackbox:"):
                    _, source, attack = key.split(":")
                    assert source in stems or source in EXTERNAL_SOURCES, f"{name}: {key}"

    def test_attack_names_of_published_entries_parse():
        from lrm_tf.attacks import parse_attack
        from lrm_tf.report.published import PUBLISHED

        for _name, entry in PUBLISHED.items():
            for key in entry["results"]:
                attack = key.split(":")[-1] if key.startswith("blackbox:") else key
                if attack in ("fgsm", "pgd"):  # quoted from Madry et al. without their loss
                    continue
                parse_attack(attack)

    # ------------------------------------------------------------------------- the reader
    with open(os.path.join(HERE, "data", "resolved_flags_before_redesign.json")) as f:
        BEFORE = json.load(f)
    with open(os.path.join(HERE, "data", "resolved_flags_changes.json")) as f:
        _changes = json.load(f)
        for _stem in BEFORE:
            _flags = {**_changes["_every_flagfile"], **_changes.get(_stem, {})}
            BEFORE[_stem] = {**BEFORE[_stem], **{k: v for k, v in _flags.items() if not k.startswith("_")}}

    def same_value(text, before):
        """`text` (as a flagfile writes it) parses to `before` (the recorded flags.json value)."""
        if isinstance(before, bool):
            return text.lower() in ("true", "1") if before else text.lower() in ("false", "0")
        if isinstance(before, list):
            parts = [p for p in text.split(",") if p]
            return len(parts) == len(before) and all(same_value(p, b) for p, b in zip(parts, before))
        if before is None:
            return text == ""
        if isinstance(before, (int, float)):
            try:
                return float(text) == float(before)
            except ValueError:
                return False
        try:  # list items are recorded as strings ("0.0001"); compare numbers as numbers
            return float(text) == float(before)
        except ValueError:
            return text == before

    RECORDED = [p for p in ALL if stem(p) in BEFORE]  # the others: _added_since

    def test_only_flagfiles_added_since_are_unrecorded():
        added = {s for s in _changes["_added_since"] if not s.startswith("_")}
        assert {stem(p) for p in ALL} - set(BEFORE) == added

    @pytest.mark.parametrize("path", RECORDED, ids=[stem(p) for p in RECORDED])
    def test_flagfile_resolves_as_before_the_redesign(path):
        """Base recipes included: every flag the flagfile sets has its recorded value."""
        before = BEFORE[stem(path)]
        changed = {
            k: (v, before.get(k))
            for k, v in read_flagfile(path).items()
            if k not in before or not same_value(v, before[k])
        }
        assert changed == {}

    def test_base_recipes_are_not_rows():
        bases = os.path.join(FLAGS_DIR, "base")
        if os.path.isdir(bases):
            for name in os.listdir(bases):
                assert name[: -len(".cfg")] not in BEFORE and os.path.join(FLAGS_DIR, name) not in ALL

    def _write(path, text):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return str(path)

    def test_nested_flagfile_is_relative_to_the_including_file(tmp_path, monkeypatch):
        _write(
            tmp_path / "flags" / "base" / "recipe.cfg",
            "# a recipe\n--momentum=0.9\n--lr_warmup=0\n--seed=1\n",
        )
        _write(tmp_path / "flags" / "base" / "deeper.cfg", "--flagfile=recipe.cfg\n--batch_size=50\n")
        row = _write(
            tmp_path / "flags" / "row.cfg",
            "# header\n--seed=7\n--flagfile=base/deeper.cfg\n\n--lr_warmup=5\n// comment\n--export\n",
        )
        monkeypatch.chdir("/")  # nothing is resolved against the working directory
        assert read_flagfile(row) == {
            "seed": "1",
            "momentum": "0.9",
            "lr_warmup": "5",
            "batch_size": "50",
            "export": "true",
        }  # included in place: the last value wins
        assert expand_flagfiles(["prog", "--mode=eval", f"--flagfile={row}", "--seed=3"]) == [
            "prog",
            "--mode=eval",
            "--seed=7",
            "--momentum=0.9",
            "--lr_warmup=0",
            "--seed=1",
            "--batch_size=50",
            "--lr_warmup=5",
            "--export",
            "--seed=3",
        ]

    def test_expand_flagfiles_command_line_forms(tmp_path, monkeypatch):
        _write(tmp_path / "a.cfg", "--seed=2\n")
        monkeypatch.chdir(tmp_path)  # a command-line path is relative to the working directory
        argv = ["prog", "--flagfile", "a.cfg", "-flagfile=a.cfg", "--", "--flagfile=x"]
        assert expand_flagfiles(argv) == ["prog", "--seed=2", "--seed=2", "--", "--flagfile=x"]
        assert expand_flagfiles(["prog", "--lr_boundaries="]) == ["prog", "--lr_boundaries="]
        assert read_flagfile("a.cfg") == {"seed": "2"}

    def test_missing_or_circular_flagfile_is_a_value_error(tmp_path):
        with pytest.raises(ValueError, match="--flagfile"):
            read_flagfile(str(tmp_path / "nope.cfg"))
        with pytest.raises(ValueError, match="--flagfile"):
            expand_flagfiles(["prog", f"--flagfile={tmp_path / 'nope.cfg'}"])
        outer = _write(tmp_path / "outer.cfg", "--seed=1\n--flagfile=base/missing.cfg\n")
        with pytest.raises(ValueError, match=r"--flagfile=.*missing\.cfg"):
            read_flagfile(outer)
        loop = _write(tmp_path / "loop.cfg", "--flagfile=loop2.cfg\n")
        _write(tmp_path / "loop2.cfg", "--flagfile=loop.cfg\n")
        with pytest.raises(ValueError, match="includes itself"):
            read_flagfile(loop)
        bad = _write(tmp_path / "bad.cfg", "seed 3\n")
        with pytest.raises(ValueError, match="not a flag"):
            read_flagfile(bad)


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2:])
