"""The run's identity and results, given to every tracker the config selects (`logger=`).

- names: TensorBoard's run folder `<run>/tensorboard/<name>`, MLflow's run name, W&B's name,
  `group` (the sweep) and `job_type` (trial or train), each unless the config sets its own;
- tags: sweep, trial, git commit, data fingerprint, where it ran (MLflow tags, W&B tags and
  config, TensorBoard's HParams session group);
- hyperparameters: the curated set of `identity.hparams` to TensorBoard's HParams plugin and to
  MLflow's params (the full resolved config as the MLflow artifact `config.yaml`); the full
  config to W&B and the CSV logger;
- results: `objective` and `best/<val figure>` (the kept epoch's) to every tracker but the CSV
  (metrics.json has them), also W&B's summary; TensorBoard's session is closed as done;
- MLflow: a sweep's trials are nested under one parent run per sweep (MLflow's convention for
  tuning), found by the tag `sweep_key` or created by the first trial; each trial logs its
  objective on the parent (`trial_objective`, step = trial) and the best so far (`objective`).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

from bincount.config.hydra import instantiate
from bincount.training import identity

log = logging.getLogger("bincount")
PARENT_TAG = "mlflow.parentRunId"  # MLflow's nesting: the UI shows the run under its parent


def _kind(logger) -> str:
    return type(logger).__name__


def logger_kwargs(kind: str, node: DictConfig, ident: identity.Identity) -> dict:
    """What a tracker's constructor gets from the identity, where its config leaves it unset."""
    kw: dict = {}
    if kind == "TensorBoardLogger" and node.get("version") is None:
        kw["version"] = ident.folder
    elif kind == "MLFlowLogger":
        if node.get("run_name") is None:
            kw["run_name"] = ident.name
        role = "trial" if ident.sweep else "run"
        kw["tags"] = {**ident.tags(), "role": role, **(node.get("tags") or {})}
    elif kind == "WandbLogger":
        if node.get("name") is None:
            kw["name"] = ident.name
        if node.get("group") is None and ident.sweep:
            kw["group"] = ident.sweep
        if node.get("job_type") is None:
            kw["job_type"] = ident.job_type
        kw["tags"] = [*(node.get("tags") or []), *wandb_tags(ident)]
    return kw


def wandb_tags(ident: identity.Identity) -> list[str]:
    """`sweep:grid-211238`, `trial:3`, ... (W&B tags are short strings: 64 characters)."""
    skip = {"sweep_key"}
    return [f"{k}:{v}"[:64] for k, v in ident.tags().items() if k not in skip]


def build(node: DictConfig | None, ident: identity.Identity) -> list:
    """Instantiate the `logger` node's trackers, named and tagged by `ident`."""
    if not node:
        return []
    out = []
    for v in node.values():
        if isinstance(v, DictConfig) and "_target_" in v:
            kind = str(v._target_).rsplit(".", 1)[-1]
            out.append(instantiate(v, _convert_="all", **logger_kwargs(kind, v, ident)))
    return out


class Tracking(pl.Callback):
    """Starts the trackers' records once the data is loaded (its fingerprint is a tag)."""

    def __init__(self, ident: identity.Identity, cfg: DictConfig, run: Path):
        self.identity = ident
        self.cfg = cfg
        self.run = Path(run)
        self.started = False

    def setup(self, trainer, pl_module, stage: str) -> None:
        if self.started or stage != "fit":
            return
        self.started = True
        rows = getattr(trainer.datamodule, "rows", None)
        if rows:
            self.identity = self.identity.with_data(identity.data_fingerprint(rows))
        if trainer.is_global_zero:
            start(trainer.loggers, self.identity, self.cfg, self.run)


def start(loggers: list, ident: identity.Identity, cfg: DictConfig, run: Path) -> None:
    full = OmegaConf.to_container(cfg, resolve=True)
    curated = identity.hparams(cfg, ident)
    for lg in loggers:
        kind = _kind(lg)
        if kind == "TensorBoardLogger":
            _tensorboard_start(lg, ident, curated)
        elif kind == "MLFlowLogger":
            _mlflow_start(lg, ident, curated, run)
        elif kind == "WandbLogger":
            lg.log_hyperparams({**full, "identity": {"name": ident.name, **ident.tags()}})
            if ident.data:
                lg.experiment.tags = (*lg.experiment.tags, f"data:{ident.data}")
        else:
            lg.log_hyperparams(full)


def results_metrics(results: dict) -> dict[str, float]:
    """`objective` and `best/<figure>` of metrics.json's results (the kept epoch's)."""
    out = {"objective": float(results["objective"]["value"])}
    out.update({f"best/{k}": float(v) for k, v in (results.get("val") or {}).items()})
    if results.get("best_epoch") is not None:
        out["best/epoch"] = float(results["best_epoch"])
    return out


