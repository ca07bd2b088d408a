"""`stw ensemble RUN_ID RUN_ID ...`: one model that averages the forecasts, or the class probabilities, of finished
runs of one dataset, scored on the same test windows as any run and tracked as its own MLflow run.

Members are loaded as `stw predict` loads a run (experiments/predict.py: the best checkpoint read with
weights_only=True, the run's fitted preprocessing). They must read the same data the same way: the same dataset,
data files and shaping options, except the lookback, which may differ. The ensemble reads the windows of the member
that looks back furthest (the reference) and gives every member the last `data.lookback` rows of each window: that
is exactly the window the member itself would read for the same target rows, so forecasts are aligned by the rows
(times) they forecast. The scaler is fitted on the training rows, whatever the lookback, so members share it; their
fitted preprocessing is checked to be identical all the same.

The ensemble is the reference's own LightningModule (ForecastingModule or ClassificationModule) with its model
replaced by the members' mean: validation, test metrics, naive baselines, skills and figures come from the same
code as every run's. Its run (role `ensemble`) holds the member run IDs as a tag and in ensemble.json; `stw
predict` and `stw reproduce` accept it (load_ensemble).
"""

import argparse
import contextlib
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import MLFlowLogger
from torch import Tensor, nn

from datamodules import StwDataModule, dataset_class
from datamodules.errors import ConfigError, RunError
from experiments.config import datamodule_for
from experiments.devices import check_placement, placement_tags
from experiments.logged_run import CHECKPOINT, CONFIG, FINGERPRINT, PREPROCESSING, LoggedRun, fetch_run
from experiments.predict import load_module
from experiments.task_reports import TASK_REPORTS
from experiments.tracking import Tag, TrackedRun, final_metrics, provenance_tags
from lightning_modules import TASKS

ROLE = "ensemble"
MEMBERS_FILE = "ensemble.json"
# Options that may differ between members: the lookback only changes how far back a window reads, not its targets.
FREE_OPTIONS = ("lookback",)


class MeanOfMembers(nn.Module):
    """The members' mean output for one batch of the reference's inputs [B, L, ...]. A member that looks back
    `lookback` steps reads the last `lookback` of them (None: the whole input). With `probabilities` the members'
    class probabilities are averaged and returned as log-probabilities, which the classification module treats
    as logits: their softmax is the averaged probabilities again."""

    def __init__(self, members: list[nn.Module], lookbacks: list[int | None], probabilities: bool) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.lookbacks, self.probabilities = lookbacks, probabilities

    def forward(self, x: Tensor, start: Tensor | None = None) -> Tensor:
        """`start`, each window's first row in the series (forecasts only), moves on by the steps a shorter
        member skips, so a member with a residual cycle reads its own window's phase."""
        outputs = []
        for member, lookback in zip(self.members, self.lookbacks, strict=True):
            # Contiguous, as the member's own test batches were (predict passes contiguous windows too).
            inputs = x[:, -lookback:].contiguous() if lookback is not None else x
            out = member(inputs) if start is None else member(inputs, start + x.shape[1] - inputs.shape[1])
            outputs.append(out.softmax(dim=-1) if self.probabilities else out.contiguous())
        mean = torch.stack(outputs).mean(dim=0)
        return mean.log() if self.probabilities else mean


@dataclass
class Member:
    """One member run as loaded from the store: what defines its data, and its trained module."""

    run_id: str
    config: dict[str, Any]
    fingerprint: dict[str, Any]
    preprocessing: dict[str, Any]
    module: pl.LightningModule

    @property
    def lookback(self) -> int | None:
        return self.config["data"].get("lookback")


