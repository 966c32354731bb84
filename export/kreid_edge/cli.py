"""Device CLI: ``kreid-edge enroll`` a gallery folder, ``kreid-edge match`` query crops."""

from __future__ import annotations

import argparse
import os
import sys

from kreid_edge.matcher import GalleryMatcher
from kreid_edge.runtime import load_embedder

_EXT = (".jpg", ".jpeg", ".png", ".bmp")


def _gallery_folder(folder: str):
    if not os.path.isdir(folder):
        raise SystemExit(f"--gallery {folder}: not a folder (expected one sub-folder per identity)")
    images, ids = [], []
    for identity in sorted(os.listdir(folder)):
        sub = os.path.join(folder, identity)
        if os.path.isdir(sub):
            for name in sorted(os.listdir(sub)):
                if name.lower().endswith(_EXT):
                    images.append(os.path.join(sub, name))
                    ids.append(identity)
    if not images:
        raise SystemExit(f"--gallery {folder}: no images in identity sub-folders")
    return images, ids


def _run(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="kreid-edge", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    enroll = sub.add_parser("enroll", help="embed a gallery folder (one sub-folder per identity)")
    enroll.add_argument("--model", required=True)
    enroll.add_argument("--gallery", required=True)
    enroll.add_argument("--out", required=True,
                        help="gallery embeddings (.npz is appended when missing)")
    match = sub.add_parser("match", help="nearest identities of query crops")
    match.add_argument("--model", required=True)
    match.add_argument("--gallery", required=True, help=".npz from enroll")
    match.add_argument("--query", required=True, nargs="+")
    match.add_argument("--top_k", type=int, default=5)
    embed = sub.add_parser("embed", help="embeddings of a list of images, to a .npz")
    embed.add_argument("--model", required=True)
    embed.add_argument("--images", required=True,
                       help="a text file with one image path per line")
    embed.add_argument("--out", required=True, help="embeddings (.npz: embeddings, paths)")
    embed.add_argument("--threads", type=int, default=None)
    for p in (enroll, match):
        p.add_argument("--threads", type=int, default=None)
        p.add_argument("--metric", default="euclidean", choices=["euclidean", "cosine"])
    args = parser.parse_args(argv)
    if args.command == "embed":
        return _embed(args)
    matcher = GalleryMatcher(load_embedder(args.model, args.threads), args.metric)
    if args.command == "enroll":
        images, ids = _gallery_folder(args.gallery)
        matcher.enroll(images, ids)
        out = matcher.save(args.out)
        print(f"enrolled {len(images)} images of {len(set(ids))} identities -> {out}")
        return 0
    matcher.load(args.gallery)
    for path, result in zip(args.query, matcher.match(args.query, args.top_k)):
        print(path + ": " + ", ".join(f"{i} ({d:.3f})" for i, d in result))
    return 0


def _embed(args) -> int:
    import numpy as np

    from kreid_edge.files import atomic_write

    if not os.path.isfile(args.images):
        raise SystemExit(f"--images {args.images}: not a file (one image path per line)")
    with open(args.images) as f:
        paths = [line.strip() for line in f if line.strip()]
    if not paths:
        raise SystemExit(f"--images {args.images}: no image paths in it")
    embedder = load_embedder(args.model, args.threads)
    emb = embedder.embed_images(paths)
    out = args.out if args.out.endswith(".npz") else args.out + ".npz"
    with atomic_write(out, mode="wb", suffix=".npz") as f:
        np.savez(f, embeddings=emb, paths=np.array(paths), fingerprint=embedder.fingerprint)
    print(f"embedded {len(paths)} images -> {out}")
    return 0


def main(argv=None) -> int:
    """The CLI; bad input (a missing or corrupt image, a foreign gallery, a model without
    its sidecar) ends with one line naming the file and exit status 2, not a traceback."""
    from kreid_edge.images import ImageFileError
    from kreid_edge.matcher import GalleryError
    from kreid_edge.sidecar import SidecarError

    try:
        return _run(argv)
    except (ImageFileError, GalleryError, SidecarError, FileNotFoundError) as exc:
        print(f"kreid-edge: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
