"""The straightforward bicaptioning head, as one would first write VirTex's: two complete textual
heads (projection, embeddings, `nn.TransformerDecoder`, output layer) with nothing shared, the
padding masked in attention, logits at every position and `CrossEntropyLoss(ignore_index=pad)`.
The reference of `CaptionDecoder.loss` in the tests (`from_shared` copies one decoder's weights
into both heads) and the baseline of its benchmark (`cxrfast.bench.caption`)."""

from __future__ import annotations

import copy

import torch
from torch import nn

from cxrfast.models.caption_decoder import PAD_ID, CaptionDecoder, reversed_captions


class NaiveTextualHead(nn.Module):
    def __init__(self, visual_channels, vocab_size, width, layers, heads, feedforward, max_length, dropout):
        super().__init__()
        self.visual_projection = nn.Linear(visual_channels, width)
        self.words = nn.Embedding(vocab_size, width, padding_idx=PAD_ID)
        self.positions = nn.Embedding(max_length, width)
        self.norm = nn.LayerNorm(width, eps=1e-8)
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerDecoderLayer(width, heads, feedforward, dropout, activation="gelu", batch_first=True)
        self.transformer = nn.TransformerDecoder(layer, layers)
        self.output = nn.Linear(width, vocab_size)

    def forward(self, features, tokens):
        memory = self.visual_projection(features.flatten(2).transpose(1, 2))
        length = tokens.shape[1]
        x = self.dropout(self.norm(self.words(tokens) + self.positions(torch.arange(length, device=tokens.device))))
        causal = torch.ones(length, length, dtype=torch.bool, device=tokens.device).triu(1)  # True: not attended
        return self.output(self.transformer(x, memory, tgt_mask=causal, tgt_key_padding_mask=tokens == PAD_ID))


class NaiveBicaptioning(nn.Module):
    def __init__(self, visual_channels, vocab_size, *, width=1024, layers=1, heads=16, feedforward=4096, max_length=30,
                 dropout=0.1):
        super().__init__()
        self.forward_head = NaiveTextualHead(visual_channels, vocab_size, width, layers, heads, feedforward,
                                             max_length, dropout)
        self.backward_head = copy.deepcopy(self.forward_head)
        self.criterion = nn.CrossEntropyLoss(ignore_index=PAD_ID)

    @classmethod
    def from_shared(cls, decoder: CaptionDecoder) -> NaiveBicaptioning:
        """Both heads holding `decoder`'s shared weights, each its own direction's layers."""
        width, vocab = decoder.words.weight.shape[1], decoder.words.weight.shape[0]
        layer = decoder.forward_layers.layers[0]
        naive = cls(decoder.visual_projection.in_features, vocab, width=width,
                    layers=len(decoder.forward_layers.layers), heads=layer.self_attn.num_heads,
                    feedforward=layer.linear1.out_features, max_length=decoder.max_length, dropout=layer.dropout.p)
        directions = ((naive.forward_head, decoder.forward_layers), (naive.backward_head, decoder.backward_layers))
        for head, layers in directions:
            head.visual_projection.load_state_dict(decoder.visual_projection.state_dict())
            head.words.load_state_dict(decoder.words.state_dict())
            head.positions.load_state_dict(decoder.positions.state_dict())
            head.norm.load_state_dict(decoder.embedding_norm.state_dict())
            head.transformer.load_state_dict(layers.state_dict())
            head.output.weight.data.copy_(decoder.words.weight.data)
            head.output.bias.data.copy_(decoder.output_bias.data)
        return naive

    def loss(self, features, tokens, lengths):
        total = 0
        for head, captions in ((self.forward_head, tokens), (self.backward_head, reversed_captions(tokens, lengths))):
            logits = head(features, captions[:, :-1])
            total = total + self.criterion(logits.reshape(-1, logits.shape[-1]), captions[:, 1:].reshape(-1))
        return total