def load_member(run: LoggedRun) -> Member:
    """A finished, tested run's config, data description and best checkpoint; refuses what cannot be a member."""
    if run.tags.get(Tag.ROLE) == ROLE:
        raise RunError(f"run {run.run_id} is itself an ensemble; give its member runs instead "
                       f"({run.tags.get(Tag.ENSEMBLE_MEMBERS, '?').replace(',', ' ')})")  # fmt: skip
    run.require(CONFIG, FINGERPRINT, PREPROCESSING, CHECKPOINT)
    if not run.final_metrics():
        raise RunError(f"run {run.run_id} logged no test metrics ({run.tags.get(Tag.TRIAL_STATE, run.run.info.status)})"
                       "; an ensemble's members must be runs that finished testing")  # fmt: skip
    config = run.config()
    task = dataset_class(config["data"]["name"]).task
    return Member(
        run.run_id, config, run.json(FINGERPRINT), run.json(PREPROCESSING), load_module(run.download(CHECKPOINT), task)
    )


def shaping_options(member: Member) -> dict[str, Any]:
    return {k: v for k, v in member.fingerprint.get("options", {}).items() if k not in FREE_OPTIONS}


def fitted(member: Member) -> dict[str, Any]:
    """What the member's preprocessing fitted (scalers, tokenizer, class names); its options are compared above,
    and its row clock follows from the data, whose fingerprint is (runs logged before it existed lack one)."""
    return {k: v for k, v in member.preprocessing.items() if k not in ("options", "row_clock")}


def check_members(members: list[Member]) -> None:
    """Every member must forecast (or classify) the same test targets from the same data as the first one."""
    first = members[0]
    for other in members[1:]:
        pair = f"runs {first.run_id} and {other.run_id}"
        name, other_name = first.config["data"]["name"], other.config["data"]["name"]
        if name != other_name:
            raise RunError(f"{pair} are on different datasets (data.name {name!r} and {other_name!r}); an ensemble "
                           "averages predictions of one dataset's test items: give runs of one dataset")  # fmt: skip
        files, other_files = first.fingerprint.get("files", {}), other.fingerprint.get("files", {})
        for file in sorted(files.keys() | other_files.keys()):
            if files.get(file) != other_files.get(file):
                raise RunError(f"{pair} read different data: file {file} has sha256 {files.get(file, '(absent)')} "
                               f"in the first and {other_files.get(file, '(absent)')} in the second")  # fmt: skip
        options, other_options = shaping_options(first), shaping_options(other)
        for option in sorted(options.keys() | other_options.keys()):
            if options.get(option) != other_options.get(option):
                raise RunError(f"{pair} differ in data.{option} ({options.get(option, '(unset)')!r} and "
                               f"{other_options.get(option, '(unset)')!r}), so their test targets differ; an ensemble "
                               f"needs the same data options (only {', '.join(FREE_OPTIONS)} may differ)")  # fmt: skip
        if fitted(first) != fitted(other):
            raise RunError(f"{pair} were fitted with different preprocessing (their {PREPROCESSING} differ), so the "
                           "same raw rows would reach them as different inputs; give runs trained on the same rows")  # fmt: skip


@dataclass
class Ensemble:
    """The members, the reference (the member looking back furthest), its datamodule and the averaging module."""

    members: list[Member]
    reference: Member
    datamodule: StwDataModule
    module: pl.LightningModule

    @property
    def run_ids(self) -> list[str]:
        return [member.run_id for member in self.members]

    def title(self) -> str:
        return f"ensemble of {len(self.members)} runs on {self.reference.config['data']['name']}"


def assemble(members: list[Member], data_root: str | None = None) -> Ensemble:
    """The averaging module over `members` (checked), on the reference's datamodule with its fitted preprocessing.
    The data is read from `data_root` (default $STW_DATA_DIR): a stored data.root is never followed, as in
    `stw reproduce`."""
    from experiments.reproduce import in_this_data_folder

    check_members(members)
    reference = max(members, key=lambda member: member.lookback or 0)  # the first one on ties
    config, _ = in_this_data_folder(reference.config, data_root)
    datamodule = datamodule_for(config)
    datamodule.load_state_dict(reference.preprocessing)
    saved = reference.module.hparams
    module = TASKS[datamodule.task](saved["config"], saved["spec"])
    windowed = reference.lookback is not None
    module.model = MeanOfMembers([member.module.model for member in members],
                                 [member.lookback if windowed else None for member in members],
                                 probabilities=datamodule.task == "classify")  # fmt: skip
    return Ensemble(members, reference, datamodule, module.eval())


