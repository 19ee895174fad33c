"""ESPnet's own trainer and inference programs with model: samplewise_transducer, both tasks.

On the synthetic mini-LibriSpeech corpus (tests/conftest.py), in this process (one ESPnet
import): the recipe's data preparation and BPE scripts, statistics collection and a few training
epochs through the package's entry points (ESPnet's AbsTask.main), decoding through the
inference entry points, and the recipe's WER scoring.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

pytest.importorskip("espnet2")

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "librispeech" / "espnet"
sys.path.insert(0, str(RECIPE / "local"))

import score  # noqa: E402


def small_config(task: str, path: Path, epochs: int) -> Path:
    conf = yaml.safe_load((RECIPE / "conf" / f"mini_{task}.yaml").read_text())
    conf.update(batch_size=3, max_epoch=epochs, keep_nbest_models=1)
    conf["scheduler_conf"] = dict(warmup_steps=2)
    conf["optim_conf"] = dict(lr=0.002)
    path.write_text(yaml.safe_dump(conf))
    return path


def run_task(task: str, work: Path, epochs: int = 4):
    from samplewise_rnnt.espnet import asr_inference, asr_train, asr_transducer_inference, asr_transducer_train

    train_main = asr_train.main if task == "asr" else asr_transducer_train.main
    infer_main = asr_inference.main if task == "asr" else asr_transducer_inference.main
    d, exp, stats = work / "data", work / f"exp_{task}", work / f"stats_{task}"
    config = small_config(task, work / f"{task}.yaml", epochs)
    common = ["--config", str(config), "--use_preprocessor", "true", "--token_type", "bpe",
              "--bpemodel", str(d / "bpe" / "bpe.model"), "--token_list", str(d / "bpe" / "tokens.txt"),
              "--train_data_path_and_name_and_type", f"{d}/train/wav.scp,speech,sound",
              "--train_data_path_and_name_and_type", f"{d}/train/text,text,text",
              "--valid_data_path_and_name_and_type", f"{d}/valid/wav.scp,speech,sound",
              "--valid_data_path_and_name_and_type", f"{d}/valid/text,text,text", "--ngpu", "0"]
    train_main(cmd=common + ["--collect_stats", "true", "--batch_type", "unsorted", "--batch_size", "4",
                             "--train_shape_file", f"{d}/train/wav.scp", "--valid_shape_file",
                             f"{d}/valid/wav.scp", "--output_dir", str(stats)])
    vocab = len((d / "bpe" / "tokens.txt").read_text().splitlines())
    for s in ("train", "valid"):
        lines = (stats / s / "text_shape").read_text().splitlines()
        (stats / s / "text_shape.bpe").write_text("".join(f"{ln},{vocab}\n" for ln in lines))
    train_main(cmd=common + ["--normalize", "global_mvn", "--normalize_conf",
                             f"stats_file={stats}/train/feats_stats.npz",
                             "--train_shape_file", f"{stats}/train/speech_shape",
                             "--train_shape_file", f"{stats}/train/text_shape.bpe",
                             "--valid_shape_file", f"{stats}/valid/speech_shape",
                             "--valid_shape_file", f"{stats}/valid/text_shape.bpe",
                             "--output_dir", str(exp)])
    cfg = yaml.safe_load((exp / "config.yaml").read_text())
    assert cfg["model"] == "samplewise_transducer" and cfg["model_conf"]["encoder_checkpointing"] is True
    reporter = torch.load(exp / "checkpoint.pth", map_location="cpu", weights_only=False)["reporter"]
    train_loss = [reporter["stats"][e]["train"]["loss"] for e in sorted(reporter["stats"])]
    model_file = exp / "valid.loss.ave.pth"
    assert model_file.exists()
    out = work / f"decode_{task}"
    infer_main(cmd=["--ngpu", "0", "--beam_size", "2", "--batch_size", "1",
                    "--data_path_and_name_and_type", f"{d}/test/wav.scp,speech,sound",
                    "--key_file", f"{d}/test/wav.scp", "--asr_train_config", str(exp / "config.yaml"),
                    "--asr_model_file", str(model_file), "--output_dir", str(out)])
    return train_loss, out


@pytest.mark.parametrize("task", ["asr", "asr_transducer"])
def test_trainer_lowers_loss_and_inference_decodes(task, espnet_mini_data, capsys):
    train_loss, out = run_task(task, espnet_mini_data)
    assert len(train_loss) == 4 and all(map(lambda v: v == v, train_loss))
    assert train_loss[-1] < 0.8 * train_loss[0], train_loss
    hyp = out / "1best_recog" / "text"
    ref_keys = [ln.split()[0] for ln in (espnet_mini_data / "data" / "test" / "text").read_text().splitlines()]
    hyp_keys = [ln.split()[0] for ln in hyp.read_text().splitlines() if ln.strip()]
    assert sorted(hyp_keys) == sorted(ref_keys)
    score.main(["--ref", str(espnet_mini_data / "data" / "test" / "text"), "--hyp", str(hyp),
                "--out", str(out / "result.json")])
    res = json.loads((out / "result.json").read_text())
    assert res["utterances"] == len(ref_keys) and res["decoded"] == len(ref_keys) and res["wer"] >= 0
    assert "WER" in capsys.readouterr().out


def test_score_counts_errors(tmp_path):
    (tmp_path / "ref").write_text("a ONE TWO THREE\nb FOUR FIVE\n")
    (tmp_path / "hyp").write_text("a one two\nb FOUR SIX SEVEN\n")
    score.main(["--ref", str(tmp_path / "ref"), "--hyp", str(tmp_path / "hyp"), "--out", str(tmp_path / "r.json")])
    res = json.loads((tmp_path / "r.json").read_text())
    assert (res["errors"], res["words"]) == (3, 5)  # 1 deletion; 1 substitution + 1 insertion
    assert res["wer"] == pytest.approx(60.0)


def test_run_sh_rejects_bad_options():
    r = subprocess.run(["bash", str(RECIPE / "run.sh"), "--asr_task", "asr_transduce"], capture_output=True,
                       text=True)
    assert r.returncode == 2 and "--asr_task must be asr or asr_transducer, got 'asr_transduce'" in r.stderr
    r = subprocess.run(["bash", str(RECIPE / "run.sh"), "--no_such_option", "1"], capture_output=True, text=True)
    assert r.returncode == 2 and "unknown option --no_such_option" in r.stderr
    r = subprocess.run(["bash", str(RECIPE / "run.sh")], capture_output=True, text=True)
    assert r.returncode == 2 and "give --librispeech_dir DIR (or --mini)" in r.stderr
