"""Report captioning, part of the pretraining suite.

Tokenising: phantom reports (in full 100,000: 10,000 distinct, 100 phantoms with 100 phrasings
and orders each, about 21 words a report) into padded caption tensors, by `ReportTokenizer.encode`
(one batched call into tokenizers' Rust) against encoding them one by one as a dataset's
`__getitem__` would; the two must give the same captions. Figures are per report (reports/s,
inverted). Tokenising runs on the CPU whatever the device.

A captioning step (forward, backward, AdamW) on ResNet-50 at 224², batch 32, VirTex's one decoder
layer of width 1024 each way (16 heads, feed-forward 4096), a 10,000-token vocabulary and
captions of 20 to 128 tokens: cxrfast's `Caption` against the straightforward formulation, two
`nn.TransformerDecoder` heads with unshared embeddings and output layers, the padding masked and
the loss over every position (`cxrfast.models.caption_decoder_reference`, the tests' reference
too). The same rows for the textual head alone, on the ResNet's last feature map (32, 2048, 7, 7),
show what the head costs without the encoder's share.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from cxrfast.bench.case import Case, Step, Workspace
from cxrfast.bench.training_step import training_step
from cxrfast.data.report_tokenizer import EOS_ID, SOS_ID, ReportTokenizer
from cxrfast.data.synthetic import make_phantom
from cxrfast.data.synthetic_reports import phantom_report
from cxrfast.methods import create_method
from cxrfast.models import create_backbone
from cxrfast.models.caption_decoder_reference import NaiveBicaptioning

SUITE = "pretrain"
AGREEING = 200  # reports whose captions the two tokenisings must agree on before they are timed


@dataclass(frozen=True)
class Tokenising:
    reports: int
    phantoms: int  # distinct reports: phantoms × phrasings, repeated up to `reports`
    phrasings: int
    vocab: int
    max_length: int = 128


@dataclass(frozen=True)
class Captioning:
    backbone: str
    name: str  # in the table
    channels: int  # of its last feature map, at a 32nd of the side
    side: int
    batch: int
    vocab: int
    shortest: int  # captions' lengths are uniform from this to max_length tokens
    max_length: int
    head: dict = field(default_factory=dict)  # the decoder's width, layers, heads, feed-forward, dropout


TOKENISING = {"full": Tokenising(100_000, 100, 100, 10_000), "quick": Tokenising(10_000, 100, 10, 2_000),
              "tiny": Tokenising(200, 20, 10, 300)}
CAPTIONING = {
    "full": Captioning("resnet50", "ResNet-50", 2048, 224, 32, 10_000, 20, 128,
                       dict(width=1024, layers=1, heads=16, feedforward=4096, dropout=0.1)),
    "quick": Captioning("resnet18", "ResNet-18", 512, 128, 8, 2_000, 20, 64,
                        dict(width=256, layers=1, heads=4, feedforward=1024, dropout=0.1)),
    "tiny": Captioning("resnet18", "ResNet-18", 512, 64, 4, 300, 8, 24,
                       dict(width=64, layers=1, heads=2, feedforward=128, dropout=0.1)),
}


def _reports(sizes: Tokenising) -> tuple[list[str], list[str]]:
    """The distinct reports, and all of them."""
    phantoms = (make_phantom(seed, 128, 128) for seed in range(sizes.phantoms))
    distinct = [phantom_report(phantom, phrasing) for phantom in phantoms for phrasing in range(sizes.phrasings)]
    return distinct, distinct * (sizes.reports // len(distinct))


def _tokenising(sizes: Tokenising, role: str):
    def make(workspace: Workspace) -> Step:
        def build():
            distinct, reports = _reports(sizes)
            return ReportTokenizer.train(distinct, vocab_size=sizes.vocab), reports

        tokenizer, reports = workspace.shared(("reports", sizes), build)
        sample = reports[:AGREEING]
        batched, lengths = tokenizer.encode(sample, sizes.max_length)
        for k, report in enumerate(sample):
            alone = tokenizer.encode([report], sizes.max_length)[0][0]
            if not torch.equal(batched[k, :int(lengths[k])], alone) or alone[0] != SOS_ID or alone[-1] != EOS_ID:
                raise AssertionError(f"report {k}: batched and one-by-one captions differ")
        if role == "cxrfast":
            return Step(lambda: tokenizer.encode(reports, sizes.max_length))
        return Step(lambda: [tokenizer.encode([report], sizes.max_length) for report in reports])

    return make


def _vocabulary(size: int) -> ReportTokenizer:
    """A tokenizer of `size` tokens: the bytes and specials, and placeholder words for the rest."""
    tokenizer = ReportTokenizer.train(["a"], vocab_size=size)
    tokenizer.tokenizer.add_tokens([f"w{k}" for k in range(size - tokenizer.vocab_size)])
    if tokenizer.vocab_size != size:
        raise AssertionError(f"the vocabulary holds {tokenizer.vocab_size} tokens, not {size}")
    return tokenizer


def _captions(sizes: Captioning, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Right-padded captions [SOS] words [EOS] of uniformly drawn lengths."""
    lengths = torch.randint(sizes.shortest, sizes.max_length + 1, (sizes.batch,), generator=generator)
    tokens = torch.zeros(sizes.batch, int(lengths.max()), dtype=torch.long)
    for k, n in enumerate(lengths.tolist()):
        tokens[k, 0], tokens[k, n - 1] = SOS_ID, EOS_ID
        tokens[k, 1:n - 1] = torch.randint(3, sizes.vocab, (n - 2,), generator=generator)
    return tokens, lengths