def load_members(run_ids: list[str], tracking_uri: str | None) -> list[Member]:
    if len(run_ids) < 2 or len(set(run_ids)) != len(run_ids):
        raise ConfigError(f"an ensemble needs two or more different runs; got {' '.join(run_ids) or 'none'}")
    members = []
    for run_id in run_ids:
        with fetch_run(run_id, tracking_uri) as run:
            members.append(load_member(run))
    return members


def load_ensemble(run: LoggedRun, data_root: str | None = None) -> Ensemble:
    """A logged ensemble run rebuilt from its members (ensemble.json), for `stw predict` and `stw reproduce`."""
    run.require(MEMBERS_FILE)
    return assemble(load_members(run.json(MEMBERS_FILE)["members"], run.tracking_uri), data_root)


def is_ensemble(run: LoggedRun) -> bool:
    return run.tags.get(Tag.ROLE) == ROLE


@dataclass
class EnsembleResult:
    run_id: str
    metrics: dict[str, float]  # validation and test scores of the averaged predictions
    status: str


def check_same_data(ensemble: Ensemble) -> None:
    """Read the reference's data here and refuse it when it is not what the members were trained and tested on."""
    from experiments.reproduce import data_differences

    datamodule, reference = ensemble.datamodule, ensemble.reference
    datamodule.prepare_data()
    datamodule.setup()
    if details := data_differences(reference.fingerprint, datamodule.fingerprint()):
        raise RunError(f"the data read here is not the data run {reference.run_id} was trained on: "
                       f"{'; '.join(details)}; point --data-root or $STW_DATA_DIR at the run's files")  # fmt: skip


def scoring_config(reference: dict[str, Any]) -> dict[str, Any]:
    """The reference's config scored in one process: its test and validation limits and device type, not its
    data-parallel layout (the members' forward passes are all it runs)."""
    return {**reference, "trainer": {**reference["trainer"], "devices": 1, "strategy": "auto", "num_nodes": 1}}


def log_ensemble(ensemble: Ensemble, tracking_uri: str | None, *, parent_run_id: str | None = None,
                 tags: dict[str, str] | None = None, quiet: bool = True) -> EnsembleResult:  # fmt: skip
    """Score `ensemble` on the reference's validation and test windows as its own tracked run."""
    from experiments.train import build_trainer, quiet_lightning, record_data

    config = scoring_config(ensemble.reference.config)
    where = check_placement(config)
    name = config["data"]["name"]
    run_tags = {Tag.ROLE: ROLE, Tag.DATA: name, Tag.FAMILY: ROLE, Tag.ENSEMBLE_MEMBERS: ",".join(ensemble.run_ids),
                **provenance_tags(), **placement_tags(where), **(tags or {})}  # fmt: skip
    if parent_run_id:
        run_tags[Tag.PARENT] = parent_run_id
    params = {"ensemble.size": len(ensemble.members), "ensemble.reference": ensemble.reference.run_id}
    datamodule, module = ensemble.datamodule, ensemble.module
    check_same_data(ensemble)
    metrics: dict[str, float] = {}
    with (
        tempfile.TemporaryDirectory(prefix="stw-ensemble-") as tmp,
        TrackedRun(tracking_uri, name, f"ensemble-{len(ensemble.members)}", run_tags, params) as run,
        quiet_lightning(quiet),
    ):
        workdir = Path(tmp)
        members = {"members": ensemble.run_ids, "reference": ensemble.reference.run_id,
                   "lookbacks": {member.run_id: member.lookback for member in ensemble.members}}  # fmt: skip
        run.log_text(json.dumps(members, indent=2), MEMBERS_FILE)
        record_data(run, name, datamodule)  # the reference's fingerprint and preprocessing, which every member shares
        run.log_metric("model_parameters", sum(p.numel() for p in module.parameters()))
        logger = MLFlowLogger(tracking_uri=run.tracking_uri, run_id=run.run_id, synchronous=False)
        trainer = build_trainer(config, where, logger, workdir / "checkpoints", [], quiet)
        for scores in (*trainer.validate(module, datamodule=datamodule, verbose=False),
                       *trainer.test(module, datamodule=datamodule, verbose=False)):  # fmt: skip
            metrics.update({key: float(value) for key, value in scores.items()})
        report = TASK_REPORTS[datamodule.task]
        for make in (report.from_model, report.from_test):
            for path in make(datamodule, module, workdir, ensemble.title()) if make else ():
                run.log_file(path)
    return EnsembleResult(run.run_id, metrics, run.status)


