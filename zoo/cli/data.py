"""zoo data cache: decode and resize a source once into a persistent, memory-mapped cache (see zoo.datacache)."""
from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("data", help="prepare training data (the decoded cache)",
                       description="Prepare training data once for every run that uses it.")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    c = actions.add_parser("cache", help="decode and resize a source once into a cache that zoo train reads",
                           description="Decode every image of SOURCE, resized to SIZE x SIZE, into memory-mapped "
                                       "shards under the cache folder ($ZOO_CACHE_DIR, else ~/.cache/zoo/data; never "
                                       "inside the data folder). zoo train uses it whenever its data.load_size (or "
                                       "image_size) is SIZE and the files have not changed. Ctrl-C keeps the finished "
                                       "shards: run the same command again to continue.")
    c.add_argument("source", metavar="SOURCE", help="a folder, coco:PATH, coco-sample or hf:NAME_OR_PATH[:split]")
    c.add_argument("--size", type=int, required=True, metavar="N",
                   help="side of the cached square images: the run's data.load_size, or its image size without one")
    c.add_argument("--cache-dir", metavar="DIR", help="cache folder (default: $ZOO_CACHE_DIR, else ~/.cache/zoo/data; "
                                                      "zoo train reads $ZOO_CACHE_DIR)")
    c.add_argument("--workers", type=int, default=None, metavar="N",
                   help="decoding processes (default: CPUs - 1, at most 8)")
    c.add_argument("--image-column", metavar="NAME", help="the image column of an hf: source")
    c.add_argument("--verify", action="store_true", help="also check every shard's checksum (reads the whole cache)")
    c.add_argument("--shard-images", type=int, default=None, metavar="N", help=argparse_suppress())
    c.set_defaults(run=run)


def argparse_suppress():
    import argparse

    return argparse.SUPPRESS


def run(args) -> int:
    import os

    from zoo import datacache
    from zoo.sources import resolve_source
    from zoo.errors import DataError
    from zoo.text import log_line, print_path

    if not 16 <= args.size <= 8192:
        raise DataError(f"--size {args.size} is out of range: give the run's load size, 16 to 8192")
    if args.source == "embedded":
        raise DataError("the embedded photos need no cache (nine images, decoded in a second): give a folder, "
                        "coco:PATH, coco-sample or hf:NAME_OR_PATH")
    source = resolve_source(args.source, image_column=args.image_column)
    workers = args.workers if args.workers is not None else max(1, min(8, (os.cpu_count() or 2) - 1))

    log = log_line

    try:
        cache = datacache.build(source, args.size, log, root=args.cache_dir, workers=workers,
                                shard_rows=args.shard_images)
    except KeyboardInterrupt:
        log(f"zoo: interrupted; the finished shards are kept in {datacache.cache_folder(source, args.size, args.cache_dir)}"
            f": run the same command again to continue")
        return 130
    if args.verify:
        bad = datacache.verify(cache)
        if bad:
            for name in bad:  # zoo's own files: dropped so that the next build redoes them
                (cache.folder / name).unlink(missing_ok=True)
                (cache.folder / name.replace(".u8", ".json")).unlink(missing_ok=True)
            raise DataError(f"the decoded cache {cache.folder} is damaged ({', '.join(bad)} fail their checksum; "
                            f"removed): run the same command again to rebuild them")
        log(f"zoo: verified {len(cache.shards)} shards")
    print_path(cache.folder)
    return 0
