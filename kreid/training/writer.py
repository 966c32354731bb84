"""Where the trainer's numbers go, in one place: TensorBoard, ``log.jsonl`` and the console.

Only the chief replica writes. ``log.jsonl`` holds one JSON line per log step
(the learning curve) and per validation; on resume, lines past the resumed
step are dropped (the run writes them again), so every step appears once.
"""

from __future__ import annotations

import json
import math
import os
import time

import numpy as np
import tensorflow as tf

from kreid.errors import NonFiniteError
from kreid.progress import format_eta, rate_and_eta
from kreid_edge.distances import distance_matrix
from kreid_edge.files import write_text


class MetricsWriter:
    def __init__(self, workdir: str, is_chief: bool = True, console: bool = True,
                 total_steps: int = 0, histogram_every: int = 1000):
        self.workdir, self.is_chief, self.console = workdir, is_chief, console
        self.total_steps, self.histogram_every = total_steps, histogram_every
        self.log_path = os.path.join(workdir, "log.jsonl")
        self.tb = tf.summary.create_file_writer(os.path.join(workdir, "tb")) if is_chief \
            else tf.summary.create_noop_writer()
        self.start, self.images, self.steps = time.perf_counter(), 0, 0

    def truncate(self, step: int) -> None:
        """Drop log.jsonl lines past ``step`` (and a line cut by a kill)."""
        if not (self.is_chief and os.path.isfile(self.log_path)):
            return
        with open(self.log_path) as f:
            lines = f.readlines()
        keep = []
        for line in lines:
            try:
                if int(json.loads(line)["step"]) <= step:
                    keep.append(line)
            except (ValueError, KeyError, TypeError):
                pass
        if len(keep) != len(lines):
            write_text(self.log_path, "".join(keep))

    def start_stage(self) -> None:
        """Restart the throughput clock (a new stage compiles a new step first)."""
        self.start, self.images, self.steps = time.perf_counter(), 0, 0

    def count(self, images: int) -> None:
        """One training step of ``images`` images is done."""
        self.images += images
        self.steps += 1

    def scalars(self, step: int, scalars: dict, embeddings: np.ndarray | None = None) -> dict:
        """Write one log step; adds ``images_per_second``. Non-finite values are refused."""
        scalars = dict(scalars)
        scalars["images_per_second"] = self.images / max(time.perf_counter() - self.start, 1e-9)
        bad = sorted(k for k, v in scalars.items() if not math.isfinite(v))
        if bad:
            raise NonFiniteError(f"step {step}: non-finite training values: {bad}")
        with self.tb.as_default(step=step):
            for k, v in scalars.items():
                tf.summary.scalar(k, v)
            if (embeddings is not None and self.histogram_every > 0
                    and step % self.histogram_every == 0):          # 0: no histograms
                tf.summary.histogram("embeddings/norm", np.linalg.norm(embeddings, axis=1))
                d = distance_matrix(embeddings, embeddings)
                tf.summary.histogram("embeddings/distances", d[np.triu_indices(len(d), 1)])
        self._append({"step": step, **scalars})
        if self.console and self.is_chief:
            _, eta = rate_and_eta(self.steps, self.steps + self.total_steps - step, self.start)
            print(f"step {step}/{self.total_steps} loss {scalars.get('loss/total', 0):.4f} "
                  f"active {scalars.get('health/active', 0):.2f} "
                  f"top1 {scalars.get('health/top1', 0):.2f} "
                  f"norm {scalars.get('health/norm', 0):.2f} lr {scalars.get('lr', 0):.2e} "
                  f"{scalars['images_per_second']:.0f} img/s ETA {format_eta(eta)}", flush=True)
        return scalars

    def validation(self, step: int, values: dict) -> None:
        with self.tb.as_default(step=step):
            for k, v in values.items():
                tf.summary.scalar(k, v)
        if self.is_chief:
            print(f"validation at step {step}: mAP {100 * values['val/mAP']:.2f}% "
                  f"rank-1 {100 * values['val/rank1']:.2f}%")
        self._append({"step": step, **values})

    def _append(self, record: dict) -> None:
        if self.is_chief:
            with open(self.log_path, "a") as f:
                f.write(json.dumps(record) + "\n")
