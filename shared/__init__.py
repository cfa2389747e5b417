"""Common parts of the humans project used by curation, pretrain and heads.

Owns: typed-config loading, the sample/shard schema, shard writing and reading, image I/O,
keypoint and body-part definitions, the backbone model family, logging and progress.
"""
