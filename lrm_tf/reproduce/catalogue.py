"""The flagfile catalogue as jobs: which flagfiles make a paper table, and which runs each needs.

A table id is `<paper>_t<N>` for the papers with numbered tables (`lrm_t1`, `lrm_t2`,
`shafahi_t2`, `alp_t1`, ...) and `poster_cifar10`, `poster_cifar100`, `poster_other` for the
poster's tables; `all` is every row. Which table a flagfile belongs to is its entry's "table" in
lrm_tf/report/published.json: "2 (= 6) and 1" puts it in tables 2, 6 and 1, "2 (source)" (a
black-box source with no numbers of its own) in table 2, "2 (sec. 5.3 text)" in table 2.

Dependencies come from the flagfiles themselves: `--load_from` and `--transfer_targets` name
`runs/<stem>` of the runs they use. A published black-box column `blackbox:<source>:<attack>`
of a *training* row (Shafahi et al.'s tables give the black-box accuracy of each trained model
beside its white-box one) has no flagfile of its own: it becomes a derived transfer job,
`<stem>+blackbox`, that attacks the source's model and writes transfer_<attack>.json into the
row's own run directory, where `lrm_tf.report.compare` reads it. Sources that only the paper
has (`EXTERNAL_SOURCES`, e.g. Madry et al.'s own copy) cannot run here and stay empty cells.
No TensorFlow here.
"""

from __future__ import annotations

import dataclasses
import os
import re

from lrm_tf.cli.flagfile import read_flagfile
from lrm_tf.report.published import EXTERNAL_SOURCES, PUBLISHED

# The repository's flags/ (an installed package has none: pass flags_dir).
FLAGS_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "flags"
)
BLACKBOX = "+blackbox"  # suffix of a derived black-box job's name
RUNS = "runs/"  # how flagfiles name the run directories of other flagfiles


@dataclasses.dataclass(frozen=True)
class Job:
    """One run of a table's plan.

    Attributes:
      name: the flagfile stem, or `<stem>+blackbox` for a derived black-box job.
      stem: the flagfile the job runs (its own for a derived job's training row).
      mode: train, eval or transfer.
      needs: names of the jobs whose runs this one reads, in the flagfile's order.
      flags: the flagfile's flags, base recipes resolved ({name: text}).
      run: the run directory's name under the plan's root (the stem).
      overrides: flags the plan adds to the flagfile's ({name: text}, paths under the root
        still as `runs/<stem>`; `plan` rewrites them).
    """

    name: str
    stem: str
    mode: str
    needs: tuple[str, ...]
    flags: dict
    run: str
    overrides: dict = dataclasses.field(default_factory=dict)

    @property
    def trains(self) -> bool:
        return self.mode == "train"


def table_ids(entry: dict) -> list[str]:
    """The table ids a published entry belongs to (see the module docstring).

    Args:
      entry: an entry of PUBLISHED ("paper", "table", ...).

    Returns:
      Ids in the order the cell names them, e.g. ["shafahi_t2", "shafahi_t6", "shafahi_t1"].
    """
    if entry["paper"] == "poster":
        cell = entry["table"]
        if cell.startswith("CIFAR-100"):
            return ["poster_cifar100"]
        return ["poster_cifar10"] if cell.startswith("CIFAR-10") else ["poster_other"]
    cell = re.sub(r"sec\.\s*[\d.]+", "", entry["table"])
    return [f"{entry['paper']}_t{n}" for n in dict.fromkeys(re.findall(r"\d+", cell))]


def tables(published: dict | None = None) -> dict[str, list[str]]:
    """Every table id -> its flagfile stems, in the data file's order; plus "all".

    Args:
      published: the published rows (default: PUBLISHED, lrm_tf/report/published.json).
    """
    published = PUBLISHED if published is None else published
    out: dict[str, list[str]] = {}
    for stem, entry in published.items():
        for table in table_ids(entry):
            out.setdefault(table, []).append(stem)
    ordered = dict(sorted(out.items(), key=lambda kv: _natural(kv[0])))
    ordered["all"] = list(published)
    return ordered


