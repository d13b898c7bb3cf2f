"""BERT-style WordPiece tokenization as Elasticsearch's ML node does it for uploaded PyTorch models.

Two stages, as in BERT and in ES's ``bert`` / ``mpnet`` tokenization configs:

1. basic tokenization: clean the text (drop NUL, U+FFFD and control characters, turn every kind of
   whitespace into a space), NFC-normalise, put spaces around CJK ideographs, split on whitespace,
   optionally lower-case and strip accents (``do_lower_case``), split off every punctuation character;
   special tokens such as ``[MASK]`` are never split;
2. WordPiece: greedy longest-match-first against the vocabulary, later pieces prefixed with ``##``;
   a word with no full match, or longer than 100 characters, becomes the unknown token.

Then special tokens are added (``[CLS] ... [SEP]`` for BERT, ``<s> ... </s>`` for MPNet) and the
sequence is truncated to ``max_sequence_length`` (``truncate: first|second``) or rejected (``none``).

Example::

    tok = WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "dog", "##s"], do_lower_case=True)
    tok.encode("Dogs!", max_sequence_length=8)  # [2, 4, 5, 1, 3]
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

MAX_CHARS_PER_WORD = 100

# Special tokens per tokenization type: (start, end, pad, unknown).
SPECIALS = {
    "bert": ("[CLS]", "[SEP]", "[PAD]", "[UNK]"),
    "bert_ja": ("[CLS]", "[SEP]", "[PAD]", "[UNK]"),
    "mpnet": ("<s>", "</s>", "<pad>", "<unk>"),
}


class TokenizationError(ValueError):
    """The input cannot be tokenized under the configuration (e.g. too long with ``truncate: none``)."""


def _is_whitespace(ch: str) -> bool:
    if ch in " \t\n\r":
        return True
    return unicodedata.category(ch) == "Zs"


def _is_control(ch: str) -> bool:
    if ch in "\t\n\r":
        return False
    return unicodedata.category(ch) in ("Cc", "Cf")


def _is_punctuation(ch: str) -> bool:
    cp = ord(ch)
    # ASCII symbols such as "$" or "^" are not Unicode punctuation but BERT treats them as such.
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_cjk(cp: int) -> bool:
    # The CJK Unified Ideographs blocks only: kana and hangul are written with spaces between words.
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0x20000 <= cp <= 0x2A6DF
        or 0x2A700 <= cp <= 0x2B73F
        or 0x2B740 <= cp <= 0x2B81F
        or 0x2B820 <= cp <= 0x2CEAF
        or 0xF900 <= cp <= 0xFAFF
        or 0x2F800 <= cp <= 0x2FA1F
    )


def _strip_accents(text: str) -> str:
    return "".join(ch for ch in unicodedata.normalize("NFD", text) if unicodedata.category(ch) != "Mn")


def basic_tokenize(text: str, *, do_lower_case: bool, never_split: Sequence[str] = ()) -> list[str]:
    """Split ``text`` into words and punctuation the way BERT's basic tokenizer does.

    Args:
        text: the raw input.
        do_lower_case: lower-case and strip accents.
        never_split: tokens kept whole (special tokens such as ``[MASK]``).

    Example::

        basic_tokenize("Hello, 世界!", do_lower_case=False)  # ['Hello', ',', '世', '界', '!']
    """
    keep = set(never_split)
    cleaned = []
    for ch in text:
        cp = ord(ch)
        if cp == 0 or cp == 0xFFFD or _is_control(ch):
            continue
        cleaned.append(" " if _is_whitespace(ch) else ch)
    spaced = []
    for ch in unicodedata.normalize("NFC", "".join(cleaned)):
        if _is_cjk(ord(ch)):
            spaced.extend((" ", ch, " "))
        else:
            spaced.append(ch)
    words: list[str] = []
    for word in "".join(spaced).split():
        if word in keep:
            words.append(word)
            continue
        if do_lower_case:
            word = _strip_accents(word.lower())
        current: list[str] = []
        for ch in word:
            if _is_punctuation(ch):
                if current:
                    words.append("".join(current))
                    current = []
                words.append(ch)
            else:
                current.append(ch)
        if current:
            words.append("".join(current))
    return words


class WordPieceTokenizer:
    """A WordPiece tokenizer over an uploaded vocabulary (tokens in id order).

    Args:
        vocabulary: the tokens, index = token id.
        do_lower_case: lower-case and strip accents before WordPiece.
        kind: ``bert`` (``[CLS]``/``[SEP]``) or ``mpnet`` (``<s>``/``</s>``).

    Example::

        tok = WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "hi"], do_lower_case=True)
        tok.tokenize("Hi you")  # ['hi', '[UNK]']
    """

    def __init__(self, vocabulary: Sequence[str], *, do_lower_case: bool = False, kind: str = "bert") -> None:
        self.vocabulary = list(vocabulary)
        self.ids = {token: i for i, token in enumerate(self.vocabulary)}
        self.do_lower_case = do_lower_case
        start, end, pad, unk = SPECIALS.get(kind, SPECIALS["bert"])
        self.start_id = self.ids.get(start)
        self.end_id = self.ids.get(end)
        self.pad_id = self.ids.get(pad, 0)
        self.unk_token = unk
        self.unk_id = self.ids.get(unk)
        self.never_split = [t for t in (start, end, pad, unk, "[MASK]", "<mask>") if t in self.ids]

    def _wordpiece(self, word: str) -> list[str]:
        if len(word) > MAX_CHARS_PER_WORD:
            return [self.unk_token]
        pieces = []
        start = 0
        while start < len(word):
            end = len(word)
            found = None
            while start < end:
                piece = word[start:end]
                if start > 0:
                    piece = "##" + piece
                if piece in self.ids:
                    found = piece
                    break
                end -= 1
            if found is None:
                return [self.unk_token]
            pieces.append(found)
            start = end
        return pieces

    def tokenize(self, text: str) -> list[str]:
        """The WordPiece tokens of ``text`` without special tokens."""
        tokens: list[str] = []
        for word in basic_tokenize(text, do_lower_case=self.do_lower_case, never_split=self.never_split):
            if word in self.never_split:
                tokens.append(word)
            else:
                tokens.extend(self._wordpiece(word))
        return tokens

    def encode(
        self,
        text: str,
        *,
        max_sequence_length: int = 512,
        with_special_tokens: bool = True,
        truncate: str = "first",
    ) -> list[int]:
        """Token ids of ``text`` with special tokens, truncated to ``max_sequence_length``.

        Raises:
            TokenizationError: with ``truncate="none"`` when the input is too long, as ES rejects it.
        """
        ids = [self.ids.get(t, self.unk_id if self.unk_id is not None else 0) for t in self.tokenize(text)]
        specials = [i for i in (self.start_id, self.end_id) if i is not None] if with_special_tokens else []
        room = max_sequence_length - len(specials)
        if len(ids) > room:
            if truncate == "none":
                raise TokenizationError(
                    f"Input too large. The tokenized input length [{len(ids) + len(specials)}] exceeds the "
                    f"maximum sequence length [{max_sequence_length}]"
                )
            ids = ids[: max(room, 0)]
        if with_special_tokens:
            if self.start_id is not None:
                ids = [self.start_id] + ids
            if self.end_id is not None:
                ids = ids + [self.end_id]
        return ids
