"""Running a study: train every (arm, seed) not yet done, score it, write the table.

The runs live in ``<out>/<study>/<arm>/seed<k>/`` and are the trainer's own
resumable workdirs: a finished run is skipped, a killed one resumes from its
checkpoint; a study may score another study's run of the same config
(:attr:`~kreid.reproduction.studies.Arm.reuse`) instead of training it again.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os

import numpy as np

from kreid.reproduction.studies import DEFAULT_STEPS, STUDIES, TTA_ORDER, Study, base_config
from kreid.reproduction.tables import run_dir, summarise, write_outputs

def _distractor_records(data_root: str, smoke: bool, dataset) -> list:
    """Images of people not in the test set, as gallery entries that match nothing."""
    from kreid.data import datasets

    if smoke:
        records = list(dataset.train)
    else:
        records = []
        for name, folder in (("viper", "VIPeR"), ("prid", "PRID"), ("grid", "GRID"),
                             ("ilids", "iLIDS"), ("3dpes", "3DPeS")):
            ds = datasets.load(name, os.path.join(data_root, "peta", folder))
            records += ds.train + ds.query + ds.gallery
    # a pid no query has and a camera of its own: never a match, never junk
    return [dataclasses.replace(r, pid=10 ** 6 + i, camid=10 ** 4) for i, r in
            enumerate(sorted(records, key=lambda r: r.path))]


def _metrics(res: dict) -> dict:
    out = {"mAP": float(res.get("market", res)["mAP"]),
           "rank1": float(res.get("market", res)["cmc"][0])}
    if "market" in res:                       # CUHK03 single-gallery-shot
        out["sgs_rank1"] = float(res["cmc"][0])
    return out


def score_run(study: Study, trained, data_root: str, smoke: bool) -> dict:
    """The arm's metrics (+ its analyses' rows) for one trained model (the
    :class:`kreid.training.trainer.TrainResult` of its run)."""
    from kreid.evaluation.embed import embed_records
    from kreid.evaluation.runner import score

    embedder = trained.embedder
    if study.split == "val":
        q_rec, g_rec = trained.validation
        protocol = "market"
    else:
        q_rec, g_rec = trained.dataset.query, trained.dataset.gallery
        protocol = "cuhk03_sgs" if trained.dataset.name == "cuhk03" else "market"

    def embed(records, tta="none"):
        return embed_records(embedder, records, tta, progress=False)

    def scored(q, g, **kw):
        return _metrics(score(q, g, study.metric, protocol, **kw)[0])

    q, g = embed(q_rec), embed(g_rec)
    out = {"main": scored(q, g)}
    if "tta" in study.analyses:
        out["tta"] = {"none": out["main"]}
        for mode in TTA_ORDER[1:]:
            out["tta"][mode] = scored(embed(q_rec, mode), embed(g_rec, mode))
    if "xqda" in study.analyses:
        from kreid.evaluation import xqda

        train = embed(trained.train_records)
        model = xqda.fit(train.embeddings, train.pid)
        out["xqda"] = scored(q, g, distmat=model.distance(q.embeddings, g.embeddings))
        out["xqda"]["dims"] = int(model.W.shape[1])
    if "distractors" in study.analyses:
        extra = embed(_distractor_records(data_root, smoke, trained.dataset))
        order = np.random.default_rng(0).permutation(len(extra.pid))
        sizes = sorted({0, *[int(len(order) * f) for f in (0.125, 0.25, 0.5, 1.0)]})
        rows = []
        for n in sizes:
            pick = order[:n]
            grown = dataclasses.replace(
                g, embeddings=np.concatenate([g.embeddings, extra.embeddings[pick]]),
                pid=np.concatenate([g.pid, extra.pid[pick]]),
                camid=np.concatenate([g.camid, extra.camid[pick]]),
                trackid=np.concatenate([g.trackid, extra.trackid[pick]]),
                path=np.concatenate([g.path, extra.path[pick]]))
            rows.append(dict(scored(q, grown), gallery=int(len(grown.pid)), distractors=n))
        out["distractors"] = rows
    return out


def _done_with(path: str, key: str, steps: int) -> bool:
    """Whether ``path`` (a run's config.json or result.json) exists; one made with another
    step count (its ``key``) is refused: a run is never resumed or reused with another
    budget."""
    from kreid.errors import ConfigValueError

    if not os.path.exists(path):
        return False
    with open(path) as f:
        done = json.load(f).get(key)
    if done != steps:
        raise ConfigValueError(f"{path}: made with {done} steps, not --steps={steps}: "
                               "choose another --out")
    return True


def _train_and_score(study: Study, arm, seed: int, out_dir: str, data_root: str, steps: int,
                     smoke: bool, progress: bool) -> dict:
    """Train (or resume) one (arm, seed) run and score it."""
    from kreid.training.trainer import Trainer

    source, arm_ = study, arm
    if arm.reuse:                     # another study's run of the same config
        source = STUDIES[arm.reuse[0]]
        arm_ = next(a for a in source.arms if a.name == arm.reuse[1])
    config = base_config(source, data_root, steps, smoke, out_dir)
    arm_.apply(config)
    config.seed = int(seed)
    train_dir = run_dir(out_dir, source.name, arm_.name, seed)
    _done_with(os.path.join(train_dir, "config.json"), "total_steps", steps)
    if progress:
        print(f"[{study.name}] {arm.name}, seed {seed}: {steps} steps -> {train_dir}",
              flush=True)
    trained = Trainer(config, train_dir, progress=progress).run()
    result = score_run(study, trained, data_root, smoke)
    result.update(arm=arm.name, seed=int(seed), steps=int(trained.step),
                  train_losses={k: float(v) for k, v in trained.scalars.items()
                                if k.startswith("loss/")},
                  num_classes=len({r.label for r in trained.train_records}))
    return result


def run(name: str, out_dir: str, data_root: str, seeds=(0, 1, 2), steps: int = DEFAULT_STEPS,
        smoke: bool = False, arms: list[str] | None = None, progress: bool = True) -> dict:
    """Train and score every (arm, seed) of study ``name`` not yet done; write its table
    and figure; return the summary. ``arms``: run only these (the table still lists
    every arm that has results)."""
    import keras

    from kreid.errors import ConfigValueError
    from kreid.evaluation import reports

    if name not in STUDIES:
        raise ConfigValueError(f"--study: unknown study {name!r}; choose from "
                               f"{', '.join(STUDIES)} or all")
    study = STUDIES[name]
    unknown = sorted(set(arms or ()) - {a.name for a in study.arms if a.trained})
    if unknown:
        raise ConfigValueError(f"--arms: {unknown} not in study {name}: "
                               f"{', '.join(a.name for a in study.arms if a.trained)}")
    if smoke:
        from kreid.data import synthetic

        synthetic.generate(os.path.join(out_dir, "synthetic"), num_identities=48)
    for arm in study.arms:
        if not arm.trained or (arms and arm.name not in arms):
            continue
        for seed in seeds:
            workdir = run_dir(out_dir, name, arm.name, seed)
            result_path = os.path.join(workdir, "result.json")
            if _done_with(result_path, "steps", steps):
                continue
            result = _train_and_score(study, arm, seed, out_dir, data_root, steps, smoke,
                                      progress)
            os.makedirs(workdir, exist_ok=True)
            reports.write_json(result, result_path)
            del result
            keras.backend.clear_session()
            gc.collect()
    summary = summarise(study, out_dir, seeds)
    write_outputs(study, summary, os.path.join(out_dir, name))
    return summary


