"""Command lines of ``tools/extract_features.py``, ``tools/build_index.py``, ``tools/search.py``,
``tools/export_onnx.py`` and of ``fastreid-ext extract | index | search | export`` (the tools only
call these ``*_main(argv)`` functions, so tests run them in-process)."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Optional, Sequence

logger = logging.getLogger("fastreid_ext.deploy")

__all__ = ["extract_main", "build_index_main", "search_main", "export_main"]


def _setup_logging(verbose: bool = True) -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                            format="[%(asctime)s %(name)s] %(levelname)s %(message)s", datefmt="%H:%M:%S")


def _model_args(p: argparse.ArgumentParser, required: bool) -> None:
    p.add_argument("--config-file", required=required, metavar="FILE", help="the model's config (YAML)")
    p.add_argument("--weights", required=required, metavar="FILE", help="the trained weights (.pth)")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")


# ---------------------------------------------------------------------------- extract
def extract_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Images or tracklets -> embeddings file (.npz): embeddings, item names, config hash. "
                    "Resumable: re-running on the same --output embeds only the missing items.")
    p.add_argument("--input", required=True, metavar="PATH",
                   help="an image, a folder (images = items, sub-folders = tracklets) or a list file "
                        "(one item per line: [NAME<TAB>]image | folder | frame1,frame2,...)")
    p.add_argument("--output", required=True, metavar="FILE",
                   help="features file (.npz); a folder is an error. Resuming it with another --input is an error")
    p.add_argument("--tracklet", action="store_true", help="--input is a folder holding ONE tracklet")
    p.add_argument("--no-resume", action="store_true", help="recompute everything, overwriting --output")
    p.add_argument("--batch-size", type=int, default=None, help="clips per batch (default TEST.IMS_PER_BATCH)")
    p.add_argument("--num-workers", type=int, default=None, help="loader workers (default DATALOADER.NUM_WORKERS_TEST)")
    p.add_argument("--flush-every", type=int, default=256, help="write the output every N finished items")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _model_args(p, required=True)
    return p


def extract_main(argv: Optional[Sequence[str]] = None):
    import fastreid_ext  # noqa: F401  (compat shims + registrations)

    from .extractor import FeatureExtractor
    from .inputs import collect_inputs

    args = extract_parser().parse_args(argv)
    _setup_logging()
    items = collect_inputs(args.input, as_tracklet=args.tracklet)
    ext = FeatureExtractor.from_files(args.config_file, args.weights, args.opts)
    res = ext.extract(items, args.output, resume=not args.no_resume, flush_every=args.flush_every,
                      progress=False if args.no_progress else None, batch_size=args.batch_size,
                      num_workers=args.num_workers, input_spec=args.input)
    print(f"{res.path}: {len(res.features)} items, dim {res.features.dim}, config hash {ext.config_hash} "
          f"({res.num_new} new, {res.num_resumed} resumed, {res.num_stale} re-extracted because their files "
          f"changed, {len(res.failed)} unreadable skipped)")
    for name, reason in res.failed:
        print(f"  skipped unreadable item {name}: {reason}", file=sys.stderr)
    return res


# ---------------------------------------------------------------------------- build index
def build_index_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Build a gallery index (faiss) from features files, or --add features to an existing one.")
    p.add_argument("--features", required=True, nargs="+", metavar="FILE", help="features file(s) (.npz)")
    p.add_argument("--index", required=True, metavar="DIR", help="index folder (index.faiss + meta.json)")
    p.add_argument("--add", action="store_true", help="add the features to the existing index in DIR")
    p.add_argument("--skip-existing", action="store_true",
                   help="with --add: keep the indexed item when an item to add has an indexed name but comes "
                        "from another input (default: that is an error and nothing is added)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing index in DIR")
    p.add_argument("--shard", metavar="I/N", default=None,
                   help="index only the items of shard I of N (CRC-32 of the item name mod N), e.g. one process or "
                        "machine per shard into DIR/shard-I-of-N; search.py --index DIR searches all shards as one")
    p.add_argument("--kind", default="flat", metavar="SPEC",
                   help="flat: exact; ivf: IVF-Flat (--nlist cells); hnsw: HNSW-Flat (CPU); or any faiss factory "
                        "string, e.g. 'IVF4096,Flat', 'IVF16384_HNSW32,PQ32x8,Refine(Flat)' (docs/scaling.md)")
    p.add_argument("--metric", default=None, choices=("cosine", "euclidean"),
                   help="default: the metric the features were made for (TEST.METRIC)")
    p.add_argument("--nlist", type=int, default=1024, help="IVF cells")
    p.add_argument("--nprobe", type=int, default=32, help="IVF cells visited per query (default at search)")
    p.add_argument("--train-size", type=int, default=0, help="IVF k-means sample (0: max(40*nlist, 50000))")
    p.add_argument("--hnsw-m", type=int, default=32, help="HNSW links per node")
    p.add_argument("--ef-construction", type=int, default=80, help="HNSW build beam")
    p.add_argument("--ef-search", type=int, default=128, help="HNSW search beam (default at search)")
    p.add_argument("--k-factor", type=int, default=0,
                   help="Refine(...) indexes: k * K candidates re-ranked (default at search; 0: faiss's 1)")
    p.add_argument("--train-seed", "--seed", dest="seed", type=int, default=0, help="training sample seed")
    p.add_argument("--recall-sample", type=int, default=1000,
                   help="items whose recall@10 against exact search is measured and stored (0: none)")
    return p


def build_index_main(argv: Optional[Sequence[str]] = None):
    from fastreid_ext.utils.safe_io import file_lock

    from .features_file import load_features
    from .gallery_index import GalleryIndex

    args = build_index_parser().parse_args(argv)
    _setup_logging()
    if args.skip_existing and not args.add:
        raise ValueError("--skip-existing only applies with --add")
    _check_index_folder(args.index)  # before loading features and building: that can take hours
    exists = os.path.isfile(os.path.join(args.index, "meta.json"))
    if args.add:
        if not exists:
            raise FileNotFoundError(f"--add: no index in {args.index!r}; build it first (without --add)")
        feats = _shard(args, [load_features(f) for f in args.features])
        # load + add + save under the folder's lock: concurrent --add runs both land
        index, added = GalleryIndex.add_to_folder(args.index, feats,
                                                  on_existing="skip" if args.skip_existing else "error")
        print(f"added {added} items: {index.describe()} -> {args.index}")
        return index
    with file_lock(args.index):
        return _build_new_index(args)


def _shard(args, feats):
    """``--shard I/N``: each features file reduced to the items of shard I."""
    if not args.shard:
        return feats
    from .sharded_index import parse_shard, shard_features

    i, n = parse_shard(args.shard)
    out = [shard_features(f, i, n) for f in feats]
    logger.info("shard %d/%d: %d of %d items", i, n, sum(map(len, out)), sum(map(len, feats)))
    return out


def _check_index_folder(path: str) -> None:
    """``path`` can hold an index: a folder (created when missing) this process may write in."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"--index {path!r} is a file; an index is a folder (index.faiss + meta.json)")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise ValueError(f"--index {path!r} cannot be created: {e.strerror}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f"--index {path!r} is not writable")


