"""The shipped CLIP BPE vocabulary and the processor's text side, checked against an independent
re-implementation of OpenAI's `simple_tokenizer` algorithm written here from its description."""

import gzip
import html
import json
import logging
from functools import cache
from pathlib import Path

import ftfy
import pytest
import regex
import torch

from modeling_asda.processing_asda import ASDAProcessor

TOKENIZER_DIR = Path(__file__).resolve().parent.parent / "modeling_asda" / "clip_tokenizer"
# The original BPE file, if scripts/build_clip_vocab.py's download step left it there.
WHEEL_GZ = Path("/tmp/oc/bpe_simple_vocab_16e6.txt.gz")
SOT, EOT = 49406, 49407


# ---------------------------------------------------------------- reference tokenizer (independent) --


def reference_merge_lines() -> list[str]:
    if WHEEL_GZ.is_file():
        lines = gzip.decompress(WHEEL_GZ.read_bytes()).decode("utf-8").split("\n")
        return lines[1 : 1 + 48894]
    return (TOKENIZER_DIR / "merges.txt").read_text(encoding="utf-8").split("\n")[1 : 1 + 48894]


def byte_alphabet() -> dict[int, str]:
    # Bytes that are printable latin-1 keep their character; the other 68 are shifted to 256, 257, ...
    keep = [b for b in range(256) if 33 <= b <= 126 or 161 <= b <= 172 or 174 <= b <= 255]
    table = {b: chr(b) for b in keep}
    for n, b in enumerate(b for b in range(256) if b not in table):
        table[b] = chr(256 + n)
    return table


class ReferenceCLIPTokenizer:
    pattern = regex.compile(
        r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+",
        regex.IGNORECASE,
    )

    def __init__(self):
        self.bytes = byte_alphabet()
        merges = [tuple(line.split()) for line in reference_merge_lines()]
        self.rank = {pair: r for r, pair in enumerate(merges)}
        # Vocabulary order: bytes in alphabet order (printables first), the same with </w>, merges, specials.
        alphabet = sorted(self.bytes.values(), key=ord)  # printable bytes first, then the shifted ones
        symbols = alphabet + [a + "</w>" for a in alphabet] + [a + b for a, b in merges]
        symbols += ["<|startoftext|>", "<|endoftext|>"]
        self.vocab = {s: i for i, s in enumerate(symbols)}

    @staticmethod
    def clean(text: str) -> str:
        text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
        return " ".join(text.split()).lower()

    @cache  # noqa: B019 -- one reference tokenizer per test session; it is never freed anyway
    def bpe(self, word: str) -> tuple[str, ...]:
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        while len(parts) > 1:
            ranked = [(self.rank.get(pair, float("inf")), pair) for pair in zip(parts, parts[1:])]
            best_rank, best = min(ranked)
            if best_rank == float("inf"):
                break
            merged, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and (parts[i], parts[i + 1]) == best:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        return tuple(parts)

    def encode(self, text: str) -> list[int]:
        ids = []
        for piece in self.pattern.findall(self.clean(text)):
            if piece in ("<|startoftext|>", "<|endoftext|>"):
                ids.append(self.vocab[piece])
                continue
            word = "".join(self.bytes[b] for b in piece.encode("utf-8"))
            ids.extend(self.vocab[s] for s in self.bpe(word))
        return ids


@pytest.fixture(scope="module")
def reference():
    return ReferenceCLIPTokenizer()


@pytest.fixture(scope="module")
def processor():
    return ASDAProcessor()


EXPRESSIONS = [
    "a photo of a cat",
    "The Man's RED Hat, on the LEFT!",
    "don't pick the guy who's standing; pick the one that'd sit...",
    "café crème brûlée über straße",
    "北京的狗 and a 猫",
    "person with 🐶 dog 👍🏽 emoji ❤️",
    "salt &amp; pepper &amp;amp; more &lt;b&gt;",
    "mojibake: cafÃ© and donâ€™t",
    "  lots \t of\n\n   whitespace   ",
    "numbers 123 and 4.5 and 3rd",
    "CamelCaseWord ALLCAPS snake_case hyphen-ated",
    "quote \"inside\" and 'single' quotes",
]


# ------------------------------------------------------------------------------------------ tests --


