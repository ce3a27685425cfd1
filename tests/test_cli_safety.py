"""The trustml command never loses a user's data and never ends in a bare traceback.

Exit statuses: 0 pass, 1 a criterion fails, 2 invalid input (one ``trustml: error:`` line,
nothing written), 3 the run could not finish (one line naming the stage), 130 Ctrl-C,
143 SIGTERM. Each test checks the status, the one line on stderr and what is on disk.
"""

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from trustml.cli import main
from trustml.protocol import runner as runner_mod
from trustml.utils.rundir import RunFolder

ROOT = Path(__file__).resolve().parent.parent

TINY = {
    "trustml": 1,
    "name": "tiny",
    "seed": 7,
    "device": "cpu",
    "data": {"builtin": "cosmology2d", "options": {"n": 200, "size": 8}},
    "task": "regression",
    "model": {"builtin": "cnn", "options": {"channels": [4], "hidden": 8}},
    "uncertainty": {
        "method": "deep_ensemble",
        "members": 2,
        "train": {"epochs": 1, "batch_size": 32},
    },
    "calibration": {"method": "conformal", "alpha": 0.2},
    "metrics": ["rmse", "coverage"],
    "acceptance": {"coverage": {"min": 0.0}},
}
#: The tiny protocol with an attribution stage (to interrupt the run after training).
ATTRIBUTED = {**TINY, "attribution": {"n_examples": 2, "n_steps": 8, "target": 1}}

REPORT_FILES = ("results.json", "manifest.json", "arrays.h5", "protocol.yaml", "report.html")
STAGING = ".trustml-staging-"
#: What an unfinished run may leave in a folder it claimed: its marker, lock and checkpoints.
BOOKKEEPING = {".trustml-run", ".trustml.lock", "checkpoints"}


def write_protocol(folder: Path, raw: dict, name: str = "tiny.yaml") -> Path:
    f = folder / name
    f.write_text(yaml.safe_dump(raw, sort_keys=False))
    return f


def evaluate(protocol: Path, out, *extra: str) -> int:
    return main(["evaluate", str(protocol), "--out", str(out), "--quiet", *extra])


