"""Zero-code activation: the toolkits' own programs with the config line alone, in every process.

Every program runs in a fresh interpreter that never imports samplewise_rnnt itself: the package's
post-import hook (plugin/samplewise_rnnt_hook.py, armed by samplewise_rnnt_hook.pth in site-packages,
which `make build` writes and a wheel installs) must do it. The subprocesses get this checkout's
plugin/ on PYTHONPATH, so the hook and the package they import are the ones under test.

* start-up: the hook costs < 5 ms and imports neither torch nor a toolkit; SAMPLEWISE_RNNT_AUTOLOAD=0
  switches it off;
* NeMo: scripts that do what NeMo's speech_to_text_rnnt_bpe.py and speech_to_text_hybrid_rnnt_ctc_bpe.py
  do (tests/nemo_scripts/), with model.loss.loss_name=samplewise_rnnt; then 2 processes (Lightning DDP on
  the CPU, gloo), whose re-executed rank 1 must register the loss by itself;
* ESPnet: python -m espnet2.bin.asr_train / asr_transducer_train with model: samplewise_transducer, then
  the inference programs on the trained model; and a 2-process run through ESPnet's own
  multiprocessing launcher (--ngpu 2 --multiprocessing_distributed true, gloo).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PLUGIN = REPO / "plugin"
sys.path.insert(0, str(PLUGIN))
import samplewise_rnnt_hook as hook  # noqa: E402  (the module only; this process is not the one under test)

ESPNET_RECIPE = REPO / "recipes" / "librispeech" / "espnet"
NEMO_SCRIPTS = Path(__file__).resolve().parent / "nemo_scripts"
TRAIN_STEP = "training step on the sample-wise engine"


@pytest.fixture(scope="module")
def pth_installed():
    path = Path(sysconfig.get_paths()["purelib"]) / hook.PTH_NAME
    if not path.exists() or path.read_text() != hook.PTH_LINE:
        pytest.fail(f"{path} is missing or stale: the hook's .pth file must be installed in the interpreter "
                    f"that runs the tests (`make build` writes it: {sys.executable} "
                    f"plugin/samplewise_rnnt_hook.py --write-pth)")
    return path


def fresh_env(**extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(PLUGIN)
    env.pop(hook.ENV, None)
    env.update(OMP_NUM_THREADS="1", HYDRA_FULL_ERROR="1", PYTHONWARNINGS="ignore", NEMO_TESTING="0")
    env.update(extra)
    return env


def run(cmd, cwd, timeout=600, **extra_env):
    proc = subprocess.run([str(c) for c in cmd], cwd=str(cwd), env=fresh_env(**extra_env), capture_output=True,
                          text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    if Path(cwd) != REPO:  # kept in pytest's tmp dir for a look afterwards
        with open(Path(cwd) / "subprocess.log", "a") as f:
            f.write(f"$ {' '.join(map(str, cmd))}\n{out}\n")
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{out[-6000:]}"
    return out


# ---- the hook itself ------------------------------------------------------------------------------------

PROBE = ("import json, sys; import samplewise_rnnt_hook as h; print('PROBE', json.dumps({'armed': h.armed(), "
         "'heavy': sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'nemo', 'espnet2', 'espnet', "
         "'samplewise_rnnt', 'numpy'))}))")


def probe(**env):
    out = run([sys.executable, "-c", PROBE], REPO, **env)
    return json.loads([ln for ln in out.splitlines() if ln.startswith("PROBE ")][-1][6:])


def test_hook_is_armed_at_start_up_cheaply_and_imports_nothing_heavy(pth_installed):
    assert probe() == {"armed": True, "heavy": []}
    # its own import time at interpreter start-up (python -X importtime), best of 7 (the machine is shared).
    # pip compiles the installed module to bytecode; do the same here (PYTHONDONTWRITEBYTECODE may be set)
    import py_compile

    py_compile.compile(str(PLUGIN / "samplewise_rnnt_hook.py"), doraise=True)
    costs = []
    for _ in range(7):
        out = run([sys.executable, "-X", "importtime", "-c", "pass"], REPO)
        line = [ln for ln in out.splitlines() if ln.rstrip().endswith("samplewise_rnnt_hook")]
        assert len(line) == 1, out
        costs.append(int(line[0].split("|")[1]))  # cumulative microseconds: the module and all it imports
    assert min(costs) < 5000, costs


@pytest.mark.parametrize("value", ["0", "false", "OFF"])
def test_off_switch(pth_installed, value):
    assert probe(SAMPLEWISE_RNNT_AUTOLOAD=value) == {"armed": False, "heavy": []}


def test_python_S_never_arms(pth_installed):
    # no site-packages processing, no hook (README: import samplewise_rnnt.nemo / the entry points instead)
    out = subprocess.run([sys.executable, "-S", "-c", "import sys; print(any(type(f).__name__ == "
                          "'PostImportFinder' for f in sys.meta_path))"], capture_output=True, text=True,
                         env=fresh_env())
    assert out.stdout.strip() == "False"


def test_status_command_and_write_pth(tmp_path, pth_installed):
    out = run([sys.executable, "-m", "samplewise_rnnt_hook"], REPO)
    assert "armed at start-up in this interpreter: yes" in out and "hook on" in out
    out = run([sys.executable, "-m", "samplewise_rnnt_hook"], REPO, SAMPLEWISE_RNNT_AUTOLOAD="0")
    assert "hook off" in out and "armed at start-up in this interpreter: no" in out
    run([sys.executable, str(PLUGIN / "samplewise_rnnt_hook.py"), "--write-pth", tmp_path], REPO)
    assert (tmp_path / hook.PTH_NAME).read_text() == hook.PTH_LINE


# ---- NeMo ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def nemo_data(mini_librispeech, tmp_path_factory):
    pytest.importorskip("nemo.collections.asr")
    from samplewise_rnnt.data.librispeech import read_librispeech_part, write_nemo_manifest
    from samplewise_rnnt.nemo.tokenizer import manifest_texts, train_sentencepiece

    out = tmp_path_factory.mktemp("autoload_nemo")
    train = write_nemo_manifest(read_librispeech_part(mini_librispeech / "train-clean-mini"), out / "train.json")
    dev = write_nemo_manifest(read_librispeech_part(mini_librispeech / "dev-clean-mini"), out / "dev.json")
    tok = train_sentencepiece(manifest_texts([train]), out / "tokenizer", vocab_size=40)
    return {"train": train, "dev": dev, "tokenizer": tok}


def nemo_config(data, hybrid: bool, devices: int, out: Path, tdt: bool = False) -> Path:
    sys.path.insert(0, str(Path(__file__).parent))
    from nemo_tiny import tiny_model_cfg, tiny_tdt_cfg
    from omegaconf import OmegaConf

    kw = dict(tokenizer_dir=data["tokenizer"], train_manifest=data["train"], val_manifest=data["dev"], batch_size=2,
              fuse_loss_wer=False)
    # a stock TDT config (NeMo's loss name tdt, its durations in tdt_kwargs)
    model = tiny_tdt_cfg("tdt", sigma=0.02, **kw) if tdt else tiny_model_cfg("warprnnt_numba", **kw)
    model = OmegaConf.to_container(model, resolve=True)
    model["encoder"]["conv_norm_type"] = "batch_norm"
    if hybrid:
        model["aux_ctc"] = {"ctc_loss_weight": 0.3, "use_cer": False, "ctc_reduction": "mean_batch",
                            "decoder": {"_target_": "nemo.collections.asr.modules.ConvASRDecoder", "feat_in": None,
                                        "num_classes": -1, "vocabulary": []},
                            "decoding": {"strategy": "greedy"}}
    cfg = {
        "name": "autoload",
        "model": model,
        "trainer": {"devices": devices, "num_nodes": 1, "accelerator": "cpu",
                    "strategy": "ddp" if devices > 1 else "auto", "sync_batchnorm": False, "max_steps": 2,
                    "max_epochs": 1, "limit_val_batches": 1, "val_check_interval": 1.0, "num_sanity_val_steps": 0,
                    "logger": False, "enable_checkpointing": False, "enable_progress_bar": False,
                    "log_every_n_steps": 1},
        "exp_manager": {"exp_dir": str(out / "exp"), "create_tensorboard_logger": False,
                        "create_checkpoint_callback": False, "create_wandb_logger": False},
    }
    conf = out / "conf"
    conf.mkdir(parents=True, exist_ok=True)
    name = "hybrid_rnnt_ctc_bpe" if hybrid else "rnnt_bpe"
    (conf / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
    return conf


def check_nemo_log(out: str, ranks, loss="samplewise_rnnt"):
    # the config line took effect, in every process, and nothing contradicts it afterwards
    assert f"the transducer loss is {loss}" in out, out[-6000:]
    stocks = ["warprnnt_numba", "Using RNNT Loss : default", "Using RNNT Loss : pytorch", "Using RNNT Loss : tdt"]
    if loss != "samplewise_rnnt":
        stocks.append("Using RNNT Loss : samplewise_rnnt")
    for stock in stocks:
        assert stock not in out.split(f"the transducer loss is {loss}", 1)[1], stock
    steps = sorted(set(re.findall(rf"NeMo \(rank (\d+)/(\d+) pid \d+\): {TRAIN_STEP}", out)))
    assert steps == [(str(r), str(len(ranks))) for r in ranks], (steps, out[-6000:])


@pytest.mark.parametrize("script", ["speech_to_text_rnnt_bpe.py", "speech_to_text_hybrid_rnnt_ctc_bpe.py"])
def test_nemo_script_trains_with_the_config_line_only(script, nemo_data, tmp_path, pth_installed):
    conf = nemo_config(nemo_data, hybrid="hybrid" in script, devices=1, out=tmp_path)
    out = run([sys.executable, NEMO_SCRIPTS / script, f"--config-path={conf}",
               "model.loss.loss_name=samplewise_rnnt", f"hydra.run.dir={tmp_path / 'hydra'}"], tmp_path)
    check_nemo_log(out, ranks=[0])


@pytest.mark.parametrize("script", ["speech_to_text_rnnt_bpe.py", "speech_to_text_hybrid_rnnt_ctc_bpe.py"])
def test_nemo_script_trains_tdt_with_the_config_line_only(script, nemo_data, tmp_path, pth_installed):
    """A stock TDT config (hybrid: NeMo's TDT-CTC model) with loss_name tdt -> samplewise_tdt, on the CPU,
    where NeMo's own TDT loss cannot run."""
    conf = nemo_config(nemo_data, hybrid="hybrid" in script, devices=1, out=tmp_path, tdt=True)
    out = run([sys.executable, NEMO_SCRIPTS / script, f"--config-path={conf}",
               "model.loss.loss_name=samplewise_tdt", f"hydra.run.dir={tmp_path / 'hydra'}"], tmp_path)
    check_nemo_log(out, ranks=[0], loss="samplewise_tdt")
    assert "samplewise_tdt_loss" in out


def test_nemo_ddp_two_processes_both_ranks_sample_wise(nemo_data, tmp_path, pth_installed):
    conf = nemo_config(nemo_data, hybrid=False, devices=2, out=tmp_path)
    out = run([sys.executable, NEMO_SCRIPTS / "speech_to_text_rnnt_bpe.py", f"--config-path={conf}",
               "model.loss.loss_name=samplewise_rnnt", f"hydra.run.dir={tmp_path / 'hydra'}"], tmp_path)
    check_nemo_log(out, ranks=[0, 1])


# ---- ESPnet -------------------------------------------------------------------------------------------------

def espnet_train_cmd(task, work: Path, out: Path, extra=()):
    conf = yaml.safe_load((ESPNET_RECIPE / "conf" / f"mini_{task}.yaml").read_text())
    assert conf["model"] == "samplewise_transducer"  # the config line
    conf.update(max_epoch=1, keep_nbest_models=1, batch_type="unsorted", batch_size=3)
    conf["scheduler_conf"] = dict(warmup_steps=2)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train.yaml").write_text(yaml.safe_dump(conf))
    d = work / "data"
    return [sys.executable, "-m", f"espnet2.bin.{task}_train", "--config", out / "train.yaml",
            "--use_preprocessor", "true", "--token_type", "bpe", "--bpemodel", d / "bpe" / "bpe.model",
            "--token_list", d / "bpe" / "tokens.txt",
            "--train_data_path_and_name_and_type", f"{d}/train/wav.scp,speech,sound",
            "--train_data_path_and_name_and_type", f"{d}/train/text,text,text",
            "--valid_data_path_and_name_and_type", f"{d}/valid/wav.scp,speech,sound",
            "--valid_data_path_and_name_and_type", f"{d}/valid/text,text,text",
            "--train_shape_file", f"{d}/train/wav.scp", "--valid_shape_file", f"{d}/valid/wav.scp",
            "--output_dir", out / "exp", *extra]


def espnet_steps(out: str):
    return sorted(set(re.findall(rf"ESPnet \(rank (\d+)/(\d+) pid \d+\): {TRAIN_STEP}", out)))


@pytest.mark.parametrize("task", ["asr", "asr_transducer"])
def test_espnet_programs_train_and_decode_with_the_config_line_only(task, espnet_mini_data, tmp_path, pth_installed):
    out = run(espnet_train_cmd(task, espnet_mini_data, tmp_path, ["--ngpu", "0"]), tmp_path)
    assert "model: samplewise_transducer, the transducer loss is computed by the sample-wise engine" in out
    assert espnet_steps(out) == [("0", "1")], out[-6000:]
    exp = tmp_path / "exp"
    assert yaml.safe_load((exp / "config.yaml").read_text())["model"] == "samplewise_transducer"
    d = espnet_mini_data / "data"
    run([sys.executable, "-m", f"espnet2.bin.{task}_inference", "--ngpu", "0", "--beam_size", "1",
         "--batch_size", "1", "--data_path_and_name_and_type", f"{d}/test/wav.scp,speech,sound",
         "--key_file", f"{d}/test/wav.scp", "--asr_train_config", exp / "config.yaml",
         "--asr_model_file", exp / "1epoch.pth", "--output_dir", tmp_path / "decode"], tmp_path)
    keys = [ln.split()[0] for ln in (tmp_path / "decode" / "1best_recog" / "text").read_text().splitlines()
            if ln.strip()]
    assert sorted(keys) == sorted(ln.split()[0] for ln in (d / "test" / "wav.scp").read_text().splitlines())


def test_espnet_multiprocessing_launcher_two_workers_sample_wise(espnet_mini_data, tmp_path, pth_installed):
    """ESPnet's own launcher (--ngpu 2 --multiprocessing_distributed true) spawns 2 workers; each
    rebuilds the model from the config in a fresh interpreter. The one stub: ESPnet gives each worker one
    GPU (ngpu=1: .to("cuda"), torch.cuda.set_device); tests/espnet_cpu_workers.py makes the workers run on
    the CPU (ngpu=0, gloo) and touches nothing else."""
    cmd = espnet_train_cmd("asr", espnet_mini_data, tmp_path, ["--ngpu", "2", "--multiprocessing_distributed", "true",
                                                          "--dist_backend", "gloo"])
    cmd[1:3] = ["-m", "espnet_cpu_workers", "espnet2.bin.asr_train"]
    out = run(cmd, tmp_path, PYTHONPATH=f"{PLUGIN}{os.pathsep}{Path(__file__).parent}")
    assert espnet_steps(out) == [("0", "2"), ("1", "2")], out[-6000:]
    assert "--model must be one of" not in out


# ---- ESPnet's own asr.sh on the egs2 recipe directory (needs an ESPnet checkout) ------------------------------

EGS2 = ESPNET_RECIPE / "egs2" / "librispeech_samplewise" / "asr1"


def test_egs2_conf_matches_the_pip_only_recipe():
    pairs = {"train_asr_rnnt_samplewise_b1024.yaml": "train_conformer_transducer_samplewise_b1024.yaml",
             "train_asr_transducer_samplewise_b1024.yaml": "train_asr_transducer_conformer_samplewise_b1024.yaml",
             "train_mini_asr.yaml": "mini_asr.yaml", "train_mini_asr_transducer.yaml": "mini_asr_transducer.yaml",
             "decode_asr_rnnt.yaml": "decode_transducer.yaml"}
    for egs2, pip_only in pairs.items():
        ours = yaml.safe_load((EGS2 / "conf" / egs2).read_text())
        assert ours == yaml.safe_load((ESPNET_RECIPE / "conf" / pip_only).read_text()), egs2
    for name in ("train_asr_rnnt_samplewise_b1024.yaml", "train_asr_transducer_samplewise_b1024.yaml"):
        conf = yaml.safe_load((EGS2 / "conf" / name).read_text())
        assert (conf["model"], conf["batch_size"], conf["batch_type"]) == ("samplewise_transducer", 1024, "sorted")
    for link in ("asr.sh", "path.sh", "db.sh", "utils", "steps", "scripts", "pyscripts"):
        assert os.readlink(EGS2 / link) == f"../../TEMPLATE/asr1/{link}"


def test_stock_asr_sh_runs_the_egs2_recipe(mini_librispeech, tmp_path, pth_installed):
    """ESPnet's own asr.sh, stages 1-13, on the egs2 directory (mini corpus, CPU): ESPNET_ROOT names an
    ESPnet checkout (egs2/TEMPLATE/asr1 is in ESPnet's git repository only, not in its wheel or sdist)."""
    import importlib.util
    import shutil

    root = os.environ.get("ESPNET_ROOT")
    if not root or not (Path(root) / "egs2" / "TEMPLATE" / "asr1" / "asr.sh").exists():
        pytest.skip("set ESPNET_ROOT to an ESPnet checkout (git clone https://github.com/espnet/espnet) to run "
                    "ESPnet's asr.sh on recipes/librispeech/espnet/egs2")
    missing = [what for what, ok in (("resampy (asr.sh stage 3): pip install resampy",
                                      importlib.util.find_spec("resampy") is not None),
                                     ("sclite (asr.sh stage 13): apt-get install sctk",
                                      shutil.which("sclite") or os.access("/usr/lib/sctk/bin/sclite", os.X_OK)))
               if not ok]
    if missing:
        pytest.skip("asr.sh prerequisites missing: " + "; ".join(missing))
    # a tree in which the recipe's relative links resolve: tmp/egs2/TEMPLATE -> the checkout's
    (tmp_path / "egs2").mkdir()
    (tmp_path / "egs2" / "TEMPLATE").symlink_to(Path(root) / "egs2" / "TEMPLATE")
    (tmp_path / "tools").symlink_to(Path(root) / "tools")
    recipe = tmp_path / "egs2" / "librispeech_samplewise" / "asr1"
    shutil.copytree(EGS2, recipe, symlinks=True)
    env_path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    out = run(["./run.sh", "--mini", "true", "--ngpu", "0", "--nj", "2", "--inference_nj", "2",
               "--stage", "1", "--stop_stage", "13"], recipe, timeout=1200, PATH=env_path,
              MINI_LIBRISPEECH_SAMPLEWISE=str(mini_librispeech),
              PYTHONPATH=os.pathsep.join(filter(None, [str(PLUGIN), os.environ.get("PYTHONPATH")])))
    exp = recipe / "exp" / "asr_train_mini_asr_raw_en_bpe64"
    assert yaml.safe_load((exp / "config.yaml").read_text())["model"] == "samplewise_transducer"
    train_log = (exp / "train.log").read_text()
    assert TRAIN_STEP in train_log and "--model must be one of" not in train_log
    results = (exp / "RESULTS.md").read_text()
    assert re.search(r"decode_.*test_mini", results), results
    assert "Stage 13" in out


# ---- a missing toolkit ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("toolkit, module, program", [
    ("espnet", "espnet2", "samplewise_rnnt.espnet.asr_train"),
    ("espnet", "espnet2", "samplewise_rnnt.espnet.asr_transducer_inference"),
    ("nemo", "nemo", "samplewise_rnnt.nemo"),
])
def test_missing_toolkit_names_the_package_and_the_install_command(toolkit, module, program):
    # the toolkit made unimportable in that interpreter (sys.modules[name] = None: import raises
    # ModuleNotFoundError, as where it is not installed)
    code = (f"import sys, runpy; sys.modules[{module!r}] = None; "
            f"runpy.run_module({program!r}, run_name='__main__', alter_sys=True)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=fresh_env(),
                          cwd=str(REPO), timeout=300)
    assert proc.returncode != 0
    err = proc.stderr
    package, command = {"espnet": ("'espnet'", "pip install --no-deps espnet==202511"),
                        "nemo": ("'nemo_toolkit[asr]'", "pip install 'nemo_toolkit[asr]'")}[toolkit]
    assert f"needs {toolkit} (Python package {package}, module '{module}')" in err, err[-3000:]
    assert command in err, err[-3000:]
    if program.startswith("samplewise_rnnt.espnet."):
        assert "Traceback" not in err, err[-3000:]  # a program: the message, no traceback
