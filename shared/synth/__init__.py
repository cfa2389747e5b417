"""Procedural labelled humans: articulated figures of smooth primitives, ray cast with exact labels
(308 keypoints, 29-class parts, pointmap, normals, albedo, mask, box) and written in the
``humans-dense-v1`` data format.

Entry points: ``shared.synth.render.generate(seed, index, size)`` (one sample in memory),
``shared.synth.writer.write_dataset`` (a data set on disk), ``shared.synth.cli`` (``humans-synth``,
``python -m shared.synth``, or ``humans-heads synth``): a producer used by heads (labelled data) and by
pretraining (unlabelled images). This package module stays light (no numpy/OpenCV import) so the heads CLI starts fast.
"""
FORMAT = "humans-dense-v1"
LABELS = ("keypoints", "parts", "masks", "normals", "pointmap", "albedo")
