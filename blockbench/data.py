"""Deterministic, offline token streams for language-model training.

Every variant in a comparison must see exactly the same tokens in the same order, on every machine, without
network access. So the default corpus is the Python source of the installed, pinned `sympy` package (a code
corpus like the paper's CodeParrot, byte-identical wherever sympy 1.14.0 is installed), identified by a
content fingerprint that a suite can pin; the train/validation split depends only on each document's path;
the BPE tokenizer is trained on the train split only and is deterministic; and batch order depends only on the
seed.

Corpus fingerprint: sha256 over, for each document in sorted order of its relative POSIX path,
``relpath.encode() + b"\\0" + raw file bytes + b"\\0"``. For corpus="sympy" the path is relative to the sympy
package directory; for "stdlib" to the stdlib directory; for "files" to the deepest directory containing every
matched file (so moving the whole folder keeps the fingerprint); for "hub" it is ``train/<row>`` or
``valid/<row>`` and the bytes are the UTF-8 text field.

Cache layout: ``<cache_dir>/<fingerprint[:16]>/<tokenizer key>-vf<val_fraction>/`` holds ``tokenizer.json``
(BPE), ``train.npy``, ``val.npy`` and ``meta.json``; the val fraction is part of the key because it changes
the train split the BPE is trained on. Every file is written to a temporary name and renamed into place, and
anything that fails to load or verify is rebuilt, so an interrupted run never poisons later ones: the token
arrays are checked against meta.json (size, sha256), and meta.json against the corpus fingerprint and the full
sha256 of the tokenizer in use. A tokenizer.json edited yet still valid is a different tokenizer: its hash goes
into every record, and runs with different tokenizations are never ranked or compared together.
"""

from __future__ import annotations

import glob
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import math
import os
import platform
import re
import sysconfig
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tokenizers
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from blockbench.errors import BlockbenchError
from blockbench.safeio import UnsafeFileError, check_writable_target, load_json_guarded, read_guarded, write_error_text

logger = logging.getLogger(__name__)

CORPORA = ("sympy", "stdlib", "files", "hub")
TOKENIZERS = ("bpe", "bytes", "hub")
EOT_TOKEN = "<|endoftext|>"
BYTES_VOCAB = 257
BYTES_EOT = 256
_CACHE_FORMAT = 1
# A trained BPE tokenizer.json is a few hundred KiB at the vocabularies suites use; far larger is not one.
MAX_CACHED_TOKENIZER_BYTES = 64 * 2**20
_HUB_BATCH = 1000


class DataError(BlockbenchError, ValueError):
    """A data problem the user can fix (bad config, missing files, no network, stale pin); str() says how."""


@dataclass(frozen=True)
class DataConfig:
    corpus: str = "sympy"
    tokenizer: str = "bpe"
    vocab_size: int = 4096
    data_files: tuple[str, ...] = ()
    hub_dataset: str | None = None
    hub_dataset_valid: str | None = None
    hub_text_field: str = "content"
    hub_tokenizer: str | None = None
    val_fraction: float = 0.05
    fingerprint: str | None = None
    allow_fingerprint_mismatch: bool = False

    def __post_init__(self) -> None:
        _validate(self)  # fail when a suite is parsed, not minutes later when its data is first loaded


@dataclass
class TokenData:
    train: torch.Tensor
    val: torch.Tensor
    vocab_size: int
    eot_id: int
    fingerprint: str
    tokenizer_id: str
    # End-of-text tokens count as tokens (the model is scored on predicting them) but carry no bytes.
    val_bytes_per_token: float
    n_docs_train: int
    n_docs_val: int
    corpus: str = ""
    # Facts that identify the corpus beyond its fingerprint (e.g. the sympy version), for run records.
    corpus_info: dict[str, Any] = field(default_factory=dict)
    # Where the BPE/hub tokenizer JSON lives, so callers can decode samples; None for "bytes".
    tokenizer_path: str | None = None
    # sha256 of the tokenizer's full content (its JSON; for "bytes", of the encoding's definition): two runs are
    # comparable only if they tokenized alike.
    tokenizer_sha256: str = ""

    def describe(self) -> dict[str, Any]:
        """What a run record needs to say which tokens a result was measured on."""
        return {
            "corpus": self.corpus,
            **self.corpus_info,
            "fingerprint": self.fingerprint,
            "tokenizer_id": self.tokenizer_id,
            "tokenizer_sha256": self.tokenizer_sha256,
            "vocab_size": self.vocab_size,
            "eot_id": self.eot_id,
            "n_docs_train": self.n_docs_train,
            "n_docs_val": self.n_docs_val,
            "n_tokens_train": int(self.train.numel()),
            "n_tokens_val": int(self.val.numel()),
            "val_bytes_per_token": round(self.val_bytes_per_token, 6),
        }


