"""Bad settings in `python train.py` overrides: one clear line and exit 2, before any training
(the check runs in a torch-free module from the Hydra main); every numeric and enum key of every
config option has a check (a walk over the composed configs tries bad values for each)."""

from __future__ import annotations

import os
from fnmatch import fnmatchcase

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict
from runner import run_train

from bincount import validate
from bincount.config import config_dir
from bincount.errors import BincountError


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ("lr=abc", "lr='abc' is not a number"),
        ("lr=-1", "lr=-1 must be above 0"),
        ("batch_size=-3", "batch_size=-3 must be at least 1"),
        ("trainer.max_epochs=0", "trainer.max_epochs=0 must be at least 1"),
        ("data.image_size=7", "data.image_size=7 must be at least 32"),
        ("optimizer.weight_decay=-0.1", "optimizer.weight_decay=-0.1 must be at least 0"),
        ("data.num_workers=two", "data.num_workers='two' is not a whole number"),
    ],
)
def test_a_bad_number_is_one_line_before_training(tmp_path, override, words):
    run = tmp_path / "run"
    proc = run_train(override, f"hydra.run.dir={run}", timeout=120)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
    assert words in lines[0] and "e.g." in lines[0]
    assert not (run / "config.yaml").exists()  # train() writes it first: it never started


# --- every numeric and enum key of the configs has a check ---------------------------------


# groups whose options are composed one at a time over the defaults (hydra, sagemaker and sweep
# are not training settings; sagemaker/sweep keys are checked by bincount.sagemaker)
GROUPS = (
    "callbacks",
    "data",
    "debug",
    "experiment",
    "logger",
    "model",
    "optimizer",
    "runner",
    "scheduler",
    "trainer",
)
# keys that are neither numbers nor enums: names, paths, metric names, run-time fields
FREE = (
    "paths.*",
    "task_name",
    "optimized_metric",
    "ckpt_path",
    "*._target_",
    "*._partial_",
    "data.source",
    "data.cache_dir",
    "data.file_list",
    "data.counts",
    "data.split",
    "data.train_on",
    "model.net.counts",
    "model.net.backbone",
    "model.net.weights",
    "model.optimizer",
    "model.scheduler",
    "trainer.strategy",
    "trainer.profiler.*",
    "trainer.default_root_dir",
    "callbacks.*.dirpath",
    "callbacks.*.filename",
    "callbacks.*.monitor",
    "callbacks.model_checkpoint.auto_insert_metric_name",
    "callbacks.model_checkpoint.enable_version_counter",
    "logger.*",
    "runner.members.*",
    "callbacks.health.rules.*.enabled",
    "scheduler",
    "optimizer.nesterov",
)


def _options():
    for group in GROUPS:
        for name in sorted(os.listdir(config_dir() / group)):
            if name.endswith(".yaml"):
                yield f"{group}={name[:-5]}"


def _composed():
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        for option in _options():
            yield option, compose("train", overrides=[option])


def _settings(cfg) -> dict:
    """Every leaf of a config whose value is a number, a boolean or a string (resolved)."""
    out = {}
    for key in validate._leaves(cfg):
        try:
            value = OmegaConf.select(cfg, key, throw_on_missing=False)
        except Exception:  # ${hydra:...} outside a run
            continue
        if isinstance(value, bool | int | float | str) and not isinstance(
            value, DictConfig | ListConfig
        ):
            out[key] = value
    return out


def _free(key: str) -> bool:
    return any(fnmatchcase(key, p) and key.count(".") >= p.count(".") for p in FREE)


def _bad_values(rule) -> list:
    if isinstance(rule, validate.Choice):
        return ["sideways", 7]
    bad = ["abc", float("nan")]
    if rule.low is not None and not rule.also:
        bad.append(rule.low if rule.low_open else rule.low - 1)
    if rule.high is not None:
        bad.append(rule.high if rule.high_open else rule.high * 10 + 1)
    if rule.whole:
        bad.append(2.5)
    return bad


def test_every_numeric_and_enum_key_of_every_option_has_a_check():
    seen: set[str] = set()
    unchecked = set()
    tried = 0
    for option, cfg in _composed():
        validate.check_train_config(cfg)  # every shipped option passes
        for key, value in _settings(cfg).items():
            rule = validate.rule_for(key)
            if rule is None:
                if not _free(key) and (not isinstance(value, str) or key.endswith("mode")):
                    unchecked.add(f"{key} ({option})")
                continue
            if key in seen:
                continue
            seen.add(key)
            for bad in _bad_values(rule):
                broken = cfg.copy()
                with open_dict(broken):
                    OmegaConf.update(broken, key, bad, merge=False)
                with pytest.raises(BincountError) as e:
                    validate.check_train_config(broken)
                tried += 1
                message = str(e.value)
                node = key.rsplit(".", 1)[-1]
                assert "\n" not in message and ("set " in message or ": " in message)
                assert message.startswith((f"{key}=", f"{node}=")), (key, bad, message)
    assert not unchecked, f"numeric or enum keys without a check: {sorted(unchecked)}"
    assert len(seen) >= 60 and tried >= 150, (len(seen), tried)