def _build_new_index(args):
    """A new index from ``args.features`` (the caller holds the folder's lock)."""
    from .features_file import FeaturesFile, check_hash, load_features
    from .gallery_index import GalleryIndex

    if os.path.isfile(os.path.join(args.index, "meta.json")) and not args.overwrite:
        raise FileExistsError(f"an index already exists in {args.index!r}; use --add to extend it or --overwrite")
    twice = sorted({f for f in args.features if args.features.count(f) > 1})
    if twice:
        raise ValueError(f"--features names {twice} more than once")
    feats = _shard(args, [load_features(f) for f in args.features])
    for f, path in zip(feats[1:], args.features[1:]):
        check_hash(f.config_hash, feats[0].config_hash, f"features file {path!r}", f"features file {args.features[0]!r}")
    import numpy as np

    try:
        first = feats[0] if len(feats) == 1 else FeaturesFile(
            np.concatenate([f.embeddings for f in feats]), [n for f in feats for n in f.names],
            feats[0].config_hash, [p for f in feats for p in f.first_frames], feats[0].meta,
            [x for f in feats for x in f.sources])
    except ValueError as e:  # e.g. one item name in two files
        raise ValueError(f"--features {args.features}: {e}") from None
    index = GalleryIndex.build(first, args.kind, args.metric, nlist=args.nlist, nprobe=args.nprobe,
                               train_size=args.train_size, hnsw_m=args.hnsw_m,
                               ef_construction=args.ef_construction, ef_search=args.ef_search, seed=args.seed,
                               k_factor=args.k_factor, recall_sample=args.recall_sample)
    index.save(args.index)
    print(f"{index.describe()} -> {args.index}")
    return index