@dataclass
class _Corpus:
    """Documents already split; `train`/`val` are lists of str, or HF datasets with a "text" column (hub)."""

    name: str
    fingerprint: str
    train: Any
    val: Any
    n_docs_train: int
    n_docs_val: int
    val_bytes: int
    info: dict[str, Any]


@dataclass
class _Tokenizer:
    key: str
    id: str
    vocab_size: int
    eot_id: int
    encode: Callable[[list[str]], list[np.ndarray]]
    path: str | None = None
    sha256: str = ""


def default_cache_dir() -> Path:
    """$BLOCKBENCH_CACHE, else ~/.cache/blockbench: where trained tokenizers and token arrays are reused."""
    env = os.environ.get("BLOCKBENCH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "blockbench"


def bits_per_byte(loss_nats_per_token: float, bytes_per_token: float) -> float:
    """Loss per UTF-8 byte, the unit that stays comparable across tokenizers of different granularity."""
    if bytes_per_token <= 0:
        raise DataError(f"bytes_per_token must be positive, got {bytes_per_token}")
    return loss_nats_per_token / math.log(2) / bytes_per_token


# -------------------- config


def _validate(config: DataConfig) -> None:
    if config.corpus not in CORPORA:
        raise DataError(f"unknown corpus {config.corpus!r}; choose one of {', '.join(CORPORA)}")
    if config.tokenizer not in TOKENIZERS:
        raise DataError(f"unknown tokenizer {config.tokenizer!r}; choose one of {', '.join(TOKENIZERS)}")
    vocab = config.vocab_size
    if config.tokenizer == "bpe" and (type(vocab) is not int or vocab < BYTES_VOCAB):
        raise DataError(f"vocab_size must be an integer >= {BYTES_VOCAB} for the bpe tokenizer (256 bytes + "
                        f"end-of-text), got {config.vocab_size!r}")
    if not isinstance(config.val_fraction, (int, float)) or not 0 < config.val_fraction < 1:
        raise DataError(f"val_fraction must be between 0 and 1 (exclusive), got {config.val_fraction!r}")
    if config.corpus == "files" and not config.data_files:
        raise DataError("corpus='files' needs data_files (paths or globs of text files)")
    if isinstance(config.data_files, str):
        raise DataError("data_files must be a tuple of paths/globs, not a single string")
    if config.corpus == "hub" and not config.hub_dataset:
        raise DataError("corpus='hub' needs hub_dataset (e.g. 'huggingface-course/codeparrot-ds-train')")
    if config.tokenizer == "hub" and not config.hub_tokenizer:
        raise DataError("tokenizer='hub' needs hub_tokenizer "
                        "(e.g. 'huggingface-course/code-search-net-tokenizer')")
    if config.fingerprint is not None and not re.fullmatch(r"[0-9a-fA-F]{12,64}", config.fingerprint):
        raise DataError(f"fingerprint must be 12 to 64 hex digits (a sha256 or a prefix of one), "
                        f"got {config.fingerprint!r}")


def _is_val(relpath: str, val_fraction: float) -> bool:
    # Depends on the path alone, so adding or editing other files never moves a document across the split.
    return int(hashlib.sha256(relpath.encode("utf-8")).hexdigest()[:8], 16) / 2**32 < val_fraction


# -------------------- corpora


def _is_test_file(relpath: str) -> bool:
    return relpath.rsplit("/", 1)[-1].startswith("test_")


def _sympy_files() -> tuple[Path, list[str], dict[str, Any]]:
    # Located, not imported: importing sympy costs ~0.7 s in every run's process.
    spec = importlib.util.find_spec("sympy")
    if spec is None or spec.origin is None:
        raise DataError("corpus 'sympy' needs the sympy package installed (pip install sympy==1.14.0)")
    root = Path(spec.origin).resolve().parent
    rels = [p.relative_to(root).as_posix() for p in root.rglob("*.py")]
    rels = [r for r in rels if "tests" not in r.split("/")[:-1] and not _is_test_file(r)]
    return root, sorted(rels), {"sympy_version": importlib.metadata.version("sympy")}


def _stdlib_files() -> tuple[Path, list[str], dict[str, Any]]:
    root = Path(sysconfig.get_paths()["stdlib"]).resolve()
    skip = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}
    rels = [p.relative_to(root).as_posix() for p in root.rglob("*.py")]
    rels = [r for r in rels if not skip.intersection(r.split("/")[:-1]) and not _is_test_file(r)]
    info = {"python_version": platform.python_version(), "portable": False}
    return root, sorted(rels), info


