"""Pretraining of the backbone on curated shards: unified pixel MAE + self-distillation (DINO-style).

Modules: ``config`` (TrainConfig), ``data`` (streaming, resumable WebDataset input), ``views``
(multi-crop augmentation), ``masking`` (cell masks), ``decoder`` (MAE pixel decoder + masked MSE),
``cl`` (self-distillation: projection head, centring/sharpening loss), ``ema`` (teacher update), ``model`` (the
trainable module), ``trainer`` (loop, DDP/FSDP, logging, checkpoints), ``checkpoint``, ``metrics``,
``export`` (checkpoint -> backbone.safetensors), ``cli``. See docs/pretrain.md.
"""
