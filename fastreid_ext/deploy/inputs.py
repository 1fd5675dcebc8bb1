"""What to embed: images and tracklets named on the command line, as :class:`InputItem` s.

``collect_inputs(spec)`` accepts:

- an image file: one item (name = the path as given);
- a folder: every image directly inside it is one item (name = file name), and every
  sub-folder (any depth) that directly holds images is one tracklet (name = its path relative
  to the folder, ``/`` separators; frames sorted by name);
- with ``as_tracklet=True``, a folder is instead one tracklet made of the images directly in it;
- a list file (``.txt`` / ``.lst`` / ``.list``): one item per line, ``[NAME<TAB>]SPEC`` where
  ``SPEC`` is an image path, a tracklet folder, or comma-separated frame paths (kept in that
  order); relative paths are relative to the list file's folder; blank lines and lines
  starting with ``#`` are ignored. Without ``NAME`` the item is named by ``SPEC`` (for a comma
  list: the frames' common folder when they share one, else ``SPEC`` itself).

Duplicate names raise ``ValueError``; a missing path raises ``FileNotFoundError`` naming it.

:func:`input_record` describes an input for a features file's provenance: the folder holding
every item (``root``), the list file (``list``, when the input is one), the number of items and
a ``signature`` of their names.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

__all__ = ["IMAGE_EXTENSIONS", "LIST_EXTENSIONS", "InputItem", "collect_inputs", "input_record",
           "is_image_file"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
LIST_EXTENSIONS = (".txt", ".lst", ".list")


@dataclass(frozen=True)
class InputItem:
    """One thing to embed: an image (1 frame) or a tracklet (its frames, in order)."""

    name: str
    frames: Tuple[str, ...]


def is_image_file(path: str) -> bool:
    return path.lower().endswith(IMAGE_EXTENSIONS)


def _images_in(folder: str) -> List[str]:
    return sorted(os.path.join(folder, f) for f in os.listdir(folder)
                  if is_image_file(f) and os.path.isfile(os.path.join(folder, f)))


def _from_folder(folder: str) -> List[InputItem]:
    items = [InputItem(os.path.basename(p), (p,)) for p in _images_in(folder)]
    for dirpath, dirnames, _ in os.walk(folder):
        dirnames.sort()
        if os.path.samefile(dirpath, folder):
            continue
        frames = _images_in(dirpath)
        if frames:
            rel = os.path.relpath(dirpath, folder).replace(os.sep, "/")
            items.append(InputItem(rel, tuple(frames)))
    return items


def _resolve(path: str, base: str) -> str:
    path = os.path.expanduser(path.strip())
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(base, path))


def _from_list(list_file: str) -> List[InputItem]:
    base = os.path.dirname(os.path.abspath(list_file))
    items = []
    with open(list_file) as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.rstrip("\n").rstrip("\r")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            name, spec = (line.split("\t", 1) if "\t" in line else (None, line))
            spec = spec.strip()
            where = f"{list_file}:{lineno}"
            if "," in spec:
                frames = tuple(_resolve(p, base) for p in spec.split(",") if p.strip())
                folders = {os.path.dirname(p) for p in frames}
                default = os.path.dirname(spec.split(",")[0].strip()) if len(folders) == 1 else spec
            else:
                path = _resolve(spec, base)
                if os.path.isdir(path):
                    frames = tuple(_images_in(path))
                    if not frames:
                        raise ValueError(f"{where}: tracklet folder {path!r} holds no image")
                elif os.path.exists(path) or is_image_file(path):
                    frames = (path,)
                else:
                    raise FileNotFoundError(f"{where}: {path!r} does not exist")
                default = spec
            items.append(InputItem((name or default).strip(), frames))
    return items


def _check_unique(items: List[InputItem], source: str) -> List[InputItem]:
    seen = set()
    for it in items:
        if it.name in seen:
            raise ValueError(f"duplicate item name {it.name!r} in {source}")
        seen.add(it.name)
    return items


def collect_inputs(spec: str, as_tracklet: bool = False) -> List[InputItem]:
    """The items named by ``spec`` (see the module docstring)."""
    if not os.path.exists(spec):
        raise FileNotFoundError(f"input {spec!r} does not exist (an image, a folder or a list file)")
    if os.path.isdir(spec):
        if as_tracklet:
            frames = tuple(_images_in(spec))
            if not frames:
                raise ValueError(f"tracklet folder {spec!r} holds no image ({', '.join(IMAGE_EXTENSIONS)})")
            return [InputItem(os.path.basename(os.path.normpath(spec)), frames)]
        items = _from_folder(spec)
    elif spec.lower().endswith(LIST_EXTENSIONS):
        items = _from_list(spec)
    elif is_image_file(spec):
        items = [InputItem(spec, (spec,))]
    else:
        raise ValueError(f"input {spec!r} is neither a folder, an image ({', '.join(IMAGE_EXTENSIONS)}) "
                         f"nor a list file ({', '.join(LIST_EXTENSIONS)})")
    if not items:
        raise ValueError(f"input {spec!r} holds no image or tracklet")
    return _check_unique(items, spec)


def input_record(items: Sequence[InputItem], spec: Optional[str] = None) -> dict:
    """``{"root", "list", "count", "signature"}`` of an input: the deepest folder holding every
    item's first frame, the absolute path of ``spec`` when it is a list file (else ``""``), the
    number of items and a 16-hex-digit SHA-256 of their sorted names."""
    folders = [os.path.dirname(os.path.abspath(it.frames[0])) for it in items if it.frames]
    root = os.path.commonpath(folders) if folders else ""
    is_list = bool(spec) and os.path.isfile(spec) and spec.lower().endswith(LIST_EXTENSIONS)
    names = "\n".join(sorted(it.name for it in items)).encode("utf-8", "surrogateescape")
    return {"root": root, "list": os.path.abspath(spec) if is_list else "", "count": len(items),
            "signature": hashlib.sha256(names).hexdigest()[:16]}