def _matched_files(patterns: Sequence[str]) -> tuple[Path, list[str]]:
    found: set[Path] = set()
    for pattern in patterns:
        matches = [Path(m) for m in glob.glob(os.path.expanduser(pattern), recursive=True)]
        files = {m.resolve() for m in matches if m.is_file()}
        if not files:
            raise DataError(f"data_files pattern {pattern!r} matched no files (relative patterns are "
                            f"resolved against {os.getcwd()}); check the path or glob")
        found |= files
    root = Path(os.path.commonpath([str(p.parent) for p in found]))
    return root, sorted(p.relative_to(root).as_posix() for p in found)


def _read_local(name: str, root: Path, rels: list[str], config: DataConfig, info: dict[str, Any]) -> _Corpus:
    digest = hashlib.sha256()
    train: list[str] = []
    val: list[str] = []
    val_bytes = total_bytes = 0
    for rel in rels:
        raw = (root / rel).read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            if name == "stdlib":  # not the user's files to fix; leave them out, deterministically
                logger.warning("skipping non-UTF-8 stdlib file %s", rel)
                continue
            raise DataError(f"{root / rel} is not UTF-8 text ({exc.reason} at byte {exc.start}); "
                            f"convert it or leave it out of the corpus") from None
        digest.update(rel.encode("utf-8") + b"\0" + raw + b"\0")
        total_bytes += len(raw)
        if _is_val(rel, config.val_fraction):
            val.append(text)
            val_bytes += len(raw)
        else:
            train.append(text)
    if total_bytes == 0:
        raise DataError(f"corpus {name!r} is empty (0 bytes in {len(rels)} files under {root})")
    if not train or not val:
        which = "validation" if not val else "train"
        raise DataError(f"corpus {name!r}: no documents fell into the {which} split ({len(rels)} files, "
                        f"val_fraction={config.val_fraction}); add more files or change val_fraction")
    info = {**info, "n_files": len(train) + len(val), "n_bytes": total_bytes}
    return _Corpus(name, digest.hexdigest(), train, val, len(train), len(val), val_bytes, info)


def _hub_error(what: str, name: str, exc: BaseException) -> DataError:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if len(reason) > 160:
        reason = reason[:157] + "..."
    return DataError(f"could not load hub {what} {name!r} (no network access?): {reason}; "
                     f"use corpus='sympy' or corpus='files'")


def _datasets() -> Any:
    # deferred: ~2 s to import, and only a hub corpus needs it; it must never draw progress bars on the CLI's terminal.
    import datasets

    datasets.disable_progress_bars()
    return datasets


