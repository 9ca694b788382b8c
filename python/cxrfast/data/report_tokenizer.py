"""The captioning vocabulary: byte-level BPE trained on the training reports.

Built on Hugging Face `tokenizers` rather than SentencePiece (VirTex's): its byte-level model
has no unknown token, so any report (accents, symbols, "≥") decodes back exactly; it batches
encoding across threads in Rust (reports/s in BENCHMARKS.md), and it saves one JSON file that
goes into the run. Its BPE training is deterministic: the same reports give the same vocabulary.

Ids 0, 1 and 2 are the padding, start and end tokens. A caption is [SOS] report [EOS], cut to
`max_length` with the end token kept (VirTex cuts it off, so a long report's model never learns
to stop), and padded with [PAD], which the loss ignores.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from cxrfast.atomic import write_text_atomically
from cxrfast.errors import ConfigError

PAD, SOS, EOS = "[PAD]", "[SOS]", "[EOS]"
SPECIALS = (PAD, SOS, EOS)
PAD_ID, SOS_ID, EOS_ID = 0, 1, 2


def _tokenizers():
    try:
        import tokenizers
    except ImportError as e:  # a dependency of cxrfast: only a broken install lacks it
        raise ConfigError(f"report captioning needs Hugging Face tokenizers ({e}); pip install tokenizers") from e
    return tokenizers


class ReportTokenizer:
    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        ids = [tokenizer.token_to_id(t) for t in SPECIALS]
        if ids != [PAD_ID, SOS_ID, EOS_ID]:
            raise ConfigError(f"a report tokenizer needs {', '.join(SPECIALS)} as ids 0, 1, 2, not {ids}")

    @classmethod
    def train(cls, reports: Iterable[str], vocab_size: int = 4096) -> ReportTokenizer:
        """Byte-level BPE of at most `vocab_size` tokens (the 256 bytes and the specials included)."""
        tk = _tokenizers()
        if vocab_size < 256 + len(SPECIALS):
            raise ConfigError(f"vocab_size {vocab_size}: byte-level BPE needs at least {256 + len(SPECIALS)}")
        tokenizer = tk.Tokenizer(tk.models.BPE())
        tokenizer.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = tk.decoders.ByteLevel()
        trainer = tk.trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIALS), show_progress=False,
                                         initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet())
        tokenizer.train_from_iterator(reports, trainer=trainer)
        return cls(tokenizer)

    @classmethod
    def load(cls, path: str | os.PathLike) -> ReportTokenizer:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: no report tokenizer")
        try:
            return cls(_tokenizers().Tokenizer.from_file(str(path)))
        except Exception as e:  # the library's own error types; name the file
            raise ConfigError(f"{path}: not a tokenizers JSON file ({e})") from e

    def save(self, path: str | os.PathLike) -> Path:
        return write_text_atomically(path, self.tokenizer.to_str())

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, reports: Sequence[str], max_length: int) -> tuple[Tensor, Tensor]:
        """(B, L) int64 captions [SOS] ... [EOS] padded with [PAD] (L the longest, at most
        `max_length`), and each caption's length."""
        if max_length < 2:
            raise ConfigError(f"max_length {max_length}: a caption holds at least [SOS] and [EOS]")
        words = [e.ids[:max_length - 2] for e in self.tokenizer.encode_batch(list(reports), add_special_tokens=False)]
        # Packed in numpy with one scatter: a row at a time in torch took longer than the encoding.
        counts = np.fromiter(map(len, words), np.int64, len(words))
        flat = np.fromiter(itertools.chain.from_iterable(words), np.int64, int(counts.sum()))
        tokens = np.full((len(words), int(counts.max(initial=0)) + 2), PAD_ID, np.int64)
        rows = np.repeat(np.arange(len(words)), counts)
        tokens[rows, np.arange(flat.size) - np.repeat(np.cumsum(counts) - counts, counts) + 1] = flat
        tokens[:, 0], tokens[np.arange(len(words)), counts + 1] = SOS_ID, EOS_ID
        return torch.from_numpy(tokens), torch.from_numpy(counts + 2)

    def decode(self, ids: Sequence[int]) -> str:
        """The text of a caption's ids, up to its end token, the specials left out."""
        ids = list(ids)
        if EOS_ID in ids:
            ids = ids[:ids.index(EOS_ID)]
        return self.tokenizer.decode([i for i in ids if i not in (PAD_ID, SOS_ID)], skip_special_tokens=True)