def test_shipped_files_match_the_reference_vocabulary(reference):
    vocab = json.loads((TOKENIZER_DIR / "vocab.json").read_text(encoding="utf-8"))
    assert len(vocab) == 49408
    assert vocab == reference.vocab
    merges = (TOKENIZER_DIR / "merges.txt").read_text(encoding="utf-8").split("\n")
    assert merges[0] == "#version: 0.2"
    assert [m for m in merges[1:] if m] == reference_merge_lines()


def test_bundled_tokenizer_is_the_full_clip_vocabulary(processor, reference):
    # A tokenizer built with keyword file arguments in transformers 5 has 3 tokens; this catches it.
    assert len(processor.tokenizer) == 49408
    assert processor.tokenizer.get_vocab() == reference.vocab
    assert (processor.tokenizer.bos_token_id, processor.tokenizer.eos_token_id) == (SOT, EOT)
    # Known ids of OpenAI's CLIP for "a photo of a cat".
    assert reference.encode("a photo of a cat") == [320, 1125, 539, 320, 2368]


@pytest.mark.parametrize("text", EXPRESSIONS)
def test_ids_equal_openai_bpe(processor, reference, text):
    expected = reference.encode(text)
    length = len(expected) + 2 + 3  # room for SOT, EOT and some padding: nothing truncated
    out = processor(text=text, max_length=length)
    row = [SOT, *expected, EOT]
    assert out["input_ids"][0].tolist() == row + [0] * (length - len(row))
    assert out["attention_mask"][0].tolist() == [1] * len(row) + [0] * (length - len(row))


def test_normalisation_matches_openai(reference):
    assert reference.clean("salt &amp;amp; Pepper") == "salt & pepper"
    assert reference.clean("cafÃ©") == "café"
    # The two spellings then tokenize identically through the processor.
    processor = ASDAProcessor()
    a = processor(text=["salt &amp;amp; Pepper", "cafÃ©"])["input_ids"]
    b = processor(text=["salt & pepper", "café"])["input_ids"]
    assert torch.equal(a, b)


def test_fixed_length_padding_and_mask(processor, reference):
    out = processor(text=["hi !; dog", "the tall man on the left"])
    ids, mask = out["input_ids"], out["attention_mask"]
    assert ids.shape == mask.shape == (2, 17) and ids.dtype == mask.dtype == torch.long
    expected = [SOT, *reference.encode("hi !; dog"), EOT]
    assert 0 in expected  # "!" inside a punctuation run is id 0, the padding id
    assert ids[0, : len(expected)].tolist() == expected and ids[0, len(expected) :].eq(0).all()
    # The mask is positional, so the "!" token (id 0) stays attended.
    assert mask[0].tolist() == [1] * len(expected) + [0] * (17 - len(expected))


def test_truncation_keeps_eot_last_and_warns(processor, reference, caplog):
    long_text = " ".join(f"word{i % 7} red" for i in range(100))  # 200 words
    bpe = reference.encode(long_text)
    with caplog.at_level(logging.WARNING):
        out = processor(text=["short one", long_text])
    assert out["input_ids"][1].tolist() == [SOT, *bpe[:15], EOT]
    assert out["attention_mask"][1].eq(1).all()
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"text 1 lost {len(bpe) - 15} of {len(bpe)} tokens" in m for m in messages), messages
    # An expression that fits exactly is not truncated and does not warn.
    caplog.clear()
    fits = " ".join(["cat"] * 15)
    with caplog.at_level(logging.WARNING):
        out = processor(text=fits)
    assert out["input_ids"][0].tolist() == [SOT, *reference.encode(fits), EOT]
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]


@pytest.mark.parametrize("bad, index", [(["fine", ""], 1), (["   \t\n "], 0), (["ok", "ok", "&nbsp; "], 2)])
def test_empty_text_is_an_error_naming_the_index(processor, bad, index):
    with pytest.raises(ValueError, match=f"text {index} is empty"):
        processor(text=bad)


@pytest.mark.parametrize("bad, message", [(["fine", 3], "text 1 is a int"), (None, "pass images"), ([], "empty list")])
def test_non_string_text_is_an_error(processor, bad, message):
    with pytest.raises(ValueError, match=message):
        processor(text=bad)


def test_batch_decode_stops_at_eot(processor):
    ids = processor(text=["The dog!", "a cat"])["input_ids"]
    assert [t.replace(" ", "") for t in processor.batch_decode(ids)] == ["thedog!", "acat"]


def test_max_length_is_validated():
    with pytest.raises(ValueError, match="max_length"):
        ASDAProcessor(max_length=2)
