"""Try the bad inputs of issue #12 and print what kreid answers, as a Markdown table.

    .venv/bin/python benchmarks/bad_inputs.py > /tmp/bad_inputs.md

Everything happens in a temporary folder (a small synthetic set, a briefly
trained tiny model and its TFLite export). Each row: the input, the
exception type (or result) and the first part of the message.
"""

import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROWS = []


def row(what: str, fn) -> None:
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            result = fn()
        outcome = f"ok: {result}"
    except BaseException as exc:  # noqa: BLE001  (we report whatever it is)
        outcome = f"`{type(exc).__name__}`: {str(exc)[:230]}"
    outcome = outcome.replace("|", "\\|").replace("\n", " ")
    ROWS.append(f"| {what} | {outcome} |")


def cli(args, cwd=REPO, pythonpath=REPO) -> str:
    out = subprocess.run([sys.executable] + args, capture_output=True, text=True, cwd=cwd,
                         env={**os.environ, "PYTHONPATH": pythonpath}, timeout=600)
    last = [x for x in out.stderr.strip().splitlines() if x.strip()][-1:] or [""]
    return f"exit {out.returncode}: {last[0][:230]}"


def main() -> None:
    # ~100 MB of runs, deleted at the end
    with tempfile.TemporaryDirectory(prefix="kreid-bad-", ignore_cleanup_errors=True) as tmp:
        _table(tmp)
    print("| bad input | what kreid gives |\n|---|---|")
    print("\n".join(ROWS))


