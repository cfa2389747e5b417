"""Person detector backends for stage 3, all returning ``PersonBox``-shaped dicts in image pixels.

- ``mediapipe`` (the embedded default): MediaPipe's bundled, pretrained BlazePose (pose,
  ``model_complexity=1``) gives one person's 33 body landmarks and a box around them; MediaPipe's
  bundled full-range face detector finds the other people (a face outside the pose box becomes a
  person whose box is extrapolated from the face). Both models ship inside the mediapipe 0.10.21
  wheel: nothing is downloaded.
- ``opencv``: OpenCV's pretrained HOG+SVM pedestrian detector plus its Haar frontal- and
  profile-face cascades (all ship inside opencv-python, part of the default install); a face outside
  every body box becomes a person as above.
- ``hog``: OpenCV's pretrained HOG+SVM pedestrian detector alone.
- ``mtcnn``: facenet-pytorch's pretrained MTCNN face detector (weights ship in the wheel); faces
  become people as above.
- ``yolo``: an ultralytics YOLO checkpoint given by the user (``--detector-weights PATH``); class 0
  (person) boxes, and keypoints when the checkpoint is a pose model.

``auto`` picks ``yolo`` when weights are given, else ``mediapipe`` when the optional mediapipe package is
installed (``HUMANS_EXTRAS=mediapipe bash scripts/install.sh``), else ``opencv``.
"""
from __future__ import annotations

import os
from typing import Any, Protocol

import cv2
import numpy as np

from .config import PersonStage

PersonDict = dict[str, Any]  # {"box": [x0,y0,x1,y1], "score": float, "landmarks": [[x,y,v],...]|None, "kind": str}


class Detector(Protocol):
    name: str
    pretrained: bool
    device: str  # where the model runs: "cpu", "cuda:0", ...

    def detect(self, images: list[np.ndarray]) -> list[list[PersonDict]]: ...


def torch_device(device: str = "auto") -> str:
    """``device`` for a torch model: ``auto`` is ``cuda:0`` when this process sees a GPU (Ray exposes the
    GPUs it assigned to a task or actor through ``CUDA_VISIBLE_DEVICES``, and none to one that asked for
    none), else ``cpu``; anything else is returned as given."""
    if device != "auto":
        return device
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) == "":
        return "cpu"
    try:
        import torch
    except ImportError:
        return "cpu"
    return "cuda:0" if torch.cuda.is_available() else "cpu"


def _resize(rgb: np.ndarray, long_side: int) -> tuple[np.ndarray, float]:
    h, w = rgb.shape[:2]
    s = min(1.0, long_side / max(h, w))
    if s < 1.0:
        rgb = cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(rgb), s


def _face_to_person(box: tuple[float, float, float, float], w: int, h: int) -> list[float]:
    """A person box extrapolated from a face box: about 3 face widths wide, 7 face heights tall."""
    x0, y0, x1, y1 = box
    fw, fh = x1 - x0, y1 - y0
    cx = (x0 + x1) / 2
    return [max(0.0, cx - 1.5 * fw), max(0.0, y0 - 0.3 * fh), min(float(w), cx + 1.5 * fw),
            min(float(h), y0 + 7.0 * fh)]


def _inside(box: list[float], outer: list[float], tol: float = 0.5) -> bool:
    """True when at least ``tol`` of ``box``'s area lies inside ``outer``."""
    ix = max(0.0, min(box[2], outer[2]) - max(box[0], outer[0]))
    iy = max(0.0, min(box[3], outer[3]) - max(box[1], outer[1]))
    area = max(1e-6, (box[2] - box[0]) * (box[3] - box[1]))
    return ix * iy / area >= tol


