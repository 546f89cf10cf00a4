"""The on-disk feature store: frozen backbone outputs computed once, reused by training.

Training a small head from cached tap tokens is the whole game on CPU: one ViT-B/16
forward costs ~30x the MHAdapter's forward+backward (docs/architecture.md, SPEC 4).

Layout, one folder per content key (see `feature_key`)::

    <root>/<key>/meta.json    parts, shapes, dtypes, created, clipadapt version
    <root>/<key>/tokens.npy   float16 [n_items, n_views, T, D]   (only when tokens are stored)
    <root>/<key>/embeds.npy   float32 [n_items, n_views, E]
    <root>/<key>/done.npy     bool    [n_items, n_views]
    <root>/<key>/crc.npy      uint32  [n_items, n_views]  CRC-32 of each stored row (tokens + embedding)

An entry folder appears only once complete (built under a temporary name, then
renamed), data is flushed before the checksums and the done mask, and both are replaced
atomically, so a crash at any point leaves either the old state or the new one, never a
done flag that points at unwritten data.

Damage that no crash of ours can cause (a truncated copy, a disk error, a hand edit) is
caught when an entry is opened: an unreadable meta.json or array file makes the entry be
rebuilt from scratch, and every done row is checked against its checksum; rows that fail
are extracted again instead of being served (CLIPADAPT_VERIFY_FEATURES=0 skips the row
check, which reads the whole entry once, about 1 s per GB).
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from numpy.lib.format import open_memmap

from clipadapt import __version__
from clipadapt.config import FeatureConfig
from clipadapt.data.fingerprint import image_list_fingerprint
from clipadapt.io import remove_stale_temps, temp_path, write_bytes
from clipadapt.errors import ClipAdaptError
from clipadapt.features.extract import extract
from clipadapt.features.keys import canonical_json, feature_key
from clipadapt.features.verify import corrupt_pairs, row_checksums
from clipadapt.features.views import ViewSampler, seeded_view_transform

__all__ = [
    "FeatureSet", "FeatureStore", "StoreEntry", "ViewSampler", "default_root", "describe_per_image_bytes",
    "extract", "feature_key", "image_list_fingerprint", "seeded_view_transform",
]

FORMAT_VERSION = 2  # 2: per-row checksums (crc.npy); entries of format 1 are rebuilt
CRC_DTYPE = np.uint32
LOG = logging.getLogger("clipadapt")
TOKEN_DTYPE = np.float16  # halves the dominant cost (301 KB/image for ViT-B/16); heads train in fp32
EMBED_DTYPE = np.float32
FP16_MAX = float(np.finfo(np.float16).max)


def default_root() -> Path:
    """`$CLIPADAPT_CACHE/features` if set, else `~/.cache/clipadapt/features`."""
    base = os.environ.get("CLIPADAPT_CACHE")
    return (Path(base).expanduser() if base else Path.home() / ".cache" / "clipadapt") / "features"


def describe_per_image_bytes(token_shape: tuple[int, int] | None, embed_dim: int, n_views: int = 1) -> int:
    """Bytes one image takes in the store: n_views x (fp16 tokens T*D + fp32 embedding E)."""
    tokens = int(np.prod(token_shape)) * np.dtype(TOKEN_DTYPE).itemsize if token_shape else 0
    return int(n_views) * (tokens + int(embed_dim) * np.dtype(EMBED_DTYPE).itemsize)


def _save_done(path: Path, done: np.ndarray) -> None:
    """An array (the done mask, the checksums) replaced atomically and durably."""
    buf = io.BytesIO()
    np.save(buf, done, allow_pickle=False)
    write_bytes(path, buf.getvalue(), durable=True)


class DamagedEntry(ClipAdaptError):
    """An entry whose files cannot be trusted (unreadable, truncated, older format): rebuilt."""


def _verify_rows() -> bool:
    return os.environ.get("CLIPADAPT_VERIFY_FEATURES", "1").strip().lower() not in ("0", "false", "off", "no")


def _damaged(path: Path, why: str) -> DamagedEntry:
    return DamagedEntry(f"The feature cache entry {path} is damaged: {why}. It will be rebuilt.")


def _inconsistent(path: Path, why: str) -> ClipAdaptError:
    return ClipAdaptError(
        f"The feature cache entry {path} is inconsistent: {why}. It will be rebuilt once deleted: "
        f"remove the folder (rm -r '{path}') or call FeatureStore('{path.parent}').remove('{path.name}')."
    )


# ----------------------------------------------------------------------------- one entry
class FeatureSet:
    """One store entry: memory-mapped features of an image list, and which are done.

    Attributes: `key`, `path`, `meta`, `tokens` (float16 memmap [N, V, T, D] or None),
    `embeds` (float32 memmap [N, V, E]), `done` (bool [N, V], in memory; persisted by
    `flush`).
    """

    def __init__(self, path: Path, meta: dict, tokens: np.ndarray | None, embeds: np.ndarray, done: np.ndarray,
                 crc: np.ndarray | None = None):
        self.path = Path(path)
        self.key = self.path.name
        self.meta = meta
        self.tokens = tokens
        self.embeds = embeds
        self.done = done
        self.crc = crc if crc is not None else np.zeros(done.shape, dtype=CRC_DTYPE)

    # ------------------------------------------------------------------ shape
    @property
    def n_items(self) -> int:
        return int(self.done.shape[0])

    @property
    def n_views(self) -> int:
        return int(self.done.shape[1])

    @property
    def token_shape(self) -> tuple[int, int] | None:
        return tuple(self.tokens.shape[2:]) if self.tokens is not None else None

    @property
    def embed_dim(self) -> int:
        return int(self.embeds.shape[2])

    @property
    def nbytes(self) -> int:
        """Bytes of the stored arrays (tokens + embeddings + done mask)."""
        return int((self.tokens.nbytes if self.tokens is not None else 0) + self.embeds.nbytes + self.done.nbytes)

    # ------------------------------------------------------------------ progress
    def missing(self) -> list[int]:
        """Items with at least one view not yet extracted."""
        return np.flatnonzero(~self.done.all(axis=1)).tolist()

    @property
    def complete(self) -> bool:
        return bool(self.done.all())

    # ------------------------------------------------------------------ write
    def write(self, items: np.ndarray, view: int, tokens: torch.Tensor | None, embeds: torch.Tensor,
              flush: bool = True) -> None:
        """Store view `view` of `items` and mark it done.

        tokens: [B, T, D] (stored as float16) or None when the entry holds no tokens;
        embeds: [B, E]. With flush=False the done marks stay in memory until `flush()`
        (extraction flushes every few batches: rewriting the mask per batch would cost
        O(N) per batch on million-image sets).
        """
        items = _index_array(items)
        view = int(view)
        if not 0 <= view < self.n_views:
            raise IndexError(f"view {view} out of range for an entry with {self.n_views} views")
        emb = _as_numpy(embeds, EMBED_DTYPE, (len(items), self.embed_dim), "embeds")
        tok = self._token_array(tokens, len(items))
        self._check_finite(items, tok, emb)
        if tok is not None:
            self.tokens[items, view] = tok
        self.embeds[items, view] = emb
        self.crc[items, view] = row_checksums(tok, emb)
        self.done[items, view] = True  # only after the data: flush() relies on this order
        if flush:
            self.flush()

    def _token_array(self, tokens: torch.Tensor | None, batch: int) -> np.ndarray | None:
        if self.tokens is None:
            if tokens is not None:
                raise ValueError(f"entry {self.path} stores no tokens, but tokens were given to write()")
            return None
        if tokens is None:
            raise ValueError(f"entry {self.path} stores tokens {self.token_shape}; write() got tokens=None")
        return _as_numpy(tokens, TOKEN_DTYPE, (batch, *self.token_shape), "tokens")

    def _check_finite(self, items: np.ndarray, tok: np.ndarray | None, emb: np.ndarray) -> None:
        # A non-finite value marked done would poison every later run that shares the entry.
        bad_emb = ~np.isfinite(emb).all(axis=1)
        bad_tok = ~np.isfinite(tok).reshape(len(items), -1).all(axis=1) if tok is not None else bad_emb
        if bad_emb.any() or bad_tok.any():
            rows = np.unique(items[bad_emb | bad_tok])[:10].tolist()
            raise ClipAdaptError(
                f"Non-finite features for image rows {rows} (entry {self.path}): the backbone produced NaN/inf "
                f"or tap tokens exceed the float16 range (|x| > {FP16_MAX:.0f}). Check those images and the "
                "backbone weights; the store keeps nothing for them."
            )

    def flush(self) -> None:
        """Persist: flush data to disk first, then the checksums, then the done mask (each
        replaced atomically), so a row marked done always has its data and checksum."""
        if self.tokens is not None and isinstance(self.tokens, np.memmap):
            self.tokens.flush()
        if isinstance(self.embeds, np.memmap):
            self.embeds.flush()
        _save_done(self.path / "crc.npy", self.crc)
        _save_done(self.path / "done.npy", self.done)

    def corrupt_rows(self) -> np.ndarray:
        """(item, view) pairs marked done whose stored bytes no longer match their checksum."""
        return corrupt_pairs(self.tokens, self.embeds, self.done, self.crc)

    def forget_corrupt_rows(self) -> int:
        """Mark rows that fail their checksum as not done (extraction redoes them); how many."""
        bad = self.corrupt_rows()
        if len(bad):
            self.done[bad[:, 0], bad[:, 1]] = False
            LOG.warning("%d stored feature row(s) of %s fail their checksum (first: image row %d, view %d); "
                        "they will be extracted again", len(bad), self.path, bad[0, 0], bad[0, 1])
        return len(bad)

    # ------------------------------------------------------------------ read
    def read(self, items: np.ndarray, views: np.ndarray | int) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Features of `items`, view `views[i]` for item i: (tokens float32 [B, T, D] or None, embeds float32 [B, E]).

        Rows come back in the order asked; the memmap is read in sorted (item, view)
        order, which turns random access into forward sweeps over the file.
        """
        items = _index_array(items)
        views = np.broadcast_to(np.asarray(views, dtype=np.int64), items.shape)
        if len(items) and not self.done[items, views].all():
            rows = np.unique(items[~self.done[items, views]])[:10].tolist()
            raise ClipAdaptError(
                f"Features of image rows {rows} are not in the cache entry {self.path} yet; run the extraction "
                "(clipadapt extract <config>) or let training fill the cache first."
            )
        order = np.argsort(items * self.n_views + views, kind="stable")
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        si, sv = items[order], views[order]
        embeds = torch.from_numpy(np.asarray(self.embeds[si, sv], dtype=np.float32)[inverse])
        if self.tokens is None:
            return None, embeds
        tokens = torch.from_numpy(np.asarray(self.tokens[si, sv], dtype=np.float32)[inverse])
        return tokens, embeds

    def __repr__(self) -> str:
        done = int(self.done.sum())
        return (f"FeatureSet(key={self.key!r}, items={self.n_items}, views={self.n_views}, tokens={self.token_shape}, "
                f"embed_dim={self.embed_dim}, done={done}/{self.done.size})")


