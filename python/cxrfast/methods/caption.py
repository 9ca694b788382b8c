"""Report captioning (RadTex, Quigley et al. 2022, after VirTex): the encoder learns to see by
having a text decoder write the image's report, forwards and backwards
(`cxrfast.models.caption_decoder`).

The data owns the vocabulary: before the first step `training_views` trains byte-level BPE on the
pretraining images' reports (`cxrfast.data.report_tokenizer`) and saves it in the run as
`tokenizer.json`, which a resumed run loads instead (each rank trains the same vocabulary, the
training being deterministic). A view is mirrored with probability ½ and its report's left and
right swapped with it; crops keep at least 80% of the image, so that a described finding is
rarely cut out (VirTex's 20% suits photographs, not a report that names the costophrenic angle).

The encoder's last feature map is the decoder's memory: a CNN's (B, C, h, w), or a ViT's patch
tokens on their grid. `caption` decodes images greedily or by beam search for a qualitative look.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import Tensor, nn

from cxrfast.data.augment import Crops
from cxrfast.data.batch import Batch
from cxrfast.data.caption_views import CaptionViews, image_reports
from cxrfast.data.report_tokenizer import EOS_ID, PAD_ID, SOS_ID, ReportTokenizer
from cxrfast.errors import ConfigError
from cxrfast.methods.method import Method
from cxrfast.models.caption_decoder import CaptionDecoder

TOKENIZER_FILE = "tokenizer.json"


class Caption(Method):
    name = "caption"
    views = 1
    augment_defaults = dict(scale=(0.8, 1.0), hflip=0.5, rotation=5.0, brightness=0.1, contrast=0.1, gamma=0.1,
                            blur=0.2)
    # The decoder reads the backbone's forward_features: a head's norm after the pooling (ConvNeXt's)
    # gets no gradient.
    ddp_unused_parameters = True

    def __init__(self, backbone: nn.Module, *, tokenizer: ReportTokenizer | None = None, vocab_size: int = 10000,
                 max_length: int = 128, width: int = 1024, layers: int = 1, heads: int = 16, feedforward: int = 4096,
                 dropout: float = 0.1, bidirectional: bool = True):
        super().__init__()
        if tokenizer is None:
            raise ConfigError("method caption: its tokenizer comes from the reports (Caption.training_views)")
        if width % heads:
            raise ConfigError(f"method caption: width {width} must be a multiple of heads {heads}")
        self.backbone, self.tokenizer, self.max_length = backbone, tokenizer, max_length
        self.decoder = CaptionDecoder(backbone.num_features, tokenizer.vocab_size, width=width, layers=layers,
                                      heads=heads, feedforward=feedforward, max_length=max_length, dropout=dropout,
                                      bidirectional=bidirectional)

    @classmethod
    def check_options(cls, image_size: int, options: dict) -> None:
        super().check_options(image_size, options)
        if "tokenizer" in options and not isinstance(options["tokenizer"], ReportTokenizer):
            raise ConfigError("method caption: the tokenizer is trained on the reports, not an option")
        if options.get("max_length", 128) < 2 or options.get("vocab_size", 10000) < 259:
            raise ConfigError("method caption: max_length at least 2 ([SOS] and [EOS]) and vocab_size at least 259 "
                              "(the 256 bytes and three specials)")

    @classmethod
    def training_views(cls, images, crops: list[Crops], *, seed: int, run: Path, options: dict,
                       rank: int = 0, resume: bool = False) -> tuple[CaptionViews, dict]:
        reports = image_reports(images)
        saved = Path(run) / TOKENIZER_FILE
        if resume:
            tokenizer = ReportTokenizer.load(saved)
        else:
            tokenizer = ReportTokenizer.train(reports, options.get("vocab_size", 10000))
            if rank == 0:
                saved.parent.mkdir(parents=True, exist_ok=True)
                tokenizer.save(saved)
        views = CaptionViews(images, reports, tokenizer, crops[0].augment, options.get("max_length", 128), seed)
        return views, {"tokenizer": tokenizer}

    def feature_map(self, images: Tensor) -> Tensor:
        """The encoder's last features as (B, C, h, w): a ViT's patch tokens without its prefix."""
        features = self.backbone.forward_features(images)
        if features.ndim == 3:
            tokens = features[:, getattr(self.backbone, "num_prefix_tokens", 0):]
            patch = self.backbone.patch_embed.patch_size
            grid = (images.shape[-2] // patch[0], images.shape[-1] // patch[1])
            return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], *grid)
        return features

    def training_step(self, batch: Batch) -> Tensor:
        if batch.tokens is None:
            raise ValueError("caption: a batch needs its reports' tokens (CaptionViews)")
        lengths = (batch.tokens != PAD_ID).sum(1)
        return self.decoder.loss(self.feature_map(batch.views[0]), batch.tokens, lengths)

    @torch.no_grad()
    def caption(self, images: Tensor, beam: int = 1, max_length: int | None = None) -> list[str]:
        """Reports written for (B, C, H, W) images by the forward decoder."""
        ids = self.decoder.generate(self.feature_map(images), SOS_ID, EOS_ID, beam=beam, max_length=max_length)
        return [self.tokenizer.decode(caption) for caption in ids]

    def backbone_copy(self) -> nn.Module:
        return copy.deepcopy(self.backbone)