class MediaPipeDetector:
    """BlazePose (one person, 33 landmarks) plus the full-range face detector (the rest)."""

    name = "mediapipe-pose+face"
    pretrained = True
    device = "cpu"

    def __init__(self, cfg: PersonStage):
        import mediapipe as mp  # bundled models; model_complexity=1 is the one shipped in the wheel

        self.cfg = cfg
        self.side = detector_long_side(cfg)
        self.pose = mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1,
                                           min_detection_confidence=0.5)
        self.face = mp.solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.5)

    def _one(self, rgb: np.ndarray) -> list[PersonDict]:
        small, s = _resize(rgb, self.side)
        h, w = small.shape[:2]
        H, W = rgb.shape[:2]
        people: list[PersonDict] = []
        pose_box = None
        res = self.pose.process(small)
        if res.pose_landmarks is not None:
            lm = np.array([[p.x, p.y, p.visibility] for p in res.pose_landmarks.landmark], dtype=np.float64)
            vis = lm[:, 2]
            seen = lm[vis >= 0.5] if (vis >= 0.5).sum() >= 4 else lm
            x0, y0 = seen[:, 0].min(), seen[:, 1].min()
            x1, y1 = seen[:, 0].max(), seen[:, 1].max()
            padx, pady = 0.1 * (x1 - x0), 0.1 * (y1 - y0)
            box = [float(np.clip(x0 - padx, 0, 1) * W), float(np.clip(y0 - pady, 0, 1) * H),
                   float(np.clip(x1 + padx, 0, 1) * W), float(np.clip(y1 + pady, 0, 1) * H)]
            score = float(np.sort(vis)[-10:].mean())  # confidence of the ten clearest landmarks
            landmarks = [[round(float(x * W), 2), round(float(y * H), 2), round(float(v), 4)] for x, y, v in lm]
            pose_box = box
            people.append({"box": box, "score": round(score, 4), "landmarks": landmarks, "kind": "pose"})
        fres = self.face.process(small)
        for det in fres.detections or []:
            rb = det.location_data.relative_bounding_box
            fbox = (rb.xmin * W, rb.ymin * H, (rb.xmin + rb.width) * W, (rb.ymin + rb.height) * H)
            pbox = _face_to_person(fbox, W, H)
            if pose_box is not None and _inside([max(0, fbox[0]), max(0, fbox[1]), fbox[2], fbox[3]], pose_box):
                people[0]["face_score"] = round(float(det.score[0]), 4)
                continue
            people.append({"box": pbox, "score": round(float(det.score[0]), 4), "landmarks": None,
                           "kind": "face", "face_box": [round(float(v), 2) for v in fbox]})
        return people

    def detect(self, images: list[np.ndarray]) -> list[list[PersonDict]]:
        return [self._one(im) for im in images]


class HogDetector:
    """OpenCV's pretrained HOG + linear SVM pedestrian detector (whole, upright bodies)."""

    name = "opencv-hog"
    pretrained = True
    device = "cpu"

    def __init__(self, cfg: PersonStage):
        self.cfg = cfg
        self.side = detector_long_side(cfg)
        self.hog = cv2.HOGDescriptor()
        self.hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())

    def detect(self, images: list[np.ndarray]) -> list[list[PersonDict]]:
        out = []
        for rgb in images:
            small, s = _resize(rgb, self.side)
            rects, weights = self.hog.detectMultiScale(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY),
                                                       winStride=(8, 8), padding=(8, 8), scale=1.05)
            people = []
            for (x, y, w, h), wt in zip(np.asarray(rects).reshape(-1, 4), np.ravel(weights)):
                score = float(1.0 / (1.0 + np.exp(-2.0 * float(wt))))  # SVM margin -> (0, 1)
                people.append({"box": [x / s, y / s, (x + w) / s, (y + h) / s], "score": round(score, 4),
                               "landmarks": None, "kind": "hog"})
            out.append(people)
        return out


