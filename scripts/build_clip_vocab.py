#!/usr/bin/env python
"""Regenerate `modeling_asda/clip_tokenizer/{vocab.json,merges.txt}` from OpenAI's CLIP BPE file.

The BPE file (`bpe_simple_vocab_16e6.txt.gz`) ships inside the `open_clip_torch` wheel. Fetch the
wheel WITHOUT installing it (installing pulls torchvision, which breaks this torch):

    pip download --no-deps open_clip_torch -d /tmp/oc
    python scripts/build_clip_vocab.py /tmp/oc/open_clip_torch-*.whl

A path to the extracted `.txt.gz` works too. The conversion follows OpenAI's `SimpleTokenizer`:
merges are lines 1..48894 of the file (line 0 is a header); the vocabulary is the 256 byte
characters, the same with `</w>`, every merge joined, then `<|startoftext|>` and `<|endoftext|>`.
"""

import argparse
import gzip
import hashlib
import io
import json
import sys
import zipfile
from pathlib import Path

BPE_NAME = "open_clip/bpe_simple_vocab_16e6.txt.gz"
# sha256 of the file in open_clip_torch 3.3.0 (identical to OpenAI's original CLIP release).
KNOWN_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
NUM_MERGES = 49152 - 256 - 2  # CLIP's vocabulary is 49152 BPE symbols + 2 special tokens
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "modeling_asda" / "clip_tokenizer"


def byte_symbols():
    """The 256 printable stand-ins GPT-2/CLIP use for raw bytes, in OpenAI's order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    symbols = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in symbols:
            # Bytes without a printable glyph are shifted above 255 so BPE never sees whitespace/control.
            symbols[b] = chr(256 + extra)
            extra += 1
    return [symbols[b] for b in printable] + [symbols[b] for b in range(256) if b not in printable]


def read_bpe_bytes(source: Path) -> bytes:
    if source.suffix == ".whl":
        with zipfile.ZipFile(source) as wheel:
            try:
                return wheel.read(BPE_NAME)
            except KeyError:
                raise SystemExit(f"{source} has no {BPE_NAME}; is it an open_clip_torch wheel?") from None
    return source.read_bytes()


def build(gz_bytes: bytes):
    lines = gzip.open(io.BytesIO(gz_bytes)).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : NUM_MERGES + 1]]
    if len(merges) != NUM_MERGES or any(len(m) != 2 for m in merges):
        raise SystemExit("unexpected BPE file layout: expected 48894 merge lines of two symbols after the header")
    symbols = byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: index for index, token in enumerate(tokens)}
    if len(vocab) != len(tokens):
        raise SystemExit("duplicate tokens in the built vocabulary")
    return vocab, merges


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="open_clip_torch wheel or bpe_simple_vocab_16e6.txt.gz")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: the package's)")
    args = parser.parse_args(argv)

    gz_bytes = read_bpe_bytes(args.source)
    digest = hashlib.sha256(gz_bytes).hexdigest()
    if digest != KNOWN_SHA256:
        print(f"warning: sha256 {digest} differs from the known CLIP file {KNOWN_SHA256}", file=sys.stderr)
    vocab, merges = build(gz_bytes)

    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "vocab.json", "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(args.out / "merges.txt", "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        f.writelines(f"{a} {b}\n" for a, b in merges)
    print(f"wrote {len(vocab)} tokens and {len(merges)} merges to {args.out} (source sha256 {digest})")


if __name__ == "__main__":
    main()
