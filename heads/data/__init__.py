"""Data of the heads: readers of the labelled dense format and of users' formats (COCO-WholeBody
keypoint JSON, indexed part PNGs, .npy/.exr maps), sample geometry and augmentation, and frozen
backbone features with their cache."""
import os

os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")  # before cv2 is first imported (heads.data.io)

from humans.heads.data.dataset import DenseData, Item  # noqa: E402
from humans.heads.data.io import AnnotationError  # noqa: E402
from humans.heads.data.keypoints import KeypointSet, Person, load_keypoints  # noqa: E402

__all__ = ["DenseData", "Item", "AnnotationError", "KeypointSet", "Person", "load_keypoints"]