def one_line(err: str, prefix: str = "trustml: error:") -> str:
    """The only line of ``err``; it starts with ``prefix``."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    assert lines[0].startswith(prefix), lines[0]
    assert "Traceback" not in err
    return lines[0]


def snapshot(root: Path) -> dict:
    """Type, permission bits, mtime and bytes of ``root`` and everything below it."""

    def entry(p: Path):
        st = p.lstat()
        data = p.read_bytes() if stat.S_ISREG(st.st_mode) else None
        return stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_mtime_ns, data

    tree = {".": entry(root)}
    for p in sorted(root.rglob("*")):
        tree[str(p.relative_to(root))] = entry(p)
    return tree


def contents(root: Path) -> dict:
    """:func:`snapshot` of what is inside ``root`` (a run that created and removed a folder
    in it changes ``root``'s own mtime, and nothing else)."""
    tree = snapshot(root)
    del tree["."]
    return tree


def no_staging(folder: Path) -> bool:
    return not any(name.startswith(STAGING) for name in os.listdir(folder))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A finished run of the tiny protocol (copy it before changing it)."""
    base = tmp_path_factory.mktemp("finished")
    f = write_protocol(base, TINY)
    assert evaluate(f, base / "run") == 0
    return base / "run"


# --- --out: never write into a user's folder --------------------------------------------


def test_user_folder_is_refused_and_force_adds_only_trustmls_files(tmp_path, capsys, monkeypatch):
    # mkdir -p mydata/sub; echo x > mydata/thesis.tex; trustml evaluate tiny.yaml --out mydata
    monkeypatch.chdir(tmp_path)
    write_protocol(tmp_path, TINY)
    (tmp_path / "mydata" / "sub").mkdir(parents=True)
    (tmp_path / "mydata" / "thesis.tex").write_text("x\n")
    (tmp_path / "mydata" / "sub" / "notes.txt").write_text("chapter 2\n")
    mydata = tmp_path / "mydata"
    before = snapshot(mydata)

    assert evaluate(Path("tiny.yaml"), "mydata") == 2
    line = one_line(capsys.readouterr().err)
    assert "mydata" in line and "--force" in line
    assert snapshot(mydata) == before  # not a byte, not a marker, not a lock, not an mtime

    assert evaluate(Path("tiny.yaml"), "mydata", "--force") == 0
    capsys.readouterr()
    after = snapshot(mydata)
    for name in ("thesis.tex", "sub", "sub/notes.txt"):
        assert after[name] == before[name], name
    for name in REPORT_FILES:
        assert (mydata / name).is_file(), name
    assert json.loads((mydata / "results.json").read_text())["verdict"] == "pass"
    assert no_staging(mydata)
    # Nothing else appeared beside the user's files and trustml's own.
    mine = set(REPORT_FILES) | BOOKKEEPING
    assert set(os.listdir(mydata)) - mine == {"thesis.tex", "sub"}


def test_empty_out_is_refused_and_the_current_folder_untouched(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    f = write_protocol(tmp_path, TINY)
    before = snapshot(tmp_path)
    assert main(["evaluate", str(f), "--out", "", "--quiet"]) == 2
    line = one_line(capsys.readouterr().err)
    assert "--out: an empty path" in line
    assert snapshot(tmp_path) == before


def test_out_naming_a_file_is_refused_and_the_file_unchanged(tmp_path, capsys):
    f = write_protocol(tmp_path, TINY)
    target = tmp_path / "results.csv"
    target.write_bytes(b"a,b\n1,2\n")
    before = snapshot(tmp_path)
    assert evaluate(f, target) == 2
    line = one_line(capsys.readouterr().err)
    assert str(target) in line and "not a folder" in line
    assert snapshot(tmp_path) == before
    assert target.read_bytes() == b"a,b\n1,2\n"


def test_out_that_cannot_be_created_is_refused_naming_it(tmp_path, capsys):
    f = write_protocol(tmp_path, TINY)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder would have to be\n")
    out = blocker / "run" / "deeper"
    before = snapshot(tmp_path)
    assert evaluate(f, out) == 2
    line = one_line(capsys.readouterr().err)
    assert str(out) in line and "cannot create" in line
    assert snapshot(tmp_path) == before


def test_a_folder_locked_by_a_running_run_is_refused(tmp_path, capsys):
    f = write_protocol(tmp_path, TINY)
    out = tmp_path / "run"
    with RunFolder(out):
        lock = (out / ".trustml.lock").read_text()
        assert f"pid {os.getpid()}" in lock
        before = snapshot(out)
        assert evaluate(f, out) == 2
        line = one_line(capsys.readouterr().err)
        assert str(out) in line and "another trustml run" in line
        assert "is writing this folder" in line and f"pid {os.getpid()}" in line
        # The refused run left the holder's folder, marker and lock as they were.
        assert snapshot(out) == before
    # The holder created the folder and left nothing in it: it is gone again.
    assert not out.exists()


# --- staged writes ----------------------------------------------------------------------


def test_writes_are_staged_and_results_json_moves_in_last(
    tmp_path, capsys, monkeypatch, finished_run
):
    f = write_protocol(tmp_path, TINY)
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    moves = []
    real_replace = os.replace

    def recording_replace(src, dst, *args, **kwargs):
        src, dst = Path(src), Path(dst)
        if dst.parent == out and dst.name in REPORT_FILES:
            moves.append((src.parent.name, dst.name, (out / "results.json").exists()))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", recording_replace)
    assert evaluate(f, out, "--set", "seed=8") == 0  # a re-run into an existing run folder
    monkeypatch.undo()
    assert capsys.readouterr().err == ""
    assert [name for _, name, _ in moves][-1] == "results.json"
    assert sorted(name for _, name, _ in moves) == sorted(REPORT_FILES)
    # Every file came from this process's staging folder ...
    assert {stage for stage, _, _ in moves} == {f"{STAGING}{os.getpid()}"}
    # ... and while the others were moved in, no results.json made the folder look complete.
    assert not any(complete for _, name, complete in moves if name != "results.json")
    assert json.loads((out / "results.json").read_text())["seed"] == 8
    assert no_staging(out)


def test_staging_folder_left_by_a_killed_run_is_removed_by_the_next(tmp_path, capsys, finished_run):
    f = write_protocol(tmp_path, TINY)
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    stale = out / f"{STAGING}999999"
    stale.mkdir()
    (stale / "results.json").write_text('{"half": ')
    (stale / "arrays.h5").write_bytes(b"\x89HDF")
    assert evaluate(f, out) == 0
    assert capsys.readouterr().err == ""
    assert not stale.exists() and no_staging(out)
    assert json.loads((out / "results.json").read_text())["verdict"] == "pass"


# --- interrupts ---------------------------------------------------------------------------


def test_ctrl_c_before_any_checkpoint_exits_130_and_leaves_nothing(tmp_path, capsys, monkeypatch):
    f = write_protocol(tmp_path, TINY)
    out = tmp_path / "run"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner_mod._methods, "fit_method", interrupted)
    assert evaluate(f, out) == 130
    line = one_line(capsys.readouterr().err, prefix="trustml:")
    assert "interrupted" in line and "no report was written" in line
    assert not out.exists()  # the run created it and left nothing worth keeping


@pytest.mark.slow
def test_ctrl_c_after_training_keeps_checkpoints_and_the_rerun_resumes(
    tmp_path, capsys, monkeypatch
):
    f = write_protocol(tmp_path, ATTRIBUTED)
    out = tmp_path / "run"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner_mod, "attribute_and_check", interrupted)
    assert evaluate(f, out) == 130
    line = one_line(capsys.readouterr().err, prefix="trustml:")
    assert "trustml: error:" not in line
    assert (
        f"2 finished member checkpoint(s) kept in {out / 'checkpoints'}: "
        "run the same command again to resume"
    ) in line
    assert set(os.listdir(out)) == BOOKKEEPING  # no results.json, no staging folder
    checkpoints = sorted((out / "checkpoints").rglob("*.pt"))
    assert len(checkpoints) == 2
    stamps = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in checkpoints}

    monkeypatch.undo()
    assert evaluate(f, out) == 0
    assert evaluate(f, tmp_path / "uninterrupted") == 0
    capsys.readouterr()
    # The members were read back, not trained again, and the numbers are the same.
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in checkpoints} == stamps
    resumed = (out / "results.json").read_bytes()
    assert resumed == (tmp_path / "uninterrupted" / "results.json").read_bytes()
    assert no_staging(out)


@pytest.mark.slow
def test_sigterm_exits_143_with_one_line_and_no_half_written_report(tmp_path):
    raw = {
        **TINY,
        "data": {"builtin": "cosmology2d", "options": {"n": 3000, "size": 32}},
        "uncertainty": {"method": "deep_ensemble", "members": 2, "train": {"epochs": 30}},
    }
    f = write_protocol(tmp_path, raw)
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "trustml.cli", "evaluate", str(f), "--out", str(out), "--quiet"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # The lock is taken first and the marker written next: once both exist, the run has
        # claimed the folder and is training.
        deadline = time.monotonic() + 240
        while not ((out / ".trustml.lock").exists() and (out / ".trustml-run").exists()):
            assert proc.poll() is None, (
                f"the run ended before it claimed {out}: {proc.stderr.read()}"
            )
            assert time.monotonic() < deadline, "the run never claimed its output folder"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, err
    line = one_line(err, prefix="trustml:")
    assert "trustml: error:" not in line
    assert "interrupted" in line or "terminated" in line
    if out.exists():
        names = set(os.listdir(out))
        assert "results.json" not in names and no_staging(out), names
        assert names <= BOOKKEEPING, names
        assert any((out / "checkpoints").rglob("*.pt")), "an empty folder the run created was left"
        assert str(out / "checkpoints") in line
    else:
        assert "no report was written" in line or "nothing was written" in line


# --- trustml report -----------------------------------------------------------------------


def test_report_refuses_a_results_json_that_is_not_one(tmp_path, capsys, finished_run):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    (run / "results.json").write_text("{}")
    before = snapshot(run)
    assert main(["report", str(run)]) == 2
    line = one_line(capsys.readouterr().err)
    assert str(run / "results.json") in line and "not a trustml results file" in line
    assert snapshot(run) == before  # report.html's bytes included; no temporary file left


@pytest.mark.parametrize("mode", [0o640, 0o644])
def test_report_rerender_keeps_the_permission_bits(tmp_path, capsys, finished_run, mode):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    report = run / "report.html"
    report.write_text("stale")
    report.chmod(mode)
    names = set(os.listdir(run))
    assert main(["report", str(run)]) == 0
    assert capsys.readouterr().err == ""
    assert report.read_text(encoding="utf-8") != "stale"  # it was re-rendered ...
    assert report.stat().st_size > 10_000
    assert stat.S_IMODE(report.stat().st_mode) == mode  # ... with the same permissions
    assert set(os.listdir(run)) == names  # no temporary file left beside it


# --- exit 3: the run could not finish -------------------------------------------------------


@pytest.mark.parametrize("debug", [False, True])
def test_a_diverging_loss_exits_3_naming_the_stage(tmp_path, capsys, debug):
    f = write_protocol(tmp_path, TINY)
    out = tmp_path / "run"
    before = contents(tmp_path)
    args = ["--set", "uncertainty.train.lr=1e30"] + (["--debug"] if debug else [])
    assert evaluate(f, out, *args) == 3
    err = capsys.readouterr().err
    if debug:
        assert err.startswith("Traceback"), err[:500]
        assert "FloatingPointError" in err
        lines = err.strip().splitlines()
        assert sum(line.startswith("trustml: error:") for line in lines) == 1
        line = lines[-1]
        assert "--debug" not in line
    else:
        line = one_line(err)
        assert line.endswith("(run with --debug for the traceback)")
    assert "training 'deep_ensemble' failed" in line and "non-finite" in line
    assert not out.exists()  # created by the run, no checkpoint: removed again
    assert contents(tmp_path) == before


def test_a_failed_rerun_leaves_the_earlier_results_unchanged(tmp_path, capsys, finished_run):
    f = write_protocol(tmp_path, TINY)
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    before = contents(out)
    del before[".trustml.lock"]  # the lock is written by every run
    assert evaluate(f, out, "--set", "uncertainty.train.lr=1e30") == 3
    line = one_line(capsys.readouterr().err)
    assert "training 'deep_ensemble' failed" in line and "non-finite" in line
    # The earlier run's checkpoints are another run's: no resume is promised from them.
    assert f"the earlier results in {out} are unchanged" in line and "resume" not in line
    after = contents(out)
    del after[".trustml.lock"]
    assert after == before  # every file of the earlier run, byte for byte
    assert no_staging(out)


def test_a_users_factory_that_raises_exits_3(tmp_path, capsys, monkeypatch):
    module = "trustml_test_broken_factory"
    (tmp_path / f"{module}.py").write_text(
        "def make(input_shape, output_dim, **options):\n"
        "    raise RuntimeError('my factory is broken')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, module, raising=False)
    raw = {**TINY, "model": {"factory": f"{module}:make"}}
    f = write_protocol(tmp_path, raw)
    out = tmp_path / "run"
    names = set(os.listdir(tmp_path))
    assert evaluate(f, out) == 3
    line = one_line(capsys.readouterr().err)
    assert "building the model failed" in line
    assert "RuntimeError: my factory is broken" in line
    assert line.endswith("(run with --debug for the traceback)")
    assert not out.exists()
    assert set(os.listdir(tmp_path)) - {"__pycache__"} == names


def test_inputs_that_overflow_exit_3_and_write_nothing(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x = (1e38 * rng.choice([-1.0, 1.0], size=(60, 1, 8, 8))).astype(np.float32)
    assert np.isfinite(x).all()  # finite data: the data checks let it through
    with h5py.File(tmp_path / "huge.h5", "w") as h:
        h["x"], h["y"] = x, rng.normal(size=(60, 2)).astype(np.float32)
    f = write_protocol(tmp_path, {**TINY, "data": {"hdf5": {"path": "huge.h5"}}})
    out = tmp_path / "run"
    before = contents(tmp_path)
    assert evaluate(f, out) == 3
    line = one_line(capsys.readouterr().err)
    assert "training 'deep_ensemble' failed" in line and "non-finite" in line
    assert not out.exists()
    assert contents(tmp_path) == before


# --- sizes and protocols refused before anything is allocated or trained --------------------


@pytest.mark.timeout(120)  # refused up front, not after minutes of allocating
@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("uncertainty.members=1000000000", "uncertainty.members"),
        ("model.options.hidden=1000000000", "model.options"),
        ("data.options.n=1000000000", "data.options.n"),
    ],
)
def test_absurd_sizes_are_refused_naming_the_key(tmp_path, capsys, override, key):
    f = write_protocol(tmp_path, TINY)
    out = tmp_path / "run"
    before = snapshot(tmp_path)
    assert evaluate(f, out, "--set", override) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith(f"trustml: error: {key}:"), line
    assert "available" in line  # it says what the machine has
    assert snapshot(tmp_path) == before  # the output folder was never even created


def test_class_labels_that_are_not_indices_are_refused_naming_the_file(tmp_path, capsys):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, size=60).astype(np.int64)
    y[5] = 2_000_000_000
    with h5py.File(tmp_path / "labels.h5", "w") as h:
        h["x"], h["y"] = rng.normal(size=(60, 1, 8, 8)).astype(np.float32), y
    raw = {
        **TINY,
        "data": {"hdf5": {"path": "labels.h5"}},
        "task": "classification",
        "metrics": ["accuracy"],
        "acceptance": {},
    }
    f = write_protocol(tmp_path, raw)
    out = tmp_path / "run"
    before = snapshot(tmp_path)
    assert evaluate(f, out) == 2
    line = one_line(capsys.readouterr().err)
    assert str(tmp_path / "labels.h5") in line and "labels must be class indices" in line
    assert "2000000000" in line
    assert snapshot(tmp_path) == before


def test_gradcam_on_a_model_without_convolutions_is_refused_before_training(
    tmp_path, capsys, monkeypatch
):
    raw = {
        **TINY,
        "model": {"builtin": "mlp", "options": {"hidden": [8]}},
        "attribution": {"methods": ["gradcam"], "checks": [], "target": 0},
    }
    f = write_protocol(tmp_path, raw)
    out = tmp_path / "run"
    trained = []
    real_fit = runner_mod._methods.fit_method

    def spy(*args, **kwargs):
        trained.append(True)
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(runner_mod._methods, "fit_method", spy)
    before = snapshot(tmp_path)
    assert evaluate(f, out) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith("trustml: error: attribution.methods:") and "gradcam" in line
    assert trained == []
    assert snapshot(tmp_path) == before


# --- verify -------------------------------------------------------------------------------


@pytest.mark.slow
def test_verify_reproduces_a_run_made_with_set(tmp_path, capsys):
    f = write_protocol(tmp_path, TINY)
    out = tmp_path / "run"
    assert evaluate(f, out, "--set", "seed=5") == 0
    assert yaml.safe_load((out / "protocol.yaml").read_text())["seed"] == 5
    assert json.loads((out / "results.json").read_text())["seed"] == 5
    assert yaml.safe_load(f.read_text())["seed"] == 7  # the user's file is not rewritten
    capsys.readouterr()
    before = snapshot(out)
    assert main(["verify", str(out), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("reproduced"), captured.out
    assert captured.err == ""
    assert snapshot(out) == before  # verify re-runs in memory and touches nothing


def test_an_interrupt_while_claiming_the_folder_leaves_nothing(tmp_path, capsys, monkeypatch):
    # Ctrl-C (or SIGTERM) between creating the folder and marking it: the folder goes again.
    from trustml.utils import rundir

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(rundir, "_write_marker", interrupted)
    f = write_protocol(tmp_path, TINY)
    out = tmp_path / "run"
    assert evaluate(f, out) == 130
    assert "interrupted" in capsys.readouterr().err
    assert not out.exists()