def _load_hub(config: DataConfig) -> _Corpus:
    datasets = _datasets()

    def fetch(name: str) -> Any:
        try:
            return datasets.load_dataset(name, split="train")
        except Exception as exc:  # offline, missing, gated: all one message for the user
            raise _hub_error("dataset", name, exc) from None

    field_name = config.hub_text_field
    train_ds = fetch(config.hub_dataset)
    if field_name not in train_ds.column_names:
        raise DataError(f"hub dataset {config.hub_dataset!r} has no column {field_name!r} "
                        f"(columns: {', '.join(train_ds.column_names)}); set hub_text_field")
    train_ds = train_ds.select_columns([field_name]).rename_column(field_name, "text") \
        if field_name != "text" else train_ds.select_columns(["text"])
    val_ds = None
    if config.hub_dataset_valid:
        val_ds = fetch(config.hub_dataset_valid)
        if field_name not in val_ds.column_names:
            raise DataError(f"hub dataset {config.hub_dataset_valid!r} has no column {field_name!r}")
        val_ds = val_ds.select_columns([field_name]).rename_column(field_name, "text") \
            if field_name != "text" else val_ds.select_columns(["text"])

    digest = hashlib.sha256()
    train_rows: list[int] = []
    val_rows: list[int] = []
    val_bytes = total_bytes = 0
    for split, ds in (("train", train_ds), ("valid", val_ds)):
        if ds is None:
            continue
        row = 0
        for batch in ds.iter(batch_size=_HUB_BATCH):
            for text in batch["text"]:
                raw = (text or "").encode("utf-8")
                rel = f"{split}/{row}"
                digest.update(rel.encode() + b"\0" + raw + b"\0")
                total_bytes += len(raw)
                if split == "valid" or (val_ds is None and _is_val(rel, config.val_fraction)):
                    val_bytes += len(raw)
                    val_rows.append(row)
                elif split == "train":
                    train_rows.append(row)
                row += 1
    if val_ds is None:
        val_ds = train_ds.select(val_rows)
        train_ds = train_ds.select(train_rows)
    if len(train_ds) == 0 or len(val_ds) == 0:
        raise DataError(f"hub dataset {config.hub_dataset!r}: empty train or validation split; "
                        f"set hub_dataset_valid or change val_fraction")
    info = {"hub_dataset": config.hub_dataset, "hub_dataset_valid": config.hub_dataset_valid,
            "n_bytes": total_bytes}
    return _Corpus("hub", digest.hexdigest(), train_ds, val_ds, len(train_ds), len(val_ds), val_bytes, info)


def _load_corpus(config: DataConfig) -> _Corpus:
    if config.corpus == "hub":
        return _load_hub(config)
    if config.corpus == "sympy":
        root, rels, info = _sympy_files()
    elif config.corpus == "stdlib":
        root, rels, info = _stdlib_files()
    else:
        root, rels = _matched_files(config.data_files)
        info = {}
    return _read_local(config.corpus, root, rels, config, info)


def _check_fingerprint(config: DataConfig, corpus: _Corpus) -> None:
    pinned = config.fingerprint
    if pinned is None or corpus.fingerprint.startswith(pinned.lower()):
        return
    origin = (f"sympy version {corpus.info['sympy_version']}" if "sympy_version" in corpus.info
              else f"corpus {corpus.name!r}")
    message = (f"corpus fingerprint mismatch: expected {pinned[:16]}…, got {corpus.fingerprint[:16]}… "
               f"({origin}); set allow_fingerprint_mismatch to override")
    if not config.allow_fingerprint_mismatch:
        raise DataError(message)
    logger.warning("%s (overridden by allow_fingerprint_mismatch)", message)


def _texts(docs: Any) -> Iterator[list[str]]:
    if isinstance(docs, list):
        for i in range(0, len(docs), _HUB_BATCH):
            yield docs[i:i + _HUB_BATCH]
    else:
        for batch in docs.iter(batch_size=_HUB_BATCH):
            yield [t or "" for t in batch["text"]]


# -------------------- tokenizers


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _atomic_write(path: Path, write: Callable[[Any], None]) -> None:
    """A cache file written whole or not at all: a temp file in the same directory, fsynced, renamed over `path`.
    A link or other non-regular file at `path` is refused (never written through); a write cut short (a full disk,
    a file-size limit) removes the temp file and ends in one line, leaving no partial cache file."""
    try:
        check_writable_target(path, "data cache")
    except UnsafeFileError as exc:
        raise DataError(f"{exc}; remove it or set BLOCKBENCH_CACHE to another directory") from None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise DataError(f"cannot write the data cache in {path.parent} ({exc.strerror or exc}); "
                        f"set BLOCKBENCH_CACHE to a writable directory") from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide a shared cache from other users
        check_writable_target(path, "data cache")  # again, right before the rename: a link made meanwhile
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise DataError(f"cannot write the data cache file {path} ({write_error_text(exc)}); nothing partial was "
                        f"left; free some space, raise the file-size limit or set BLOCKBENCH_CACHE") from None
    except UnsafeFileError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise DataError(str(exc)) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _bytes_tokenizer() -> _Tokenizer:
    def encode(texts: list[str]) -> list[np.ndarray]:
        return [np.frombuffer(t.encode("utf-8"), dtype=np.uint8).astype(np.uint16) for t in texts]

    definition = f"utf-8 bytes 0-255, end of text {BYTES_EOT}, vocab {BYTES_VOCAB}".encode()
    return _Tokenizer("bytes", "bytes", BYTES_VOCAB, BYTES_EOT, encode, sha256=_sha(definition))