def _captioning(sizes: Captioning, part: str, role: str):
    def make(workspace: Workspace) -> Step:
        device = workspace.device
        torch.manual_seed(0)
        g = torch.Generator().manual_seed(1)
        tokens, lengths = (t.to(device) for t in _captions(sizes, g))
        tokenizer = workspace.shared(("vocabulary", sizes.vocab), lambda: _vocabulary(sizes.vocab))
        method = create_method("caption", create_backbone(sizes.backbone), sizes.side, tokenizer=tokenizer,
                               max_length=sizes.max_length, **sizes.head).to(device)
        head = method.decoder if role == "cxrfast" else NaiveBicaptioning(
            sizes.channels, sizes.vocab, max_length=sizes.max_length, **sizes.head).to(device)
        if part == "step":
            inputs, trained = torch.rand(sizes.batch, 1, sizes.side, sizes.side, generator=g), [head, method.backbone]
        else:
            grid = sizes.side // 32
            inputs, trained = torch.randn(sizes.batch, sizes.channels, grid, grid, generator=g), [head]
        inputs = inputs.to(device)
        optimizer = torch.optim.AdamW(torch.nn.ModuleList(trained).parameters(), lr=1e-4)

        def loss() -> Tensor:
            return head.loss(method.feature_map(inputs) if part == "step" else inputs, tokens, lengths)

        return Step(training_step(loss, optimizer))

    return make


def cases(scale: str, device: str) -> list[Case]:
    sizes = TOKENISING[scale]
    group = f"tokenising {sizes.reports:,} reports into captions of at most {sizes.max_length} tokens"
    found = [Case(SUITE, group, "batched encode", "cxrfast", sizes.reports, _tokenising(sizes, "cxrfast"),
                  unit="report"),
             Case(SUITE, group, "one report at a time", "baseline", sizes.reports, _tokenising(sizes, "baseline"),
                  unit="report")]
    sizes = CAPTIONING[scale]
    grid = sizes.side // 32
    head = f"batch {sizes.batch}, width {sizes.head['width']}, one layer each way"
    for part, what in (("step", f"step, {sizes.name} {sizes.side}²"),
                       ("head", f"textual head alone, ({sizes.batch}, {sizes.channels}, {grid}, {grid}) features")):
        group = f"captioning {what}, {head}"
        found += [Case(SUITE, group, "cxrfast", "cxrfast", sizes.batch, _captioning(sizes, part, "cxrfast")),
                  Case(SUITE, group, "two unshared nn.TransformerDecoder heads", "baseline", sizes.batch,
                       _captioning(sizes, part, "baseline"))]
    return found