def ensemble_main(args: argparse.Namespace) -> int:
    from experiments.verdicts import verdict_lines

    ensemble = assemble(load_members(args.run_ids, args.tracking_uri), args.data_root)
    result = log_ensemble(ensemble, args.tracking_uri, quiet=args.quiet)
    print(f"run {result.run_id}: ensemble of {' '.join(ensemble.run_ids)} (experiment "
          f"{ensemble.reference.config['data']['name']}):")  # fmt: skip
    final = final_metrics(result.metrics)
    for name, value in sorted(final.items()):
        print(f"  {name:38s} {value:.6g}")
    if verdicts := verdict_lines(final):
        print("on the test set, the ensemble is:")
        for line in verdicts:
            print(f"  {line}")
    if result.status != "FINISHED":
        print(f"stw ensemble: the run closed {result.status} (see its stw.close_error tag)", file=sys.stderr)
        return 1
    return 0


def reproduce_ensemble(run: LoggedRun, args: argparse.Namespace) -> int:
    """`stw reproduce` of an ensemble: every member is checked first (a refusal costs seconds), then each is
    retrained and compared as `stw reproduce` compares any run, and the retrained members form a new ensemble
    (tagged stw.reproduces) whose final metrics are compared with the original's."""
    from experiments.reproduce import ReproduceRefused, Reproduction, compare_final_metrics, planned, retrain
    from experiments.train import is_quiet

    run.require(MEMBERS_FILE)
    if not run.final_metrics():
        raise ReproduceRefused(f"ensemble run {run.run_id} logged no final test metrics ({run.run.info.status}), so "
                               "there is nothing to compare a reproduction with")  # fmt: skip
    with contextlib.ExitStack() as stack:
        members = [
            stack.enter_context(fetch_run(member, run.tracking_uri)) for member in run.json(MEMBERS_FILE)["members"]
        ]
        plans = [planned(member, args) for member in members]
        reproductions = [retrain(member, args, plan) for member, plan in zip(members, plans, strict=True)]
    members_reproduced = [reproduction.report() for reproduction in reproductions]
    ensemble = assemble(load_members([r.run_id for r in reproductions], run.tracking_uri), args.data_root)
    result = log_ensemble(ensemble, run.tracking_uri, tags={Tag.REPRODUCES: run.run_id},
                          quiet=is_quiet(args.quiet or None))  # fmt: skip
    reproduced = run.client.get_run(result.run_id).data.metrics
    whole = Reproduction(run.run_id, result.run_id, compare_final_metrics(run.final_metrics(), reproduced),
                         max(r.tolerance for r in reproductions), next((r.devices for r in reproductions if r.devices), None))  # fmt: skip
    return 0 if whole.report("ensemble") and all(members_reproduced) else 1
