"""Human definitions shared by every area: the 308-keypoint layout (``keypoints``) and the 29-class
body-part layout (``parts``)."""
from humans.shared.humans.keypoints import (COCO_WHOLEBODY_TO_308, FLIP_PAIRS, KEYPOINT_NAMES, NUM_KEYPOINTS, SIGMAS,
                                     SKELETON, flip_index)
from humans.shared.humans.parts import NUM_PARTS, PART_COLORS, PART_FLIP, PART_NAMES

__all__ = ["KEYPOINT_NAMES", "NUM_KEYPOINTS", "SKELETON", "FLIP_PAIRS", "flip_index", "SIGMAS",
           "COCO_WHOLEBODY_TO_308", "PART_NAMES", "NUM_PARTS", "PART_FLIP", "PART_COLORS"]
