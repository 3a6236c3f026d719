#!/usr/bin/env python
"""A web demo of an ASDA checkpoint (Gradio; `pip install "asda-transformers[demo]"`).

    python scripts/demo_app.py --model outputs/asda-tiny-synthetic              # http://127.0.0.1:7860
    python scripts/demo_app.py --model outputs/asda-tiny-onnx --backend onnxruntime --int8

Upload an image or pick an example, type one or several expressions (one per line), and see the overlay,
the mask PNG at the original size, the chosen layers, the score and the latency. The API endpoint
`/segment` takes (image, text) and returns (overlay, mask, info JSON); see docs/demo.md.
"""

import argparse
import sys

from modeling_asda.tools.demo_app import build_demo, load_segmenter


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="checkpoint folder / Hub id, or an export_onnx.py folder")
    parser.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch")
    parser.add_argument("--int8", action="store_true", help="with --backend onnxruntime: model_int8.onnx")
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to serve other machines")
    parser.add_argument("--port", type=int, default=7860)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    segmenter = load_segmenter(args.model, backend=args.backend, int8=args.int8)
    build_demo(segmenter).launch(server_name=args.host, server_port=args.port)


if __name__ == "__main__":
    main()
