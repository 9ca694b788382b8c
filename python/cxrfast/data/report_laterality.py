"""Left and right in a report, swapped as a horizontal flip swaps them in its image.

VirTex swaps them by substring replacement, which turns "bright" into "bleft" and "upright" into
"upleft" (shared/research/methods.md, section 5). Here only whole words change: "left" and
"right" and their derived words ("leftward", "rightmost", "left-sided"), the abbreviations "lt"
and "rt", and the capital letters "L" and "R" standing alone ("R/L", "L hilum"; "L1" and "2L"
are other words). Each keeps its case: "Left" becomes "Right", "LEFT" becomes "RIGHT".
"""

from __future__ import annotations

import re

_SWAPPED = {"left": "right", "right": "left", "lt": "rt", "rt": "lt"}
_WORD = re.compile(r"\b(left|right)(wards?|most)?\b|\b(lt|rt)\b|\b([LR])\b", re.IGNORECASE)


def _with_case(word: str, like: str) -> str:
    if like.isupper() and len(like) > 1:
        return word.upper()
    return word.capitalize() if like[0].isupper() else word


def _swap(match: re.Match) -> str:
    side, suffix, abbreviation, letter = match.groups()
    if letter is not None:  # only the capitals stand for a side; "l" and "r" alone are not
        return {"L": "R", "R": "L"}.get(letter, letter)
    word = side or abbreviation
    return _with_case(_SWAPPED[word.lower()], word) + (suffix or "")


def swap_laterality(text: str) -> str:
    """`text` with the patient's left and right exchanged, word by word, case kept."""
    return _WORD.sub(_swap, text)