def _natural(text: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def _run_stem(path: str, stem: str, flag: str) -> str:
    if not path.startswith(RUNS):
        raise ValueError(f"flags/{stem}.cfg: --{flag}={path} is not a run of the catalogue (runs/<stem>)")
    return os.path.basename(os.path.normpath(path))


def read_job(stem: str, flags_dir: str = FLAGS_DIR) -> Job:
    """The job of flags/<stem>.cfg: its mode and the runs it reads.

    Raises:
      ValueError: the flagfile is missing or unreadable, or reads a path that is not
        `runs/<stem>`.
    """
    values = read_flagfile(os.path.join(flags_dir, f"{stem}.cfg"))
    mode = values.get("mode", "train")
    needs = [_run_stem(p, stem, "load_from") for p in values.get("load_from", "").split(",") if p]
    needs += [
        _run_stem(p, stem, "transfer_targets") for p in values.get("transfer_targets", "").split(",") if p
    ]
    return Job(stem, stem, mode, tuple(dict.fromkeys(needs)), values, stem)


def blackbox_job(job: Job, published: dict | None = None) -> Job | None:
    """The derived black-box job of a training row with published black-box columns, or None.

    It runs the row's flagfile with --mode=transfer: the sources are the columns' runs, the
    target the row's own run, the attacks the columns' attacks; its output goes to the row's
    run directory. Columns from EXTERNAL_SOURCES are left out (no run of ours exists).
    """
    entry = (PUBLISHED if published is None else published).get(job.stem)
    if not entry or not job.trains:
        return None
    sources, attacks = [], []
    for key in entry["results"]:
        if key.startswith("blackbox:"):
            _, source, attack = key.split(":")
            if source not in EXTERNAL_SOURCES:
                sources.append(source)
                attacks.append(attack)
    if not sources:
        return None
    sources, attacks = list(dict.fromkeys(sources)), list(dict.fromkeys(attacks))
    overrides = {
        "mode": "transfer",
        "load_from": ",".join(RUNS + s for s in sources),
        "transfer_targets": RUNS + job.stem,
        "eval_attacks": ",".join(attacks),
    }
    return Job(job.stem + BLACKBOX, job.stem, "transfer", (*sources, job.stem), job.flags, job.run, overrides)


def jobs_for(
    table: str, flags_dir: str = FLAGS_DIR, published: dict | None = None
) -> tuple[list[Job], set[str]]:
    """The jobs of a table and of everything they need, dependencies first.

    Args:
      table: a table id of `tables()` (or "all").
      flags_dir: the flags/ folder.
      published: the published rows (default: PUBLISHED).

    Returns:
      (jobs in a dependency order, stable in the data file's order; the names of the jobs that
      are the table's own rows, the others being what they need from other tables).

    Raises:
      KeyError: unknown table id (the message lists the known ones).
      ValueError: a flagfile is missing or needs a run no flagfile trains.
    """
    known = tables(published)
    if table not in known:
        raise KeyError(f"unknown table {table!r}; known: {', '.join(known)}")
    jobs: dict[str, Job] = {}
    own: set[str] = set()

    def add(stem: str, chain: tuple[str, ...] = ()) -> None:
        if stem in chain:
            raise ValueError(f"flags/{stem}.cfg: circular dependency {' -> '.join((*chain, stem))}")
        if stem in jobs:
            return
        if not os.path.isfile(os.path.join(flags_dir, f"{stem}.cfg")):
            where = f" (needed by {chain[-1]})" if chain else ""
            raise ValueError(f"flags/{stem}.cfg does not exist{where}")
        job = read_job(stem, flags_dir)
        for need in job.needs:
            add(need, (*chain, stem))
        jobs[stem] = job
        derived = blackbox_job(job, published)
        if derived:
            for need in derived.needs:
                if need != stem:
                    add(need, (*chain, stem))
            jobs[derived.name] = derived

    for stem in known[table]:
        add(stem)
        own.add(stem)
        own.add(stem + BLACKBOX)
    # A derived job goes right after the last of the runs it needs.
    ordered: list[Job] = []
    for job in jobs.values():
        if BLACKBOX not in job.name:
            ordered.append(job)
    placed = {j.name for j in ordered}
    for job in jobs.values():
        if BLACKBOX in job.name:
            last = max(i for i, j in enumerate(ordered) if j.name in job.needs)
            ordered.insert(last + 1, job)
            placed.add(job.name)
    return ordered, {name for name in own if name in jobs}
