"""VirTex's bidirectional textual head (Desai & Johnson, 2021), as RadTex pretrains with it.

The encoder's last feature map (B, C, h, w) is flattened to h·w tokens and projected to the
decoder's width: the memory both decoders attend to. Captions enter as learned word plus position
embeddings under a LayerNorm; a forward transformer decoder predicts each next token, a backward
one each previous token from the reversed caption. The two share the visual projection, the
embeddings and the output layer, which is the word embedding's transpose with its own bias
(VirTex's tying); each has its own transformer layers (post-norm, GELU, as VirTex's).

Two things make a step cheaper than running two `nn.TransformerDecoder`s on their own copies:
- captions are padded on the right only, so the causal mask alone keeps every real token from
  the padding (it lies after all of them): no padding mask, and attention runs on the causal
  fast path (`is_causal`);
- the output layer and cross-entropy see only the positions that predict a real token, both
  directions in one matrix product, never the (B, L, vocabulary) logits of the padding.
The padding's outputs are computed and dropped; nothing of them reaches the loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

PAD_ID = 0  # cxrfast.data.report_tokenizer's; the models layer does not import data


def reversed_captions(tokens: Tensor, lengths: Tensor) -> Tensor:
    """Each caption's first `length` tokens reversed ([SOS] a b [EOS] -> [EOS] b a [SOS]), the
    padding left where it is."""
    positions = torch.arange(tokens.shape[1], device=tokens.device)[None]
    source = torch.where(positions < lengths[:, None], lengths[:, None] - 1 - positions, positions)
    return tokens.gather(1, source)


class CaptionDecoder(nn.Module):
    def __init__(self, visual_channels: int, vocab_size: int, *, width: int = 1024, layers: int = 1,
                 heads: int = 16, feedforward: int = 4096, max_length: int = 30, dropout: float = 0.1,
                 bidirectional: bool = True):
        super().__init__()
        self.max_length = max_length
        self.visual_projection = nn.Linear(visual_channels, width)
        self.words = nn.Embedding(vocab_size, width, padding_idx=PAD_ID)
        self.positions = nn.Embedding(max_length, width)
        self.embedding_norm = nn.LayerNorm(width, eps=1e-8)
        self.dropout = nn.Dropout(dropout)
        self.output_bias = nn.Parameter(torch.zeros(vocab_size))

        def transformer() -> nn.TransformerDecoder:
            layer = nn.TransformerDecoderLayer(width, heads, feedforward, dropout, activation="gelu", batch_first=True)
            return nn.TransformerDecoder(layer, layers)

        self.forward_layers = transformer()
        self.backward_layers = transformer() if bidirectional else None
        self.apply(_bert_init)

    def memory(self, features: Tensor) -> Tensor:
        """(B, C, h, w) feature map -> (B, h·w, width)."""
        return self.visual_projection(features.flatten(2).transpose(1, 2))

    def hidden(self, memory: Tensor, tokens: Tensor, backward: bool = False) -> Tensor:
        """(B, L, width) outputs of one direction's decoder for captions `tokens` (B, L)."""
        length = tokens.shape[1]
        if length > self.max_length:
            raise ValueError(f"captions of {length} tokens; the decoder was built for at most {self.max_length}")
        x = self.words(tokens) + self.positions.weight[:length]
        x = self.dropout(self.embedding_norm(x))
        causal = nn.Transformer.generate_square_subsequent_mask(length, device=tokens.device, dtype=x.dtype)
        layers = self.backward_layers if backward else self.forward_layers
        return layers(x, memory, tgt_mask=causal, tgt_is_causal=True)

    def logits(self, hidden: Tensor) -> Tensor:
        return F.linear(hidden, self.words.weight, self.output_bias)

    def loss(self, features: Tensor, tokens: Tensor, lengths: Tensor) -> Tensor:
        """The captioning loss of (B, L) right-padded captions of `lengths` tokens: the mean
        cross-entropy of every real next token, forward (and backward) summed as VirTex sums them."""
        width = int(lengths.max())
        tokens = tokens[:, :width]  # the batch's padding beyond its longest caption is never computed
        memory = self.memory(features)
        # Position t predicts token t + 1: a real one up to each caption's end token.
        predicting = torch.arange(width - 1, device=tokens.device)[None] < (lengths - 1).to(tokens.device)[:, None]
        directions = [(tokens, False)] + ([(reversed_captions(tokens, lengths), True)] if self.backward_layers else [])
        hidden, wanted = [], []
        for captions, backward in directions:
            h = self.hidden(memory, captions[:, :-1], backward)
            hidden.append(h[predicting])
            wanted.append(captions[:, 1:][predicting])
        per_token = F.cross_entropy(self.logits(torch.cat(hidden)), torch.cat(wanted), reduction="none")
        return per_token.view(len(directions), -1).mean(1).sum()

    @torch.no_grad()
    def generate(self, features: Tensor, start: int, end: int, *, beam: int = 1,
                 max_length: int | None = None) -> list[list[int]]:
        """The forward decoder's captions of (B, C, h, w) features, each its token ids after
        `start` up to (not including) `end`: greedy with `beam` 1, else the most probable of
        `beam` hypotheses (summed log-probabilities; a finished one is carried on unchanged)."""
        memory = self.memory(features)
        b, steps = memory.shape[0], min(max_length or self.max_length, self.max_length)
        tokens = torch.full((b, 1, 1), start, dtype=torch.long, device=memory.device)
        scores = memory.new_zeros(b, 1)
        finished = torch.zeros(b, 1, dtype=torch.bool, device=memory.device)
        for t in range(1, steps):
            k = tokens.shape[1]
            step = self.logits(self.hidden(memory.repeat_interleave(k, 0), tokens.view(b * k, t))[:, -1])
            logp = F.log_softmax(step.float(), -1).view(b, k, -1)
            logp[..., [PAD_ID, start]] = float("-inf")  # neither is ever a caption's word
            carried = torch.full_like(logp, float("-inf"))
            carried[..., PAD_ID] = 0.0  # a finished hypothesis grows by padding, at no cost
            total = scores[..., None] + torch.where(finished[..., None], carried, logp)
            scores, index = total.view(b, -1).topk(min(beam, total[0].numel()), dim=1)
            origin, word = index // logp.shape[2], index % logp.shape[2]
            tokens = torch.cat([tokens.gather(1, origin[..., None].expand(-1, -1, t)), word[..., None]], 2)
            finished = finished.gather(1, origin) | (word == end)
            if bool(finished.all()):
                break
        captions = []
        for ids in tokens[:, 0, 1:].tolist():  # topk sorts: hypothesis 0 is the best
            captions.append(ids[:ids.index(end)] if end in ids else [i for i in ids if i != PAD_ID])
        return captions


def _bert_init(module: nn.Module) -> None:
    """N(0, 0.02) weights and zero biases, as VirTex (after BERT) initialises its textual head."""
    if isinstance(module, nn.MultiheadAttention):
        module.in_proj_weight.data.normal_(0.0, 0.02)
        module.in_proj_bias.data.zero_()
    if isinstance(module, (nn.Linear, nn.Embedding)):
        module.weight.data.normal_(0.0, 0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            module.bias.data.zero_()
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            module.weight.data[module.padding_idx].zero_()
