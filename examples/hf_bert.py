"""Hugging Face ``BertModel`` from a tiny ``BertConfig`` (2 layers, hidden 32, random weights,
no hub access). The wrapper takes tensors positionally and returns the ``ModelOutput``
(``last_hidden_state``, ``pooler_output``)."""
from __future__ import annotations

import torch
import torch.nn as nn
from transformers import BertConfig, BertModel

SEQ_LEN = 16


class TinyBert(nn.Module):
    def __init__(self):
        super().__init__()
        config = BertConfig(
            vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=64, max_position_embeddings=64, hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
        )
        self.bert = BertModel(config)

    def forward(self, input_ids, attention_mask):
        return self.bert(input_ids=input_ids, attention_mask=attention_mask)


def build():
    input_ids = torch.randint(0, 100, (2, SEQ_LEN), dtype=torch.int64)
    attention_mask = torch.ones(2, SEQ_LEN, dtype=torch.int64)
    return TinyBert().eval(), (input_ids, attention_mask)