def _wrap_tokenizer(tok: Any, key: str, tok_id: str, path: str | None, origin: str, blob: bytes) -> _Tokenizer:
    eot = tok.token_to_id(EOT_TOKEN)
    if eot is None:
        raise DataError(f"tokenizer {origin} has no {EOT_TOKEN!r} token to separate documents; "
                        f"use tokenizer='bpe' or 'bytes'")
    # A literal "<|endoftext|>" inside a source file is text, not a document boundary.
    tok.encode_special_tokens = True

    def encode(texts: list[str]) -> list[np.ndarray]:
        encodings = tok.encode_batch_fast(texts, add_special_tokens=False)
        return [np.asarray(e.ids, dtype=np.int64) for e in encodings]

    return _Tokenizer(key, tok_id, tok.get_vocab_size(with_added_tokens=True), eot, encode, path, _sha(blob))


def _train_bpe(corpus: _Corpus, vocab_size: int) -> Any:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOT_TOKEN], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_texts(corpus.train), trainer=trainer, length=corpus.n_docs_train)
    return tok


def _bpe_tokenizer(config: DataConfig, corpus: _Corpus, key_dir: Path) -> _Tokenizer:
    path = key_dir / "tokenizer.json"
    tok = None
    if path.exists():
        try:  # guarded: a FIFO there must not hang the run, a huge file must not be read whole
            blob = read_guarded(path, MAX_CACHED_TOKENIZER_BYTES, "cached tokenizer")
            tok = Tokenizer.from_str(blob.decode("utf-8"))
        except Exception as exc:  # corrupt or from an incompatible tokenizers version: retrain
            logger.warning("cached tokenizer %s failed to load (%s); retraining", path, exc)
            tok = None
    if tok is None:
        logger.info("training byte-level BPE (vocab %d) on %d train documents", config.vocab_size,
                    corpus.n_docs_train)
        tok = _train_bpe(corpus, config.vocab_size)
        blob = tok.to_str().encode("utf-8")
        _atomic_write(path, lambda f: f.write(blob))
    tok_id = f"bpe-{config.vocab_size}-{_sha(blob)[:12]}"
    return _wrap_tokenizer(tok, f"bpe{config.vocab_size}", tok_id, str(path), "bpe", blob)


def _hub_tokenizer(name: str) -> _Tokenizer:
    try:
        tok = Tokenizer.from_pretrained(name)
    except Exception as exc:
        raise _hub_error("tokenizer", name, exc) from None
    blob = tok.to_str().encode("utf-8")
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name)
    digest = _sha(blob)[:12]
    return _wrap_tokenizer(tok, f"hub-{safe}-{digest}", f"hub-{name}-{digest}", None, repr(name), blob)


# -------------------- token arrays


def _token_dtype(vocab_size: int) -> type[np.integer]:
    return np.uint16 if vocab_size <= 2**16 else np.int32


def _tokenize(docs: Any, tok: _Tokenizer, split: str) -> np.ndarray:
    datasets = _datasets()
    import pyarrow.compute as pc  # deferred: comes with datasets, needed only with it

    dtype = _token_dtype(tok.vocab_size)
    eot = np.array([tok.eot_id], dtype=dtype)

    def encode(batch: dict[str, list[Any]]) -> dict[str, list[np.ndarray]]:
        return {"ids": [np.concatenate([ids.astype(dtype), eot]) for ids in tok.encode(batch["text"])]}

    ds = datasets.Dataset.from_dict({"text": docs}) if isinstance(docs, list) else docs
    # An explicit fingerprint spares datasets from hashing the tokenizer closure (slow, and it warns).
    fp = _sha(f"{getattr(ds, '_fingerprint', '')}|{tok.id}|{split}|{_CACHE_FORMAT}".encode())[:32]
    out = ds.map(encode, batched=True, batch_size=64, remove_columns=ds.column_names, new_fingerprint=fp,
                 keep_in_memory=isinstance(docs, list), desc=f"tokenizing {split}")
    flat = pc.list_flatten(out.data.column("ids"))
    return np.ascontiguousarray(flat.to_numpy(), dtype=dtype)


