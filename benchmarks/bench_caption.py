"""Report captioning on this CPU.

Tokenising: 100,000 phantom reports (10,000 distinct: 100 phantoms, 100 phrasings and orders
each; about 21 words a report) into padded caption tensors, by `ReportTokenizer.encode` (one
batched call into tokenizers' Rust) against encoding them one by one as a dataset's
`__getitem__` would. The table's ms per report, inverted, gives reports/s.

A captioning step (forward, backward, AdamW) on ResNet-50 at 224², batch 32, VirTex's one decoder
layer of width 1024 each way (16 heads, feed-forward 4096), a 10,000-token vocabulary and
captions of 20 to 128 tokens: cxrfast's `Caption` against the straightforward formulation, two
`nn.TransformerDecoder` heads with unshared embeddings and output layers, the padding masked and
the loss over every position (`helpers.naive_caption`, the tests' reference). The same rows for
the textual head alone, on the ResNet's (32, 2048, 7, 7) features, show what the head costs
without the encoder's share."""

from __future__ import annotations

import pytest
import torch
from helpers.naive_caption import NaiveBicaptioning

from cxrfast.data.report_tokenizer import ReportTokenizer
from cxrfast.data.synthetic import make_phantom
from cxrfast.data.synthetic_reports import phantom_report
from cxrfast.methods import create_method
from cxrfast.models import create_backbone

REPORTS, BATCH, SIZE, VOCAB, MAX_LENGTH = 100_000, 32, 224, 10_000, 128
HEAD = dict(width=1024, layers=1, heads=16, feedforward=4096, dropout=0.1)


@pytest.fixture(scope="module")
def reports() -> list[str]:
    distinct = [phantom_report(make_phantom(seed, 128, 128), phrasing) for seed in range(100)
                for phrasing in range(100)]
    return distinct * (REPORTS // len(distinct))


@pytest.mark.parametrize("role", ["cxrfast", "baseline"])
def test_tokenising(benchmark, tag, reports, role):
    tokenizer = ReportTokenizer.train(reports[:10_000], vocab_size=VOCAB)
    benchmark.group = f"tokenising {REPORTS:,} reports into captions of at most {MAX_LENGTH} tokens"
    tag(role, REPORTS, "one report at a time" if role == "baseline" else "batched encode")
    if role == "cxrfast":
        def run():
            return tokenizer.encode(reports, MAX_LENGTH)
    else:
        def run():
            return [tokenizer.encode([report], MAX_LENGTH) for report in reports]
    result = benchmark.pedantic(run, rounds=3, warmup_rounds=1, iterations=1)
    tokens = result[0] if role == "cxrfast" else result[-1][0]
    assert tokens[0, 0] == 1  # [SOS]


def _captions(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.randint(20, MAX_LENGTH + 1, (BATCH,), generator=generator)
    tokens = torch.zeros(BATCH, int(lengths.max()), dtype=torch.long)
    for k, n in enumerate(lengths.tolist()):
        tokens[k, 0], tokens[k, n - 1] = 1, 2
        tokens[k, 1:n - 1] = torch.randint(3, VOCAB, (n - 2,), generator=generator)
    return tokens, lengths


def _tokenizer() -> ReportTokenizer:
    tokenizer = ReportTokenizer.train(["a"], vocab_size=300)
    tokenizer.tokenizer.add_tokens([f"w{k}" for k in range(VOCAB - tokenizer.vocab_size)])
    assert tokenizer.vocab_size == VOCAB
    return tokenizer


@pytest.mark.parametrize("part", ["step", "head"])
@pytest.mark.parametrize("role", ["cxrfast", "baseline"])
def test_captioning_step(benchmark, tag, role, part):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    tokens, lengths = _captions(g)
    method = create_method("caption", create_backbone("resnet50"), SIZE, tokenizer=_tokenizer(),
                           max_length=MAX_LENGTH, **HEAD)
    encoder = method.backbone if part == "step" else None
    head = method.decoder if role == "cxrfast" else NaiveBicaptioning(method.backbone.num_features, VOCAB,
                                                                        max_length=MAX_LENGTH, **HEAD)
    inputs = torch.rand(BATCH, 1, SIZE, SIZE, generator=g) if part == "step" else torch.randn(BATCH, 2048, 7, 7,
                                                                                               generator=g)
    modules = torch.nn.ModuleList([head] + ([encoder] if encoder is not None else []))
    optimizer = torch.optim.AdamW(modules.parameters(), lr=1e-4)

    def step():
        features = method.feature_map(inputs) if part == "step" else inputs
        loss = head.loss(features, tokens, lengths)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    what = "step, ResNet-50 224²" if part == "step" else "textual head alone, (32, 2048, 7, 7) features"
    benchmark.group = f"captioning {what}, batch {BATCH}, width 1024, one layer each way"
    tag(role, BATCH, "two unshared nn.TransformerDecoder heads" if role == "baseline" else None)
    loss = benchmark.pedantic(step, rounds=3, warmup_rounds=1, iterations=1)
    assert torch.isfinite(loss)