def test_validate_spells_the_models_and_datas_values():
    from bincount import preprocess
    from bincount.models import network

    assert set(validate.PRIORS) == set(network.PRIORS)
    assert set(validate.TTAS) == set(network.TTA_VIEWS)
    assert set(validate.RESIZES) == set(preprocess.RESIZES)
    from bincount.models import heads

    assert set(validate.HEADS) == set(heads.KINDS)


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ("trainer.max_epochs=1e9", "trainer.max_epochs=1000000000.0 is not a whole number"),
        ("trainer.max_epochs=1000000", "must be at most 100000"),
        ("trainer.max_epochs=-1", "trains without end"),
        ("data.counts=[]", "data.counts=[] is empty"),
        ("data.counts=[1,1]", "names a count twice"),
        ("optimized_mode=sideways", "optimized_mode='sideways' is not one of max, min"),
        ("data.split=[1,0,0]", "leaves no validation split"),
        ("data.split=[0.5,0.2,0.2]", "adds up to 0.9, not 1"),
        ("ckpt_path=/no/such/last.ckpt", "ckpt_path=/no/such/last.ckpt does not exist"),
        ("ckpt_path=", "ckpt_path= is not a path"),
        ("trainer.devices=sideways", "trainer.devices='sideways' is not a whole number"),
        ("trainer.strategy=sideways", "trainer.strategy=sideways is not a strategy"),
        # the paths of before issue 25
        ("model.head=ordinal", "model.head is a setting of the network now: set model.net.head"),
        ("+model.tta=flips", "model.tta is a setting of the network now: set model.net.tta"),
    ],
)
def test_a_bad_setting_is_one_line(tmp_path, override, words):
    proc = run_train(override, f"hydra.run.dir={tmp_path / 'run'}", timeout=120)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
    assert words in lines[0]


@pytest.mark.parametrize("damage", ["truncated", "empty", "folder", "text"])
def test_a_damaged_ckpt_path_is_one_line(tmp_path, damage):
    import zipfile

    ckpt = tmp_path / "last.ckpt"
    if damage == "folder":
        ckpt.mkdir()
    elif damage == "text":
        ckpt.write_text("not a checkpoint")
    else:
        with zipfile.ZipFile(ckpt, "w") as z:  # torch.save writes a zip
            z.writestr("archive/data.pkl", b"x" * 10000)
        data = ckpt.read_bytes()
        ckpt.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"")
    proc = run_train(f"ckpt_path={ckpt}", f"hydra.run.dir={tmp_path / 'run'}", timeout=120)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    words = "is not a file" if damage == "folder" else "is not a complete checkpoint"
    assert f"ckpt_path={ckpt} {words}" in lines[0]


def test_a_setting_given_to_a_library_call_is_checked_by_the_same_rule():
    validate.check_setting("batch_size", 8)
    with pytest.raises(BincountError, match=r"^batch_size=0 must be at least 1: set a batch size"):
        validate.check_setting("batch_size", 0)
    with pytest.raises(BincountError, match=r"^--batch-size=0 must be at least 1: set --batch"):
        validate.check_setting("batch_size", 0, "--batch-size", "--batch-size 32")
    with pytest.raises(KeyError):
        validate.check_setting("no.such.key", 1)


def test_a_network_setting_at_its_old_path_is_named_with_its_new_one():
    fine = ["model=resnet18", "model.label_smoothing=0.1", "model.net.head=ordinal", "--cfg"]
    validate.check_moved_overrides(fine, config_dir())
    for old in ("model.drop_rate=0.1", "+model.head_dropout=0.1", "~model.weights"):
        key = old.lstrip("+~").split("=")[0].removeprefix("model.")
        if "=" not in old:  # a deletion names no value: Hydra's own message
            validate.check_moved_overrides([old], config_dir())
            continue
        with pytest.raises(BincountError, match=rf"set model\.net\.{key} instead"):
            validate.check_moved_overrides([old], config_dir())


def test_a_progressive_stage_past_the_last_epoch_is_said(make_cfg, caplog):
    """A 4-epoch run of best_single with the slower host's schedule (its 224 px stage starts at
    epoch 5) would never train at 224 px: a warning names a schedule that fits; the ensemble's
    4-epoch members move the stage."""
    slow = "data.progressive=[[0,160],[5,224]]"
    validate.check_train_config(make_cfg("experiment=best_single", slow))
    assert "never trains" not in caplog.text
    validate.check_train_config(make_cfg("experiment=best_single", slow, "trainer.max_epochs=4"))
    assert "stage [5, 224] starts at epoch 5 (from 0) but trainer.max_epochs=4" in caplog.text
    assert "data.progressive=[[0,160],[3,224]]" in caplog.text
    caplog.clear()
    fits = make_cfg(
        "experiment=best_single", "trainer.max_epochs=4", "data.progressive=[[0,160],[2,224]]"
    )
    validate.check_train_config(fits)
    assert "never trains" not in caplog.text
    for member in make_cfg("experiment=ensemble").runner.members.values():
        assert "data.progressive=[[0,160],[2,224]]" in member