def _read_meta(path: Path) -> dict[str, Any] | None:
    """The cache's meta.json, or None (the cache is rebuilt) when it is missing, not a regular file, too large,
    too deep or not JSON."""
    if not os.path.lexists(path):
        return None
    try:
        meta = load_json_guarded(path, 1 << 20, 8, "token cache meta.json")
    except UnsafeFileError as exc:
        logger.warning("%s; rebuilding the token cache", exc)
        return None
    return meta if isinstance(meta, dict) else None


def _load_array(path: Path, expected: dict[str, Any] | None) -> np.ndarray | None:
    if not expected or not path.exists():
        return None
    if not path.is_file():  # a FIFO would block np.load forever; the rebuild then refuses to write over it
        logger.warning("cached %s is not a regular file; rebuilding it", path)
        return None
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:
        logger.warning("cached %s failed to load (%s); rebuilding it", path, exc)
        return None
    if arr.ndim != 1 or arr.size != expected.get("n_tokens") or _sha(arr.tobytes()) != expected.get("sha256"):
        logger.warning("cached %s does not match its meta.json; rebuilding it", path)
        return None
    return arr


SPOT_CHECK_DOCS = 8


def _agrees_with_tokenizer(arr: np.ndarray, docs: Any, tok: _Tokenizer) -> bool:
    """Re-tokenize the split's first documents and compare with the cached array's start. meta.json binds the
    arrays to the tokenizer's hash, but a cache edited consistently (arrays and meta.json together) would agree
    with itself; this catches it for the start of each split at a cost of milliseconds."""
    n = min(SPOT_CHECK_DOCS, len(docs))
    texts = list(docs[:n]) if isinstance(docs, list) else list(docs.select(range(n))["text"])
    expected = np.concatenate([np.append(ids, tok.eot_id) for ids in tok.encode(texts)]) if texts else np.array([])
    return arr.size >= expected.size and np.array_equal(arr[:expected.size].astype(np.int64),
                                                        expected.astype(np.int64))


def load_data(config: DataConfig, cache_dir: str | os.PathLike[str] | None = None) -> TokenData:
    """Token ids of both splits; the slow steps (BPE training, tokenising) run once, then come from cache."""
    _validate(config)
    cache_root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    corpus = _load_corpus(config)
    _check_fingerprint(config, corpus)
    tok, key_dir = _tokenizer_and_cache(config, corpus, cache_root)
    arrays = _token_arrays(key_dir, corpus, tok)

    val = torch.from_numpy(arrays["val"].astype(np.int64))
    return TokenData(
        train=torch.from_numpy(arrays["train"].astype(np.int64)),
        val=val,
        vocab_size=tok.vocab_size,
        eot_id=tok.eot_id,
        fingerprint=corpus.fingerprint,
        tokenizer_id=tok.id,
        val_bytes_per_token=corpus.val_bytes / max(1, val.numel()),
        n_docs_train=corpus.n_docs_train,
        n_docs_val=corpus.n_docs_val,
        corpus=corpus.name,
        corpus_info=corpus.info,
        tokenizer_path=tok.path,
        tokenizer_sha256=tok.sha256,
    )


def _tokenizer_and_cache(config: DataConfig, corpus: _Corpus, cache_root: Path) -> tuple[_Tokenizer, Path]:
    """The run's tokenizer and its cache directory (one per corpus, tokenizer and validation fraction). A hub
    tokenizer is fetched first because its key names the directory; a BPE tokenizer is trained into it."""
    tok_key = {"bpe": f"bpe{config.vocab_size}", "bytes": "bytes"}.get(config.tokenizer, "hub")
    if config.tokenizer == "hub":
        tok = _hub_tokenizer(config.hub_tokenizer or "")
        tok_key = tok.key
    key_dir = cache_root / corpus.fingerprint[:16] / f"{tok_key}-vf{config.val_fraction:g}"
    if config.tokenizer == "bpe":
        tok = _bpe_tokenizer(config, corpus, key_dir)
    elif config.tokenizer == "bytes":
        tok = _bytes_tokenizer()
    return tok, key_dir


