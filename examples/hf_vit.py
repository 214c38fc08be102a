"""Hugging Face ``ViTModel`` from a tiny ``ViTConfig`` (32x32 images, 8x8 patches, 2 layers,
hidden 32, random weights, no hub access). The wrapper takes the pixel tensor positionally
and returns the ``ModelOutput`` (``last_hidden_state``, ``pooler_output``)."""
from __future__ import annotations

import torch
import torch.nn as nn
from transformers import ViTConfig, ViTModel


class TinyViT(nn.Module):
    def __init__(self):
        super().__init__()
        config = ViTConfig(
            image_size=32, patch_size=8, num_channels=3, hidden_size=32, num_hidden_layers=2,
            num_attention_heads=4, intermediate_size=64, hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
        )
        self.vit = ViTModel(config)

    def forward(self, pixel_values):
        return self.vit(pixel_values=pixel_values)


def build():
    return TinyViT().eval(), (torch.randn(2, 3, 32, 32),)
