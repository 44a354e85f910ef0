"""`selfsup embed --model DIR --data FOLDER --output FILE`: the pretrained encoder's embedding of every image.

    --model   a run's output folder (its latest pretrained encoder, from summary.json) or an encoder
              folder (a Pretrainer Model artifact, or its Format-Serving folder)
    --data    a folder of images, read recursively (files without an image extension are ignored;
              symbolic links are not followed)
    --output  FILE.parquet (columns `path`, `embedding`) or FILE.npz (arrays `paths`, `embeddings`)

The vectors come from the encoder's `serving_embeddings` signature (L2-normalised features of the
image decoded as in training), for retrieval, de-duplication or kNN labelling. Images that cannot be
decoded are skipped, counted and named.
"""

import argparse
import json
import os
import sys
from typing import Dict, List, Tuple

import numpy as np

from trainer import contract

OUTPUT_FORMATS = (".parquet", ".npz")
_MAX_PIXELS = 40_000_000


def add_embed_parser(subparsers) -> None:
    parser = subparsers.add_parser("embed", help="write the pretrained encoder's embedding of every image of a folder")
    parser.add_argument("--model", required=True, help="a run's output folder or an encoder folder")
    parser.add_argument("--data", required=True, help="folder of images (read recursively)")
    parser.add_argument("--output", required=True, help="FILE.parquet or FILE.npz")
    parser.add_argument("--batch-size", type=int, default=256, help="images per encoder call (default 256)")


def encoder_folder(model: str) -> str:
    """The encoder folder `--model` names (raises ValueError when it holds none)."""
    from trainer.encoder_artifact import artifact_root

    summary_path = os.path.join(model, contract.SUMMARY_FILE)
    if os.path.isfile(summary_path):
        with open(summary_path, encoding="utf-8") as handle:
            pretrainer = ((json.load(handle).get("timings") or {}).get(contract.PRETRAINER_ROLE) or {})
        if not pretrainer.get("model"):
            raise ValueError(f"{summary_path} names no pretrained encoder (the run stopped before the Pretrainer)")
        return artifact_root(os.path.join(os.path.abspath(model), pretrainer["model"]))  # relative to the run folder
    return artifact_root(model)


def list_images(folder: str) -> Tuple[List[str], List[str]]:
    """(image paths relative to `folder`, ignored files), sorted; links are not followed."""
    from components.image_example_gen.image_check import has_image_extension

    if not os.path.isdir(folder):
        raise ValueError(f"--data {folder} is not a folder")
    images, ignored = [], []
    for directory, subfolders, files in os.walk(folder):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            relative = os.path.relpath(os.path.join(directory, name), folder)
            (images if has_image_extension(name) else ignored).append(relative)
    return sorted(images), sorted(ignored)


def embed_folder(model: str, data: str, output: str, batch_size: int = 256) -> Dict[str, object]:
    """Writes the embeddings of every image under `data`; returns counts and the skipped list.

    Raises:
      ValueError: a bad --model, --data or --output, or no decodable image.
    """
    if not output.endswith(OUTPUT_FORMATS):
        raise ValueError(f"--output {output}: the file name must end with one of {list(OUTPUT_FORMATS)}")
    if batch_size < 1:
        raise ValueError(f"--batch-size must be positive, got {batch_size}")
    encoder_dir = encoder_folder(model)
    images, ignored = list_images(data)
    import tensorflow as tf

    from components.image_example_gen.image_check import image_problem
    from trainer.encoder_artifact import EMBEDDINGS_OUTPUT, EMBEDDINGS_SIGNATURE
    from trainer.progress import Progress

    embed = tf.saved_model.load(os.path.join(encoder_dir, "Format-Serving")).signatures[EMBEDDINGS_SIGNATURE]
    paths, vectors, skipped = [], [], []
    progress = Progress(len(images), "selfsup embed", "image")
    for start in range(0, len(images), batch_size):
        batch_paths, batch_bytes = [], []
        for relative in images[start:start + batch_size]:
            with open(os.path.join(data, relative), "rb") as handle:
                encoded = handle.read()
            problem = image_problem(encoded, _MAX_PIXELS)
            if problem:
                skipped.append({"path": relative, "reason": problem})
            else:
                batch_paths.append(relative)
                batch_bytes.append(encoded)
        if batch_bytes:
            vectors.append(embed(images=tf.constant(batch_bytes))[EMBEDDINGS_OUTPUT].numpy())
            paths.extend(batch_paths)
        progress.update(min(start + batch_size, len(images)) - start)
    progress.close()
    if not paths:
        raise ValueError(f"no decodable image under {data} ({len(skipped)} skipped, {len(ignored)} ignored)")
    _write(output, paths, np.concatenate(vectors).astype(np.float32))
    return {"encoder": encoder_dir, "output": output, "embedded": len(paths), "dimension": int(vectors[0].shape[1]),
            "skipped": skipped, "ignored": ignored}


def _write(output: str, paths: List[str], embeddings: np.ndarray) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    if output.endswith(".npz"):
        np.savez(output, paths=np.array(paths), embeddings=embeddings)
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    embedding_type = pa.list_(pa.float32(), embeddings.shape[1])
    table = pa.table({"path": pa.array(paths, pa.string()),
                      "embedding": pa.FixedSizeListArray.from_arrays(pa.array(embeddings.reshape(-1)),
                                                                     embeddings.shape[1]).cast(embedding_type)})
    pq.write_table(table, output)


def run_embed(args: argparse.Namespace) -> int:
    """Runs the `embed` command: 0 when written, 2 on a bad argument or input."""
    try:
        result = embed_folder(args.model, args.data, args.output, args.batch_size)
    except ValueError as error:
        print(f"selfsup: error: {error}", file=sys.stderr)
        return 2
    print(f"selfsup: {result['embedded']} embeddings of dimension {result['dimension']} written to {result['output']} "
          f"(encoder {result['encoder']}; {len(result['skipped'])} images skipped, {len(result['ignored'])} files "
          "ignored)")
    for row in result["skipped"][:20]:
        print(f"  skipped {row['path']}: {row['reason']}")
    return 0