def _token_arrays(key_dir: Path, corpus: _Corpus, tok: _Tokenizer) -> dict[str, np.ndarray]:
    """Both splits' token arrays: from the cache where it holds them for this corpus and tokenizer, tokenised (and
    cached, meta.json last) otherwise."""
    meta_path = key_dir / "meta.json"
    meta = _read_meta(meta_path)
    if meta and (meta.get("format") != _CACHE_FORMAT or meta.get("fingerprint") != corpus.fingerprint
                 or meta.get("tokenizer_id") != tok.id or meta.get("tokenizer_sha256") != tok.sha256):
        meta = None
    meta = meta or {}
    arrays: dict[str, np.ndarray] = {}
    changed = False
    for split, docs in (("train", corpus.train), ("val", corpus.val)):
        path = key_dir / f"{split}.npy"
        arr = _load_array(path, meta.get(split))
        if arr is not None and not _agrees_with_tokenizer(arr, docs, tok):
            logger.warning("cached %s is not what %s gives for the corpus's first documents; rebuilding it",
                           path, tok.id)
            arr = None
        if arr is None:
            logger.info("tokenizing %s split with %s", split, tok.id)
            arr = _tokenize(docs, tok, split)
            _atomic_write(path, lambda f, a=arr: np.save(f, a, allow_pickle=False))
            meta[split] = {"n_tokens": int(arr.size), "sha256": _sha(arr.tobytes())}
            changed = True
        else:
            logger.info("loaded cached %s", path)
        arrays[split] = arr
    if changed:
        _write_meta(meta_path, meta, corpus, tok)
    return arrays


def _write_meta(meta_path: Path, meta: dict[str, Any], corpus: _Corpus, tok: _Tokenizer) -> None:
    """meta.json: the splits' sizes and hashes (in `meta`) with what they were made from."""
    meta.update({"format": _CACHE_FORMAT, "fingerprint": corpus.fingerprint, "tokenizer_id": tok.id,
                 "tokenizer_sha256": tok.sha256,
                 "vocab_size": tok.vocab_size, "eot_id": tok.eot_id, "n_docs_train": corpus.n_docs_train,
                 "n_docs_val": corpus.n_docs_val, "val_bytes": corpus.val_bytes,
                 "tokenizers_version": tokenizers.__version__})
    _atomic_write(meta_path, lambda f: f.write(json.dumps(meta, indent=1, sort_keys=True).encode()))


# -------------------- batches


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise DataError(f"{name} must be a positive integer, got {value!r}")


def _step_generator(seed: int, step: int) -> torch.Generator:
    # Batch k depends on (seed, k) alone: resuming at any step costs nothing and reproduces the same batches.
    digest = hashlib.sha256(f"blockbench-batches:{seed}:{step}".encode()).digest()
    derived = int.from_bytes(digest[:8], "little")
    return torch.Generator().manual_seed(derived)


def train_batches(data: TokenData, seed: int, batch_size: int, seq_len: int,
                  start_step: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Random training windows in an order set by `seed` alone, so every variant trains on the same stream."""
    _check_positive(batch_size=batch_size, seq_len=seq_len)
    if isinstance(start_step, bool) or not isinstance(start_step, int) or start_step < 0:
        raise DataError(f"start_step must be a non-negative integer, got {start_step!r}")
    tokens = data.train.to(torch.int64)
    n_starts = tokens.numel() - seq_len
    if n_starts < 1:
        raise DataError(f"train split has {tokens.numel()} tokens, too few for seq_len={seq_len}; "
                        f"use a larger corpus or a shorter seq_len")
    offsets = torch.arange(seq_len + 1)
    return _batches(tokens, seed, batch_size, n_starts, offsets, start_step)


def _batches(tokens: torch.Tensor, seed: int, batch_size: int, n_starts: int, offsets: torch.Tensor,
             step: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    while True:
        starts = torch.randint(0, n_starts, (batch_size,), generator=_step_generator(seed, step))
        windows = tokens[starts[:, None] + offsets]
        yield windows[:, :-1].contiguous(), windows[:, 1:].contiguous()
        step += 1


def eval_windows(data: TokenData, seq_len: int, max_windows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The same validation windows for every run and seed, so eval losses are directly comparable."""
    _check_positive(seq_len=seq_len, max_windows=max_windows)
    tokens = data.val.to(torch.int64)
    n = min(max_windows, (tokens.numel() - 1) // seq_len)
    if n < 1:
        raise DataError(f"validation split has {tokens.numel()} tokens, too few for one window of "
                        f"seq_len={seq_len}; use a larger corpus, a larger val_fraction or a shorter seq_len")
    x = tokens[: n * seq_len].view(n, seq_len)
    y = tokens[1: n * seq_len + 1].view(n, seq_len)
    return x.clone(), y.clone()
