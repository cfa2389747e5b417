"""Parameter names and shapes of open_clip architectures, shipped so that the up-front checkpoint check
needs no open_clip import (seconds of torchvision start-up). One JSON file per ``MODEL@SIZE``
(``default`` = the model's own input size), written from ``open_clip.create_model`` on the ``meta``
device; ``tests/curation/test_hardening.py`` checks that they still match the installed open_clip."""