class OpenCvDetector:
    """HOG people (whole bodies) plus Haar frontal- and profile-face cascades (people seen closer).

    Scores are the detectors' margins through a logistic placed at the margin that separated the
    demo pool's person-free scenes from its people (HOG SVM margin 0.4, frontal-face stage sum 1.5,
    profile-face 0.9: the largest margins seen on person-free scenes were 0.24 / 0.89 / none), so the
    stage's ``min_score: 0.5`` keeps exactly the detections above those margins.

    Cost: the two profile-face passes (the image and its mirror) are the dearest part, so they run only
    when neither HOG nor the frontal cascade found a confident person (``PROFILE = "if_no_person"``;
    ``"always"`` was the old behaviour). On the demo pool (340 images reaching the stage, one thread)
    that took the stage from 0.99 to 0.62 CPU-s per image with the same decisions (kept after framing:
    188 correct of 210 either way); a person-free image still pays for every pass (0.86 s). Searching
    faces from 6 % or 7 % of the short side instead of 5 % (``FACE_MIN_FRAC``) saved another 0.05-0.12 s
    but lost one or two good images, so it is not the default.
    """

    name = "opencv-hog+haar-face"
    pretrained = True
    device = "cpu"
    HOG_MARGIN, FRONTAL_MARGIN, PROFILE_MARGIN = 0.4, 1.5, 0.9
    HOG_SCALE, FACE_LONG_SIDE = 1.05, 640  # pyramid step and face-search size (1.1 / 480 missed 5 more)
    FACE_SCALE_FACTOR, FACE_MIN_FRAC = 1.1, 0.05  # cascade pyramid step; smallest face / short side
    PROFILE = "if_no_person"  # or "always" / "never": when the two profile-face passes run

    def __init__(self, cfg: PersonStage):
        self.cfg = cfg
        self.side = detector_long_side(cfg)
        self.hog = cv2.HOGDescriptor()
        self.hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
        self.cascades = {}
        for kind in ("frontalface_default", "profileface"):
            path = os.path.join(cv2.data.haarcascades, f"haarcascade_{kind}.xml")
            self.cascades[kind] = cv2.CascadeClassifier(path)
            if self.cascades[kind].empty():
                raise RuntimeError(f"OpenCV's Haar cascade is missing ({path}); opencv-python 4.x ships it")

    @staticmethod
    def _score(margin: float, at: float, slope: float = 2.0) -> float:
        return round(float(1.0 / (1.0 + np.exp(-slope * (margin - at)))), 4)

    def _faces(self, grey: np.ndarray, kind: str, at: float) -> list[tuple[tuple[float, ...], float]]:
        side = max(20, int(min(grey.shape[:2]) * self.FACE_MIN_FRAC))
        boxes, _levels, weights = self.cascades[kind].detectMultiScale3(
            grey, scaleFactor=self.FACE_SCALE_FACTOR, minNeighbors=5, minSize=(side, side), outputRejectLevels=True)
        return [((float(x), float(y), float(x + w), float(y + h)), self._score(float(wt), at))
                for (x, y, w, h), wt in zip(np.asarray(boxes).reshape(-1, 4), np.ravel(weights))]

    def _one(self, rgb: np.ndarray) -> list[PersonDict]:
        small, s = _resize(rgb, self.side)
        grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
        H, W = rgb.shape[:2]
        people: list[PersonDict] = []
        rects, weights = self.hog.detectMultiScale(grey, winStride=(8, 8), padding=(8, 8), scale=self.HOG_SCALE)
        for (x, y, w, h), wt in zip(np.asarray(rects).reshape(-1, 4), np.ravel(weights)):
            people.append({"box": [x / s, y / s, (x + w) / s, (y + h) / s], "landmarks": None, "kind": "hog",
                           "score": self._score(float(wt), self.HOG_MARGIN, 4.0)})
        face_grey, fs = _resize(grey, self.FACE_LONG_SIDE)
        eq = cv2.equalizeHist(face_grey)
        w_face = eq.shape[1]
        faces = self._faces(eq, "frontalface_default", self.FRONTAL_MARGIN)
        found = any(p["score"] >= self.cfg.min_score for p in people) or \
            any(sc >= self.cfg.min_score for _, sc in faces)
        if self.PROFILE == "always" or (self.PROFILE == "if_no_person" and not found):
            faces += self._faces(eq, "profileface", self.PROFILE_MARGIN)
            mirrored = self._faces(np.ascontiguousarray(eq[:, ::-1]), "profileface", self.PROFILE_MARGIN)
            faces += [((w_face - b[2], b[1], w_face - b[0], b[3]), sc) for b, sc in mirrored]
        for b, score in sorted(faces, key=lambda f: -f[1]):
            fbox = tuple(v / (s * fs) for v in b)
            owner = [p for p in people if _inside(list(fbox), p.get("face_box") or p["box"])]
            if owner:  # the same person (a body box, or a face found by another cascade)
                owner[0]["face_score"] = max(owner[0].get("face_score", 0.0), score)
                continue
            people.append({"box": _face_to_person(fbox, W, H), "score": score, "landmarks": None,
                           "kind": "face", "face_box": [round(float(v), 2) for v in fbox]})
        return people

    def detect(self, images: list[np.ndarray]) -> list[list[PersonDict]]:
        return [self._one(im) for im in images]


