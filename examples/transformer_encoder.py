"""``nn.TransformerEncoder`` (2 layers, 4 heads, GELU, pre-norm) over a float sequence with a
learned position embedding and a mean-pooled linear head."""
from __future__ import annotations

import torch
import torch.nn as nn

SEQ_LEN, D_MODEL = 16, 32


class TransformerEncoderNet(nn.Module):
    def __init__(self, features: int = 8, d_model: int = D_MODEL, num_classes: int = 3):
        super().__init__()
        self.proj = nn.Linear(features, d_model)
        self.pos = nn.Parameter(torch.randn(1, SEQ_LEN, d_model) * 0.1)
        layer = nn.TransformerEncoderLayer(
            d_model, nhead=4, dim_feedforward=64, dropout=0.0, activation="gelu",
            batch_first=True, norm_first=True,
        )
        # enable_nested_tensor is an inference fast path that export cannot use
        self.encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, num_classes)

    def forward(self, x):
        h = self.encoder(self.proj(x) + self.pos)
        return self.head(h.mean(dim=1))


def build():
    return TransformerEncoderNet().eval(), (torch.randn(2, SEQ_LEN, 8),)