def _index_array(items) -> np.ndarray:
    if isinstance(items, torch.Tensor):
        items = items.detach().cpu().numpy()
    return np.asarray(items, dtype=np.int64).reshape(-1)


def _as_numpy(x: torch.Tensor, dtype, shape: tuple, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", dtype=torch.float16 if dtype == np.float16 else torch.float32).numpy()
    arr = np.asarray(x, dtype=dtype)
    if arr.shape != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {arr.shape}")
    return arr


# ----------------------------------------------------------------------------- the store
@dataclass(frozen=True)
class StoreEntry:
    """A listed store entry. `meta` is None when the entry cannot be read."""

    key: str
    path: Path
    meta: dict | None
    nbytes: int
    done_fraction: float


def _expected_shapes(n_items: int, n_views: int, token_shape, embed_dim: int) -> dict:
    return {
        "tokens": [n_items, n_views, *token_shape] if token_shape else None,
        "embeds": [n_items, n_views, embed_dim],
        "done": [n_items, n_views],
    }


class FeatureStore:
    """Content-keyed entries of frozen features under one root folder.

    >>> store = FeatureStore("/tmp/clipadapt-doc-store")                       # doctest: +SKIP
    >>> fs = store.open(parts, n_items=10, n_views=1, token_shape=(196, 768), embed_dim=512)  # doctest: +SKIP
    """

    def __init__(self, root: Path | str | None = None):
        self.root = Path(root).expanduser() if root is not None else default_root()

    @classmethod
    def from_config(cls, cfg: FeatureConfig) -> "FeatureStore":
        """The store of a run: `features.dir` if set, else the default root."""
        return cls(cfg.dir)

    def path(self, key: str) -> Path:
        """Folder of entry `key` (which must be a plain name, not a path)."""
        if not key or key.startswith(".") or "/" in key or os.sep in key:
            raise ClipAdaptError(f"'{key}' is not a feature cache key (keys look like 'e3b0c44298fc1c14').")
        return self.root / key

    # ------------------------------------------------------------------ open
    def open(self, parts: dict, n_items: int, n_views: int, token_shape: tuple[int, int] | None,
             embed_dim: int) -> FeatureSet:
        """Create or reopen the entry keyed by `parts`.

        Reopening checks that the stored shapes and parts match the request; a mismatch
        raises ClipAdaptError naming the entry's folder and how to delete it.
        """
        if n_items < 0 or n_views < 1 or embed_dim < 1:
            raise ValueError(f"bad entry shape: n_items={n_items}, n_views={n_views}, embed_dim={embed_dim}")
        key = feature_key(parts)
        path = self.path(key)
        token_shape = tuple(int(t) for t in token_shape) if token_shape else None
        shapes = _expected_shapes(int(n_items), int(n_views), token_shape, int(embed_dim))
        # what processes killed while creating, deleting or updating entries left behind
        remove_stale_temps(self.root)
        if not path.exists():
            self._create(path, parts, shapes)
        remove_stale_temps(path)
        try:
            featureset = self._reopen(path, parts, shapes)
        except DamagedEntry as exc:
            LOG.warning("%s; rebuilding it", str(exc).split(". It will be rebuilt")[0])
            self._discard(path)
            self._create(path, parts, shapes)
            featureset = self._reopen(path, parts, shapes)
        if _verify_rows():
            featureset.forget_corrupt_rows()
        return featureset

    def _discard(self, path: Path) -> None:
        doomed = temp_path(path, "removing")
        try:
            os.rename(path, doomed)
        except FileNotFoundError:
            return  # another process discarded it first
        except OSError as exc:
            raise ClipAdaptError(f"The feature cache entry {path} is damaged and cannot be replaced ({exc}). "
                                 f"Remove it (rm -r '{path}') or point features.dir at a writable folder.") from None
        shutil.rmtree(doomed, ignore_errors=True)

    def _create(self, path: Path, parts: dict, shapes: dict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._check_free_space(shapes)
        tmp = temp_path(path, "creating")
        tmp.mkdir()
        try:
            if shapes["tokens"]:
                open_memmap(tmp / "tokens.npy", mode="w+", dtype=TOKEN_DTYPE, shape=tuple(shapes["tokens"])).flush()
            open_memmap(tmp / "embeds.npy", mode="w+", dtype=EMBED_DTYPE, shape=tuple(shapes["embeds"])).flush()
            _save_done(tmp / "done.npy", np.zeros(shapes["done"], dtype=bool))
            _save_done(tmp / "crc.npy", np.zeros(shapes["done"], dtype=CRC_DTYPE))
            write_bytes(tmp / "meta.json", json.dumps(_meta(path.name, parts, shapes), indent=2).encode(), durable=True)
            try:
                os.rename(tmp, path)  # atomic: the entry appears whole or not at all
            except OSError:
                if not path.exists():  # not a lost race with another process creating it
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _check_free_space(self, shapes: dict) -> None:
        # The arrays are sparse until written; running out of disk midway would kill the
        # process with SIGBUS on a memmap write, so refuse up front with a message instead.
        need = sum(int(np.prod(shapes[k])) * np.dtype(d).itemsize
                   for k, d in (("tokens", TOKEN_DTYPE), ("embeds", EMBED_DTYPE)) if shapes[k])
        free = shutil.disk_usage(self.root).free
        if need > free:
            raise ClipAdaptError(
                f"The feature cache needs {need / 1e9:.2f} GB under {self.root} but only {free / 1e9:.2f} GB are free. "
                "Point features.dir at a larger disk, remove old entries, or set features.cache=off."
            )

    def _reopen(self, path: Path, parts: dict, shapes: dict) -> FeatureSet:
        meta = _read_meta(path)
        if meta is None:
            raise _damaged(path, "meta.json is missing or unreadable")
        if meta.get("format") != FORMAT_VERSION:
            raise _damaged(path, f"it has store format {meta.get('format')}, this clipadapt writes {FORMAT_VERSION}")
        if meta.get("shapes") != shapes:
            raise _inconsistent(path, f"it holds shapes {meta.get('shapes')} but {shapes} were asked for")
        if canonical_json(meta.get("parts")) != canonical_json(parts):
            raise _inconsistent(path, "its recorded key parts differ from the requested ones")
        try:
            tokens = _load_array(path / "tokens.npy", shapes["tokens"], TOKEN_DTYPE) if shapes["tokens"] else None
            embeds = _load_array(path / "embeds.npy", shapes["embeds"], EMBED_DTYPE)
            done = np.array(_load_array(path / "done.npy", shapes["done"], np.bool_, mmap=False))
            crc = np.array(_load_array(path / "crc.npy", shapes["done"], CRC_DTYPE, mmap=False))
        except (OSError, ValueError, EOFError) as exc:
            raise _damaged(path, f"an array file is damaged ({exc})") from None
        return FeatureSet(path, meta, tokens, embeds, done, crc)

    # ------------------------------------------------------------------ housekeeping
    def entries(self) -> list[StoreEntry]:
        """Every entry under the root, sorted by key (temporary folders are skipped)."""
        if not self.root.is_dir():
            return []
        out = []
        for path in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            out.append(StoreEntry(path.name, path, _read_meta(path), _folder_bytes(path), _done_fraction(path)))
        return out

    def remove(self, key: str) -> None:
        """Delete entry `key`; its folder is renamed away first so no half-deleted entry is ever seen."""
        path = self.path(key)
        if not path.is_dir():
            raise ClipAdaptError(f"No feature cache entry '{key}' under {self.root} (see FeatureStore.entries()).")
        doomed = temp_path(path, "removing")
        os.rename(path, doomed)
        shutil.rmtree(doomed)


def _meta(key: str, parts: dict, shapes: dict) -> dict:
    return {
        "format": FORMAT_VERSION,
        "key": key,
        "parts": json.loads(canonical_json(parts)),
        "shapes": shapes,
        "dtypes": {"tokens": np.dtype(TOKEN_DTYPE).name if shapes["tokens"] else None,
                   "embeds": np.dtype(EMBED_DTYPE).name, "done": "bool"},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "clipadapt_version": __version__,
    }


def _read_meta(path: Path) -> dict | None:
    try:
        meta = json.loads((path / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def _load_array(path: Path, shape: list, dtype, mmap: bool = True) -> np.ndarray:
    if mmap:
        _refuse_short_file(path)
        try:
            arr = np.load(path, mmap_mode="r+", allow_pickle=False)
        except PermissionError:  # a read-only (e.g. shared) cache still serves reads
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
    else:
        arr = np.load(path, allow_pickle=False)
    if list(arr.shape) != list(shape) or arr.dtype != np.dtype(dtype):
        raise ValueError(f"{path.name} holds {arr.dtype}{list(arr.shape)}, expected {np.dtype(dtype)}{list(shape)}")
    return arr


def _refuse_short_file(path: Path) -> None:
    # numpy opens a short .npy in r+ mode by silently zero-filling it to length: a truncated
    # copy would then look whole. Compare the size its header promises with the real one.
    with open(path, "rb") as fh:
        fmt = np.lib.format
        read_header = fmt.read_array_header_1_0 if fmt.read_magic(fh) == (1, 0) else fmt.read_array_header_2_0
        shape, _, dtype = read_header(fh)
        promised = fh.tell() + int(np.prod(shape)) * np.dtype(dtype).itemsize
    actual = path.stat().st_size
    if actual < promised:
        raise ValueError(f"{path.name} is truncated: {actual} of {promised} bytes")


def _folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.iterdir() if f.is_file())


def _done_fraction(path: Path) -> float:
    try:
        done = np.load(path / "done.npy", allow_pickle=False)
    except (OSError, ValueError):
        return 0.0
    return float(done.mean()) if done.size else 1.0