class MtcnnDetector:
    """facenet-pytorch's pretrained MTCNN face detector; each face becomes a person."""

    name = "mtcnn-face"
    pretrained = True

    def __init__(self, cfg: PersonStage, device: str = "auto"):
        from facenet_pytorch import MTCNN

        self.cfg = cfg
        self.side = detector_long_side(cfg)
        self.device = torch_device(device)
        self.mtcnn = MTCNN(keep_all=True, device=self.device)

    def detect(self, images: list[np.ndarray]) -> list[list[PersonDict]]:
        from PIL import Image

        out = []
        for rgb in images:
            small, s = _resize(rgb, self.side)
            H, W = rgb.shape[:2]
            boxes, probs = self.mtcnn.detect(Image.fromarray(small))
            people = []
            for b, p in zip(boxes if boxes is not None else [], probs if probs is not None else []):
                fbox = tuple(float(v) / s for v in b)
                people.append({"box": _face_to_person(fbox, W, H), "score": round(float(p), 4),
                               "landmarks": None, "kind": "face", "face_box": [round(v, 2) for v in fbox]})
            out.append(people)
        return out


def _undo_ultralytics_pil_patch() -> None:
    """Importing ultralytics replaces ``PIL.Image.open`` process-wide with a wrapper that, on a file
    Pillow cannot identify, tries to install and import ``pi-heif``: our decoder would then report a
    truncated or unknown file as a missing module (and try the network). Put Pillow's own back."""
    from PIL import Image

    try:
        from ultralytics.utils import patches
    except ImportError:
        return
    original = getattr(patches, "_image_open", None)
    if original is not None and getattr(original, "__module__", "") == "PIL.Image":
        Image.open = original