# ---------------------------------------------------------------------------- search
def search_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Top-k gallery items of queries (a features file, an image, a folder, a list file or "
                    "one tracklet folder) from a gallery index, as a table or JSON.")
    p.add_argument("--index", required=True, nargs="+", metavar="DIR",
                   help="index folder (build_index.py); several folders, or one folder of shard-* folders "
                        "(build_index.py --shard), are searched as one gallery")
    q = p.add_mutually_exclusive_group(required=True)
    q.add_argument("--query-features", metavar="FILE", help="query features file (.npz)")
    q.add_argument("--query", metavar="PATH", help="image, folder of images / tracklets, or list file")
    q.add_argument("--query-tracklet", metavar="DIR", help="a folder holding one query tracklet")
    p.add_argument("-k", "--topk", type=int, default=10, help="results per query")
    p.add_argument("--format", default="table", choices=("table", "json"))
    p.add_argument("--output", metavar="FILE", help="write the table / JSON here instead of stdout")
    p.add_argument("--rank-png", metavar="DIR", help="also write one rank-list PNG per query here")
    p.add_argument("--label-regex", default=None,
                   help="regex whose group 1 is the identity in an item name (green/red borders in PNGs)")
    p.add_argument("--nprobe", type=int, default=None, help="IVF cells visited (default: the index's)")
    p.add_argument("--ef-search", type=int, default=None, help="HNSW beam (default: the index's)")
    p.add_argument("--k-factor", type=int, default=None, help="Refine(...) re-ranking factor (default: the index's)")
    p.add_argument("--cpu", action="store_true", help="search on CPU even when faiss has GPUs")
    _model_args(p, required=False)
    return p


def _load_index(paths: Sequence[str]):
    """One gallery index folder, or shards (several folders / a folder of shard-* folders)."""
    from .gallery_index import GalleryIndex
    from .sharded_index import ShardedGallery

    if len(paths) == 1 and os.path.isfile(os.path.join(paths[0], "meta.json")):
        return GalleryIndex.load(paths[0])
    return ShardedGallery.load(paths)


def search_main(argv: Optional[Sequence[str]] = None):
    import fastreid_ext  # noqa: F401

    from .query import draw_query_rank_lists, format_table, query_features, results_as_json

    args = search_parser().parse_args(argv)
    _setup_logging(verbose=False)
    index = _load_index(args.index)
    extractor = None
    inputs = args.query or args.query_tracklet
    if inputs is not None:
        if not (args.config_file and args.weights):
            raise ValueError("--query / --query-tracklet need --config-file and --weights to embed the images")
        from .extractor import FeatureExtractor

        extractor = FeatureExtractor.from_files(args.config_file, args.weights, args.opts)
    feats, failed = query_features(index, args.query_features, inputs, args.query_tracklet is not None, extractor)
    for name, reason in failed:
        print(f"skipped unreadable query {name}: {reason}", file=sys.stderr)
    result = index.search(feats.embeddings, args.topk, use_gpu=False if args.cpu else None,
                          nprobe=args.nprobe, ef_search=args.ef_search, k_factor=args.k_factor)
    if args.format == "json":
        text = results_as_json(feats.names, result, index=index.describe(),
                               skipped=[{"name": n, "reason": r} for n, r in failed])
    else:
        text = format_table(feats.names, result)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text + "\n")
    else:
        print(text)
    if args.rank_png:
        if inputs is not None:
            from .inputs import collect_inputs

            by_name = {it.name: it.frames for it in collect_inputs(inputs, args.query_tracklet is not None)}
            qframes = [by_name.get(n, ()) for n in feats.names]
        else:
            qframes = [(p,) if p else () for p in feats.first_frames]
        paths = draw_query_rank_lists(args.rank_png, feats, qframes, index, result, args.label_regex)
        print(f"wrote {len(paths)} rank-list PNGs to {args.rank_png}", file=sys.stderr)
    return feats, result


# ---------------------------------------------------------------------------- export
def export_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Export the embedding model of a trained config to ONNX: images (B, T, 3, H, W), "
                    "0..255 -> clip embeddings (B, D); B and T dynamic where the model's graph allows it. "
                    "Checked against PyTorch with onnxruntime when it is installed (the [onnx] extra).")
    p.add_argument("--output", required=True, metavar="FILE", help="the .onnx file")
    p.add_argument("--seq-len", type=int, default=None, help="example clip length (default TEST.VIDEO.SEQ_LEN)")
    p.add_argument("--batch", type=int, default=2, help="example batch size")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's)")
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime comparison")
    _model_args(p, required=True)
    return p


def export_main(argv: Optional[Sequence[str]] = None):
    import fastreid_ext  # noqa: F401  (compat shims + registrations)

    from .onnx_export import export_from_files

    args = export_parser().parse_args(argv)
    _setup_logging()
    res = export_from_files(args.config_file, args.weights, args.output, args.opts, args.seq_len,
                            args.batch, args.opset, check=not args.no_check)
    check = "not checked" if res.max_abs_diff is None else f"max |onnx - torch| = {res.max_abs_diff:.3g}"
    dyn = ", ".join(("batch", "frames")[a] for a in res.dynamic_axes) or "none (static shapes)"
    print(f"{res.path}: {res.exporter} exporter, example {res.input_shape}, dynamic axes: {dyn}, {check}")
    return res