def _table(tmp: str) -> None:
    from kreid.data import datasets, pipeline, synthetic
    from kreid.evaluation import runner
    from kreid.evaluation.embed import EmbeddingSet
    from kreid.export import compare, formats
    from kreid.training import checkpoint
    from kreid.training.config import base_config
    from kreid.training.trainer import Trainer
    from kreid_edge import GalleryMatcher, load_embedder
    from tests.conftest import write_image

    market = os.path.join(tmp, "Market-1501")
    write_image(os.path.join(market, "bounding_box_train", "0002_c1s1_000451_03.jpg"))
    row("`synthetic.generate` (and the default `dataset.name=synthetic`) on a Market-1501 "
        "copy", lambda: synthetic.generate(market))
    row("... the user's image afterwards", lambda: "still there: " + str(os.path.isfile(
        os.path.join(market, "bounding_box_train", "0002_c1s1_000451_03.jpg"))))
    root = os.path.join(tmp, "syn")
    synthetic.generate(root, num_identities=12, num_cameras=2)

    def config(**over):
        c = base_config()
        c.dataset.root = root
        c.model.name, c.model.embedding_dim, c.image_size = "mobilenet_edge", 16, (64, 32)
        c.batch.p, c.batch.k, c.total_steps, c.log_every = 4, 2, 4, 1
        c.checkpoint_every, c.final_eval.enabled = 1, False
        c.schedule = dict(kind="constant", base_lr=1e-3)
        for k, v in over.items():
            setattr(c, k, v)
        return c

    lr = config()
    lr.schedule.base_lr = 1e30
    work = os.path.join(tmp, "nan")
    row("training with `schedule.base_lr=1e30`",
        lambda: Trainer(lr, work, progress=False).run())
    row("... checkpoints left by that run", lambda: [
        os.path.basename(checkpoint.load(p)[0] and p) for _, p in
        checkpoint.list_checkpoints(os.path.join(work, "checkpoints"))] or "none")
    good = os.path.join(tmp, "good")
    Trainer(config(total_steps=2), good, progress=False).run()
    (_, ck), = checkpoint.list_checkpoints(os.path.join(good, "checkpoints"))[-1:]
    with np.load(ck) as data:
        arrays = {k: data[k] for k in data.files}
    key = sorted(k for k in arrays if k.startswith("model/"))[0]
    arrays[key] = arrays[key] * np.nan
    np.savez(ck, **arrays)
    row("resume from a checkpoint holding NaN",
        lambda: Trainer(config(total_steps=4), good, progress=False))

    train = os.path.join(root, "bounding_box_train")
    victim = os.path.join(train, sorted(os.listdir(train))[0])
    data = open(victim, "rb").read()
    cut = os.path.join(tmp, "cut.png")
    open(cut, "wb").write(data[:len(data) // 2])
    open(victim, "wb").write(data[:len(data) // 2])
    c = config(total_steps=50)
    row("a truncated JPEG in the training set",
        lambda: Trainer(c, os.path.join(tmp, "corrupt"), progress=False).run())
    open(victim, "wb").write(data)
    row("a truncated JPEG saved as `.png` (`pipeline.check_image`)",
        lambda: pipeline.check_image(cut))
    trailing = os.path.join(tmp, "trailing.jpg")
    open(trailing, "wb").write(data + b"\0" * 100)
    row("a valid JPEG with bytes after its end-of-image marker",
        lambda: f"check_image -> {pipeline.check_image(trailing)}")

    run = os.path.join(tmp, "run")
    Trainer(config(total_steps=4, checkpoint_every=0), run, progress=False).run()
    keras_path = os.path.join(run, "embedding.keras")
    ds = datasets.load("market1501", root)
    out = formats.export_keras_file(keras_path, os.path.join(tmp, "export"), ds.train,
                                    ["tflite_int8", "tflite_float32"], num_calibration=16)
    people = os.path.join(tmp, "people", "7")
    os.makedirs(people)
    os.symlink(ds.gallery[0].path, os.path.join(people, "a.jpg"))
    row("`kreid-edge enroll --out g` (no extension)",
        lambda: subprocess.run([sys.executable, "-m", "kreid_edge", "enroll", "--model",
                                out["tflite_int8"], "--gallery", os.path.dirname(people),
                                "--out", os.path.join(tmp, "g")], capture_output=True,
                               text=True, env={**os.environ, "PYTHONPATH": os.path.join(
                                   REPO, "export")}).stdout.strip())
    row("`kreid-edge match` with a truncated JPEG query",
        lambda: cli(["-m", "kreid_edge", "match", "--model", out["tflite_int8"], "--gallery",
                     os.path.join(tmp, "g.npz"), "--query", cut],
                    pythonpath=os.path.join(REPO, "export")))
    row("`kreid-edge match` against a gallery enrolled with another model",
        lambda: cli(["-m", "kreid_edge", "match", "--model", out["tflite_float32"], "--gallery",
                     os.path.join(tmp, "g.npz"), "--query", ds.query[0].path],
                    pythonpath=os.path.join(REPO, "export")))
    emb = load_embedder(out["tflite_int8"])
    row("TFLite embedder: an empty batch, then a normal one",
        lambda: f"{emb.embed_images([]).shape}, then {emb.embed_images([victim]).shape}")
    matcher = GalleryMatcher(load_embedder(out["tflite_float32"]))
    matcher.enroll([r.path for r in ds.gallery[:5]], [r.pid for r in ds.gallery[:5]])
    row("`GalleryMatcher.match([])`", lambda: matcher.match([]))
    row("self-distance of an enrolled image",
        lambda: f"{matcher.match([ds.gallery[0].path], 1)[0][0][1]:.2e}")
    bare = os.path.join(tmp, "bare.keras")
    import shutil
    shutil.copy(keras_path, bare)
    row("`bin/export.py` on a .keras without its sidecar",
        lambda: cli(["bin/export.py", f"--model={bare}", "--dataset=market1501",
                     f"--root={root}", f"--out={tmp}/e2", "--nocompare",
                     "--formats=tflite_float32"]))
    q = EmbeddingSet(np.ones((2, 4), np.float32), np.arange(2), np.zeros(2, int),
                     np.zeros(2, int), np.array(["a", "b"]), {"fingerprint": "aaaa", "model": "m1"})
    g = EmbeddingSet(np.ones((2, 4), np.float32), np.arange(2), np.ones(2, int),
                     np.zeros(2, int), np.array(["c", "d"]), {"fingerprint": "bbbb", "model": "m2"})
    row("evaluating query/gallery files of different models", lambda: runner.score(q, g))
    q.save(os.path.join(tmp, "q.npz"))
    empty = EmbeddingSet(np.zeros((0, 4), np.float32), *[np.zeros(0, int)] * 3, np.array([], str))
    empty.save(os.path.join(tmp, "empty.npz"))
    row("`bin/evaluate.py` with an empty query file",
        lambda: cli(["bin/evaluate.py", f"--query={tmp}/empty.npz", f"--gallery={tmp}/q.npz"]))
    open(os.path.join(tmp, "text.npz"), "w").write("hello")
    row("a text file named `.npz`", lambda: EmbeddingSet.load(os.path.join(tmp, "text.npz")))
    row("`--config.batch.q=3`",
        lambda: cli(["bin/train.py", "--config=configs/lunet_synthetic.py",
                     f"--workdir={tmp}/cfg", "--config.batch.q=3"]))
    os.makedirs(os.path.join(tmp, "empty", "VIPeR"))
    row("`viper` on an empty folder", lambda: datasets.load("viper", os.path.join(tmp, "empty")))
    x = np.full((2, 8), 1e-8, np.float32)
    row("export table 'cosine to float' for a bit-exact model with tiny norms",
        lambda: compare.cosine_to_reference(x, x).tolist())
    log = os.path.join(run, "log.jsonl")
    row("log.jsonl steps after a resume from step 2 of 4",
        lambda: _resume_steps(Trainer, config, run, log))


def _resume_steps(trainer_cls, config, run, log):
    from kreid.training import checkpoint

    work = run + "-resume"
    trainer_cls(config(total_steps=4, checkpoint_every=2), work, progress=False).run()
    os.remove(checkpoint.list_checkpoints(os.path.join(work, "checkpoints"))[-1][1])
    trainer_cls(config(total_steps=4, checkpoint_every=2), work, progress=False).run()
    return [json.loads(x)["step"] for x in open(os.path.join(work, "log.jsonl"))]


if __name__ == "__main__":
    sys.path.insert(0, REPO)
    main()