class YoloDetector:
    """An ultralytics YOLO checkpoint from the user: person (class 0) boxes, keypoints if a pose model.

    Runs on the GPU this process was given (``device`` ``auto``: ``cuda:0`` of the devices Ray or
    ``CUDA_VISIBLE_DEVICES`` exposes, else the CPU); a list of images is one batched ``predict`` call."""

    name = "ultralytics-yolo"

    def __init__(self, cfg: PersonStage, device: str = "auto"):
        if not cfg.weights or not os.path.isfile(cfg.weights):
            raise FileNotFoundError(f"person.weights: YOLO checkpoint {cfg.weights!r} not found")
        from ultralytics import YOLO

        _undo_ultralytics_pil_patch()
        self.cfg = cfg
        self.side = detector_long_side(cfg)
        self.device = torch_device(device)
        self.model = YOLO(cfg.weights)
        self.name = f"ultralytics-yolo:{os.path.basename(cfg.weights)}"
        self.pretrained = "random" not in os.path.basename(cfg.weights).lower()

    def detect(self, images: list[np.ndarray]) -> list[list[PersonDict]]:
        if not images:
            return []
        bgr = [np.ascontiguousarray(im[:, :, ::-1]) for im in images]
        results = self.model.predict(bgr, imgsz=self.side, classes=[0], batch=len(bgr),
                                     conf=min(self.cfg.min_score, 0.25), verbose=False, device=self.device)
        out = []
        for r in results:
            people = []
            boxes = r.boxes
            kps = getattr(r, "keypoints", None)
            for i in range(len(boxes)):
                x0, y0, x1, y1 = (float(v) for v in boxes.xyxy[i].tolist())
                lm = None
                if kps is not None and kps.data is not None and len(kps.data) > i:
                    lm = [[round(float(a), 2) for a in row] for row in kps.data[i].tolist()]
                people.append({"box": [x0, y0, x1, y1], "score": round(float(boxes.conf[i]), 4),
                               "landmarks": lm, "kind": "yolo"})
            out.append(people)
        return out


_BACKENDS = {"mediapipe": MediaPipeDetector, "opencv": OpenCvDetector, "hog": HogDetector,
             "mtcnn": MtcnnDetector, "yolo": YoloDetector}
_OPTIONAL = {"mediapipe": "mediapipe", "mtcnn": "facenet_pytorch"}  # backend -> module of the optional extra


def optional_available(kind: str) -> bool:
    """Whether the optional package behind backend ``kind`` is installed (always True for the others)."""
    import importlib.util

    module = _OPTIONAL.get(kind)
    return module is None or importlib.util.find_spec(module) is not None


# Long side of the copy each detector sees when person.analysis_long_side is null. MediaPipe's models run at
# 224 px (person detector) and 256 px (landmarks) inside, so a 384 px copy costs the same and decides within
# two or three of 340 demo-pool images of a 640 px one (benchmarks/results/curation_speed.md), and it lets
# stages 0-2 decode web photos at 1/4 scale. ``run_pipeline`` resolves "auto" once on the driver, so the
# filter tasks (which make the copy) and the person actors (which use it) agree on every node. HOG's window is
# 64x128 px, so OpenCV needs the larger copy to find people a fifth of the frame tall; 640 is YOLO's own size.
DETECTOR_LONG_SIDE = {"mediapipe": 384, "opencv": 640, "hog": 640, "mtcnn": 640, "yolo": 640}


def detector_long_side(cfg: PersonStage) -> int:
    """The long side of the copy the detector sees: ``cfg.analysis_long_side``, else the detector's own."""
    return int(cfg.analysis_long_side or DETECTOR_LONG_SIDE[resolve_kind(cfg)])


def resolve_kind(cfg: PersonStage) -> str:
    """``cfg.detector`` with ``auto`` resolved: yolo with weights, else mediapipe if installed, else opencv."""
    if cfg.detector != "auto":
        return cfg.detector
    if cfg.weights:
        return "yolo"
    return "mediapipe" if optional_available("mediapipe") else "opencv"


def build_detector(cfg: PersonStage, device: str = "auto") -> Detector:
    """The detector ``cfg`` asks for (see :func:`resolve_kind`); torch-based backends (yolo, mtcnn) run on
    ``device`` (``auto``: the GPU this process was given, else the CPU, see :func:`torch_device`)."""
    kind = resolve_kind(cfg)
    if not optional_available(kind):
        raise RuntimeError(f"person.detector '{kind}' needs the optional package {_OPTIONAL[kind]!r}, which is not "
                           f"installed: run `HUMANS_EXTRAS=mediapipe bash scripts/install.sh`, or use person.detector "
                           f"auto / opencv / hog")
    if kind in ("yolo", "mtcnn"):
        return _BACKENDS[kind](cfg, device=device)
    return _BACKENDS[kind](cfg)
