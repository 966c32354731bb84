"""The quantization-aware training stage of a run (``config.qat.steps``; issue #27).

The trainer hands the stage its trained float model; :class:`QATStage` builds
the model's fake-quantized twin (:func:`kreid.models.qat.quantize_model`,
sharing every weight), sets the twin's activation ranges as the post-training
export would set them (``config.qat.ranges`` over ``config.qat.calibration_images``
training images, test-time preprocessing), or restores them from a checkpoint,
and after the stage writes ``embedding.qat.keras`` with its sidecar. The float
``embedding.keras`` and ``final.keras`` are written when the stage starts:
they keep the float model the quantization-aware one is compared with.

The twin trains in float32 whatever ``config.precision`` says (fake
quantization in bfloat16 would round twice); its batch norms keep their
moving statistics (folded, frozen), so the stage is the same in every replica.
"""

from __future__ import annotations

import logging
import os

from kreid.training import checkpoint

log = logging.getLogger(__name__)
QAT_FILE = "embedding.qat.keras"


class QATStage:
    """The fake-quantized twin of ``model`` (the trainer's float32 model) and its ranges."""

    def __init__(self, model, reserved_dim: int = 0):
        from kreid.models import qat

        self.twin = qat.quantize_model(model)
        self.reserved_dim = reserved_dim
        self.quantizers = qat.quantizers(self.twin)

    @property
    def range_variables(self) -> list:
        """The activation ranges (checkpoint group ``qat``)."""
        return [v for q in self.quantizers for v in q.weights]

    def start(self, records, preprocessing: str, plan, saved: dict | None = None,
              where: str = "") -> None:
        """Set the ranges: from ``saved`` (a checkpoint's ``qat`` group) when resuming, else
        calibrated on training images as the int8 export calibrates."""
        if saved:
            checkpoint.assign(self.range_variables, saved, f"{where}: qat")
            return
        from kreid.export.convert import ExportSpec, calibration_images
        from kreid.models import qat

        h, w = (int(v) for v in self.twin.input.shape[1:3])
        images = calibration_images(records, ExportSpec((h, w), preprocessing),
                                    min(plan.qat.calibration_images, len(records)))
        ranges = qat.calibrate(self.twin, images, plan.qat.ranges)
        log.info("qat: %d activation ranges set from %d training images (%s)", len(ranges),
                 len(images), plan.qat.ranges)

    def embedding_model(self):
        """The twin as an embedding model (without the reserved leading dims)."""
        if not self.reserved_dim:
            return self.twin
        import keras

        from kreid.models.layers import ChannelSlice

        dim = int(self.twin.output.shape[-1])
        f_id = ChannelSlice(self.reserved_dim, dim, name="f_id")(self.twin.output)
        return keras.Model(self.twin.input, f_id, name=f"{self.twin.name}_f_id")

    def save(self, workdir: str, model_name: str, dataset_name: str, image_size,
             preprocessing: str, step: int, steps: int) -> str:
        """Write ``embedding.qat.keras`` with its sidecar (``qat``: the stage's length and
        the number of activation ranges); returns its path."""
        from kreid.evaluation.embed import weights_fingerprint
        from kreid.training.artifacts import save_keras
        from kreid_edge.sidecar import Sidecar, write_sidecar

        model = self.embedding_model()
        path = save_keras(model, os.path.join(workdir, QAT_FILE))
        write_sidecar(path, Sidecar(tuple(image_size), preprocessing, model_name, "keras",
                                    int(model.output.shape[-1]),
                                    {"dataset": dataset_name, "step": step,
                                     "fingerprint": weights_fingerprint(model),
                                     "trained_precision": "float32",
                                     "qat": {"steps": steps,
                                             "ranges": len(self.quantizers)}}))
        return path
