"""zoo demo: a local web page to try one or more trained models on your own photos."""
from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="serve a local web page to try models on photos",
                       description="Serve a web page (on this machine only, by default) where you upload a photo, "
                                   "pick models, see the gray photo and each model's colorization side by side at "
                                   "full resolution, adjust the saturation and download the result. Ctrl-C stops it.")
    p.add_argument("--model", action="append", required=True, metavar="RUN_DIR_OR_CHECKPOINT",
                   help="a run folder or step-*.safetensors file; repeat for several models")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=7860, help="port (default: 7860; 0 picks a free one)")
    p.add_argument("--device", default="auto", metavar="DEV", help="auto (default: CUDA if available), cpu, cuda:1")
    p.set_defaults(run=run)


def run(args) -> int:
    from zoo.demo import serve

    serve(args.model, host=args.host, port=args.port, device=args.device)
    return 0