def finish(
    loggers: list, ident: identity.Identity, results: dict, step: int, mode: str = "max"
) -> None:
    """Give every tracker the run's objective and best figures; a tracker that fails says so
    in a warning (the run's files are written by now)."""
    figures = results_metrics(results)
    for lg in loggers:
        kind = _kind(lg)
        if kind == "CSVLogger":
            continue
        try:
            lg.log_metrics(figures, step=step)
            if kind == "TensorBoardLogger":
                _tensorboard_finish(lg)
            elif kind == "MLFlowLogger" and ident.sweep:
                _mlflow_parent_finish(lg, ident, figures["objective"], mode)
            elif kind == "WandbLogger":
                lg.experiment.summary.update(figures)
            lg.save()
        except Exception as e:  # a tracker must not fail a finished run
            log.warning("%s: could not record the results (%s: %s)", kind, type(e).__name__, e)


# ------------------------------------------------------------------ TensorBoard


def _hparams_summary(tag: str, **data):
    """A summary of TensorBoard's HParams plugin (built without TensorFlow)."""
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.plugins.hparams import metadata, plugin_data_pb2

    content = plugin_data_pb2.HParamsPluginData(version=metadata.PLUGIN_DATA_VERSION, **data)
    value = Summary.Value(
        tag=tag, metadata=metadata.create_summary_metadata(content), tensor=metadata.NULL_TENSOR
    )
    return Summary(value=[value])


def _tensorboard_start(lg, ident: identity.Identity, curated: dict) -> None:
    """Hyperparameters as a session of the HParams plugin. No experiment summary: with
    several (each run's own), the plugin would show one chosen arbitrarily; without, it
    gathers every session's hyperparameters and scalars under the log folder."""
    import time

    from tensorboard.plugins.hparams import metadata, plugin_data_pb2

    lg.log_hyperparams(curated)  # hparams.yaml (no metrics given: no summary of Lightning's)
    info = plugin_data_pb2.SessionStartInfo(group_name=ident.name, start_time_secs=time.time())
    for k, v in curated.items():
        if isinstance(v, bool):
            info.hparams[k].bool_value = v
        elif isinstance(v, int | float):
            info.hparams[k].number_value = v
        else:
            info.hparams[k].string_value = str(v)
    summary = _hparams_summary(metadata.SESSION_START_INFO_TAG, session_start_info=info)
    lg.experiment._get_file_writer().add_summary(summary)
    lg.experiment.flush()


def _tensorboard_finish(lg) -> None:
    import time

    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    info = plugin_data_pb2.SessionEndInfo(status=api_pb2.STATUS_SUCCESS, end_time_secs=time.time())
    summary = _hparams_summary(metadata.SESSION_END_INFO_TAG, session_end_info=info)
    lg.experiment._get_file_writer().add_summary(summary)
    lg.experiment.close()  # its writer thread ends here, not with the sweep's last trial


# ------------------------------------------------------------------ MLflow


def sweep_key(ident: identity.Identity) -> str:
    """The tag value that finds a sweep's parent run (a hash: no quoting in MLflow's filter)."""
    return hashlib.sha1(str(ident.sweep_key or ident.sweep).encode()).hexdigest()[:16]


def _mlflow_start(lg, ident: identity.Identity, curated: dict, run: Path) -> None:
    from mlflow.entities import Param, RunTag

    client, run_id = lg.experiment, lg.run_id
    params = [Param(k, str(v)[:500]) for k, v in curated.items()]
    tags = [RunTag(k, v) for k, v in ident.tags().items()]
    if ident.sweep:
        try:
            parent = _mlflow_parent(client, lg.experiment_id, ident)
            tags += [RunTag(PARENT_TAG, parent), RunTag("sweep_key", sweep_key(ident))]
        except Exception as e:  # the trial is still logged, only not nested
            log.warning("MLflow: no parent run for sweep %s (%s)", ident.sweep, e)
    client.log_batch(run_id, params=params, tags=tags)
    config = run / "config.yaml"
    if config.is_file():
        client.log_artifact(run_id, str(config))


def _mlflow_parent(client, experiment_id: str, ident: identity.Identity) -> str:
    """The sweep's parent run: found by its `sweep_key` tag, else created (by the first trial)."""
    key = sweep_key(ident)
    found = client.search_runs(
        [experiment_id],
        filter_string=f"tags.sweep_key = '{key}' and tags.role = 'sweep'",
        max_results=1,
    )
    if found:
        parent = found[0].info.run_id
        client.update_run(parent, status="RUNNING")
        return parent
    tags = {"sweep": ident.sweep, "sweep_key": key, "role": "sweep", "where": ident.where}
    if ident.git_commit:
        tags["git_commit"] = ident.git_commit
    if ident.sweep_key and ident.where == "local":
        tags["sweep_dir"] = ident.sweep_key
    return client.create_run(experiment_id, run_name=ident.sweep, tags=tags).info.run_id


def _mlflow_parent_finish(lg, ident: identity.Identity, value: float, mode: str) -> None:
    """This trial's objective on the parent, the best so far as its `objective`; the parent
    ends FINISHED after each trial (the next one sets it running again)."""
    client = lg.experiment
    tags = client.get_run(lg.run_id).data.tags
    parent = tags.get(PARENT_TAG)
    if not parent:
        return
    before = client.get_run(parent).data.metrics.get("objective")
    pick = min if mode == "min" else max
    best = value if before is None else pick(before, value)
    step = ident.trial or 0
    client.log_metric(parent, "trial_objective", value, step=step)
    client.log_metric(parent, "objective", best, step=step)
    client.set_terminated(parent, "FINISHED")
