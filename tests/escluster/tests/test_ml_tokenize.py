"""The test cluster's WordPiece tokenizer gives the same ids as Hugging Face's ``BertTokenizer``."""

from __future__ import annotations

import pytest

from tests.escluster.tokenize import TokenizationError, WordPieceTokenizer, basic_tokenize
from tests.models.text import tiny_vocabulary

TEXTS = [
    "A dog in the snow",
    "Eine Katze über der Straße!",
    "Übung macht den Meister, Mädchen.",
    "собака на снегу",
    "Привет, мир! Красный дом.",
    "猫在海滩上的狗",
    "日本語の文章です。東京",
    "ねこ と いぬ カメラ",
    "كلب قطة ثلج",
    "Hello, World... (test) $5.00 #hashtag @user",
    "  tabs\tand\nnewlines\r\n ",
    "Café naïve résumé",
    "x" * 120,
    "[MASK] dog [CLS]",
    "don't stop-me now",
    "a\u0000b\u200bc\ufffdd",
    "e\u0301 combining accent",
    "ＡＢＣ full width",
    "123abc 4,5",
    "supercalifragilistic",
    "",
    "dogs playing running",
]


@pytest.fixture(scope="module")
def vocab_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    path.write_text("\n".join(tiny_vocabulary()) + "\n", encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("do_lower_case", [False, True])
def test_ids_match_hugging_face_bert_tokenizer(vocab_file: str, do_lower_case: bool) -> None:
    from transformers import BertTokenizer

    hf = BertTokenizer(vocab_file, do_lower_case=do_lower_case)
    ours = WordPieceTokenizer(tiny_vocabulary(), do_lower_case=do_lower_case)
    for text in TEXTS:
        assert ours.tokenize(text) == hf.tokenize(text), text
        for max_length in (5, 16, 512):
            expected = hf.encode(text, max_length=max_length, truncation=True)
            assert ours.encode(text, max_sequence_length=max_length) == expected, (text, max_length)


def test_cjk_characters_become_single_tokens_and_kana_does_not() -> None:
    assert basic_tokenize("猫在海滩", do_lower_case=False) == ["猫", "在", "海", "滩"]
    assert basic_tokenize("ねこ", do_lower_case=False) == ["ねこ"]


def test_lower_casing_strips_accents_only_when_asked() -> None:
    assert basic_tokenize("Über Café", do_lower_case=True) == ["uber", "cafe"]
    assert basic_tokenize("Über Café", do_lower_case=False) == ["Über", "Café"]


def test_word_longer_than_100_characters_is_unknown() -> None:
    tok = WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "##a"])
    assert tok.tokenize("a" * 100) == ["a"] + ["##a"] * 99
    assert tok.tokenize("a" * 101) == ["[UNK]"]


def test_without_special_tokens_and_truncate_none() -> None:
    tok = WordPieceTokenizer(["[PAD]", "[UNK]", "once", "twice", "thrice"])
    assert tok.encode("once twice", with_special_tokens=False) == [2, 3]
    assert tok.encode("once twice thrice", max_sequence_length=2, with_special_tokens=False) == [2, 3]
    with pytest.raises(
        TokenizationError, match=r"input length \[3\] exceeds the maximum sequence length \[2\]"
    ):
        tok.encode("once twice thrice", max_sequence_length=2, with_special_tokens=False, truncate="none")


def test_mpnet_uses_its_own_special_tokens() -> None:
    tok = WordPieceTokenizer(["<s>", "<pad>", "</s>", "<unk>", "dog"], kind="mpnet")
    assert tok.encode("dog cat") == [0, 4, 3, 2]
    assert tok.pad_id == 1
