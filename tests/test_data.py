import hashlib
import itertools
import math
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import sympy
import torch

from blockbench import data as D
from blockbench.data import (
    DataConfig,
    DataError,
    TokenData,
    bits_per_byte,
    eval_windows,
    load_data,
    train_batches,
)
from blockbench.errors import BlockbenchError

Corpus = tuple[Path, dict[str, str]]
SYMPY_ROOT = Path(sympy.__file__).resolve().parent
# Measured on sympy 1.14.0; a change here means the corpus definition (or the sympy install) changed.
SYMPY_1_14_FINGERPRINT = "33724875dc4043e96838048b2c1c258c7d73e235592f49113a54b94cdc49d9b5"


def expected_val(relpath: str, fraction: float) -> bool:
    return int(hashlib.sha256(relpath.encode()).hexdigest()[:8], 16) / 2**32 < fraction


def split_docs(tokens: torch.Tensor, eot: int) -> list[list[int]]:
    docs, current = [], []
    for t in tokens.tolist():
        if t == eot:
            docs.append(current)
            current = []
        else:
            current.append(t)
    assert current == [], "every document must end with the end-of-text id"
    return docs


@pytest.fixture(scope="module")
def text_corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    """40 small text documents (some non-ASCII) in nested folders."""
    root = tmp_path_factory.mktemp("texts")
    docs = {}
    for i in range(40):
        rel = f"{'sub/' if i % 3 == 0 else ''}doc_{i:02d}.txt"
        docs[rel] = f"document {i}: héllo wörld ✓\n" + f"def f(x):\n    return x * {i}\n" * (1 + i % 4)
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(docs[rel], encoding="utf-8")
    return root, docs


@pytest.fixture(scope="module")
def bytes_data(text_corpus: Corpus, tmp_path_factory: pytest.TempPathFactory) -> TokenData:
    root, _ = text_corpus
    config = DataConfig(corpus="files", tokenizer="bytes", data_files=(str(root / "**" / "*.txt"),),
                        val_fraction=0.3)
    return load_data(config, cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def code_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """~390 KB of real Python: sympy's logic and sets packages, plus a file that mentions the eot token."""
    root = tmp_path_factory.mktemp("code")
    for package in ("logic", "sets"):
        for path in (SYMPY_ROOT / package).rglob("*.py"):
            rel = path.relative_to(SYMPY_ROOT)
            if "tests" not in rel.parts:
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, root / rel)
    (root / "eot_literal.py").write_text('SEP = "<|endoftext|>"  # text, not a boundary\n')
    return root


def code_config(root: Path, **kw) -> DataConfig:
    return DataConfig(corpus="files", tokenizer="bpe", vocab_size=512, data_files=(f"{root}/**/*.py",),
                      val_fraction=0.25, **kw)


# -------------------- corpus: sympy


def test_sympy_corpus_fingerprint_and_split(tmp_path: Path) -> None:
    config = DataConfig(tokenizer="bytes")
    first = load_data(config, cache_dir=tmp_path / "a")
    second = load_data(config, cache_dir=tmp_path / "b")
    assert first.fingerprint == second.fingerprint
    assert len(first.fingerprint) == 64
    info = first.describe()
    assert info["corpus"] == "sympy" and info["sympy_version"] == sympy.__version__
    n_docs = first.n_docs_train + first.n_docs_val
    assert 700 <= n_docs <= 1000 and info["n_files"] == n_docs
    assert 0.03 <= first.n_docs_val / n_docs <= 0.08
    # Bytes tokenizer: every byte is a token, plus one end-of-text per document.
    assert first.train.numel() + first.val.numel() == info["n_bytes"] + n_docs
    assert 14e6 <= info["n_bytes"] <= 20e6
    if sympy.__version__ == "1.14.0":
        assert first.fingerprint == SYMPY_1_14_FINGERPRINT
        assert (n_docs, info["n_bytes"]) == (854, 16612271)


def test_sympy_file_selection_excludes_tests() -> None:
    root, rels, _ = D._sympy_files()
    assert root == SYMPY_ROOT and rels == sorted(rels)
    assert "core/basic.py" in rels and "__init__.py" in rels
    assert not any("tests" in r.split("/")[:-1] or r.rsplit("/", 1)[-1].startswith("test_") for r in rels)


# -------------------- bytes tokenizer


def test_bytes_round_trip(bytes_data: TokenData, text_corpus: Corpus) -> None:
    _, docs = text_corpus
    assert (bytes_data.vocab_size, bytes_data.eot_id, bytes_data.tokenizer_id) == (257, 256, "bytes")
    assert bytes_data.train.dtype == torch.int64 and bytes_data.train.ndim == 1
    rels = sorted(docs)
    want_val = [r for r in rels if expected_val(r, 0.3)]
    want_train = [r for r in rels if not expected_val(r, 0.3)]
    assert want_val and want_train
    assert (bytes_data.n_docs_train, bytes_data.n_docs_val) == (len(want_train), len(want_val))
    for tokens, want in ((bytes_data.train, want_train), (bytes_data.val, want_val)):
        got = [bytes(d).decode("utf-8") for d in split_docs(tokens, 256)]
        assert got == [docs[r] for r in want]
    val_bytes = sum(len(docs[r].encode()) for r in want_val)
    assert bytes_data.val_bytes_per_token == pytest.approx(val_bytes / bytes_data.val.numel())


def test_files_fingerprint_is_relative_to_common_parent(text_corpus: Corpus,
                                                        bytes_data: TokenData, tmp_path: Path) -> None:
    root, docs = text_corpus
    digest = hashlib.sha256()
    for rel in sorted(docs):
        digest.update(rel.encode() + b"\0" + docs[rel].encode() + b"\0")
    assert bytes_data.fingerprint == digest.hexdigest()
    moved = tmp_path / "elsewhere"
    shutil.copytree(root, moved)
    config = DataConfig(corpus="files", tokenizer="bytes", val_fraction=0.3,
                        data_files=(f"{moved}/*.txt", f"{moved}/sub/*.txt"))
    assert load_data(config, cache_dir=tmp_path / "c").fingerprint == bytes_data.fingerprint


def test_files_missing_pattern_is_named(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("x")
    pattern = str(tmp_path / "nothing*.txt")
    with pytest.raises(DataError, match="nothing"):
        config = DataConfig(corpus="files", tokenizer="bytes", data_files=(str(tmp_path / "a.txt"), pattern))
        load_data(config, cache_dir=tmp_path)


def test_files_empty_or_unsplittable_corpus(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(DataError, match="empty"):
        load_data(DataConfig(corpus="files", tokenizer="bytes", data_files=(str(tmp_path / "empty.txt"),)),
                  cache_dir=tmp_path)
    (tmp_path / "one.txt").write_text("just one document")
    with pytest.raises(DataError, match="split"):
        load_data(DataConfig(corpus="files", tokenizer="bytes", data_files=(str(tmp_path / "one.txt"),)),
                  cache_dir=tmp_path)


def test_files_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "latin1.txt").write_bytes("café".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        load_data(DataConfig(corpus="files", tokenizer="bytes", data_files=(str(tmp_path / "*.txt"),)),
                  cache_dir=tmp_path)


# -------------------- BPE + cache


def test_bpe_deterministic_and_cached(code_corpus: Path, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    config = code_config(code_corpus)
    a = load_data(config, cache_dir=tmp_path / "a")
    b = load_data(config, cache_dir=tmp_path / "b")
    assert Path(a.tokenizer_path).read_bytes() == Path(b.tokenizer_path).read_bytes()
    assert a.tokenizer_id == b.tokenizer_id and a.tokenizer_id.startswith("bpe-512-")
    assert torch.equal(a.train, b.train) and torch.equal(a.val, b.val)
    assert a.vocab_size == 512 and int(a.train.max()) < 512 and int(a.train.min()) >= 0
    # Exactly one end-of-text per document: the literal "<|endoftext|>" in eot_literal.py is text.
    assert int((a.train == a.eot_id).sum()) == a.n_docs_train
    assert int((a.val == a.eot_id).sum()) == a.n_docs_val
    key_dir = Path(a.tokenizer_path).parent
    assert key_dir.parent.name == a.fingerprint[:16]
    assert np.load(key_dir / "train.npy").dtype == np.uint16
    assert not list(key_dir.glob("*.tmp")) and not list(key_dir.glob(".*"))

    def no_training(*args, **kwargs):
        raise AssertionError("the tokenizer should have come from the cache")

    monkeypatch.setattr(D, "_train_bpe", no_training)
    monkeypatch.setattr(D, "_tokenize", no_training)
    start = time.perf_counter()
    c = load_data(config, cache_dir=tmp_path / "a")
    assert time.perf_counter() - start < 1.0
    assert c.tokenizer_id == a.tokenizer_id and torch.equal(c.train, a.train) and torch.equal(c.val, a.val)


def test_bpe_decodes_back_to_the_text(code_corpus: Path, tmp_path: Path) -> None:
    from tokenizers import Tokenizer

    data = load_data(code_config(code_corpus), cache_dir=tmp_path)
    tok = Tokenizer.from_file(data.tokenizer_path)
    rels = sorted(p.relative_to(code_corpus).as_posix() for p in code_corpus.rglob("*.py"))
    train_rels = [r for r in rels if not expected_val(r, 0.25)]
    first = split_docs(data.train, data.eot_id)[0]
    assert tok.decode(first) == (code_corpus / train_rels[0]).read_text()
    val_bytes = sum((code_corpus / r).stat().st_size for r in rels if expected_val(r, 0.25))
    assert data.val_bytes_per_token == pytest.approx(val_bytes / data.val.numel())


def test_corrupt_cache_is_rebuilt(code_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = code_config(code_corpus)
    good = load_data(config, cache_dir=tmp_path)
    key_dir = Path(good.tokenizer_path).parent
    # A truncated array (as a killed non-atomic writer would leave) is re-tokenised, without retraining.
    (key_dir / "train.npy").write_bytes((key_dir / "train.npy").read_bytes()[:1000])
    trained = []
    real_train = D._train_bpe
    monkeypatch.setattr(D, "_train_bpe", lambda *a: trained.append(1) or real_train(*a))
    again = load_data(config, cache_dir=tmp_path)
    assert torch.equal(again.train, good.train) and not trained
    # A corrupt tokenizer is retrained (deterministically: same id), and meta.json garbage is ignored.
    (key_dir / "tokenizer.json").write_text("{not json")
    (key_dir / "meta.json").write_text("garbage")
    again = load_data(config, cache_dir=tmp_path)
    assert trained and again.tokenizer_id == good.tokenizer_id and torch.equal(again.val, good.val)


def test_interrupted_write_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "x" / "file.npy"

    def crash(f):
        f.write(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        D._atomic_write(target, crash)
    assert list(target.parent.iterdir()) == []
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("")
    with pytest.raises(DataError, match="BLOCKBENCH_CACHE"):
        D._atomic_write(blocker / "sub" / "file.npy", crash)


# -------------------- batches


def test_train_batches_deterministic(bytes_data: TokenData) -> None:
    def take(seed, n=6, start=0):
        return list(itertools.islice(train_batches(bytes_data, seed, 4, 16, start_step=start), n))

    a, b, c = take(0), take(0), take(1)
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert any(not torch.equal(xa, xc) for (xa, _), (xc, _) in zip(a, c))
    windows = bytes_data.train.unfold(0, 17, 1)
    for x, y in a:
        assert x.shape == y.shape == (4, 16) and x.dtype == y.dtype == torch.int64
        assert torch.equal(x[:, 1:], y[:, :-1])
        full = torch.cat([x, y[:, -1:]], dim=1)
        assert all(bool((windows == row).all(dim=1).any()) for row in full)
    for (xa, ya), (xs, ys) in zip(a[3:], take(0, n=3, start=3)):
        assert torch.equal(xa, xs) and torch.equal(ya, ys)


def test_train_batches_leave_global_rng_alone(bytes_data: TokenData) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    next(train_batches(bytes_data, 7, 2, 8))
    assert torch.equal(torch.rand(3), expected)


def test_train_batches_errors(bytes_data: TokenData) -> None:
    with pytest.raises(DataError, match="too few"):
        next(train_batches(bytes_data, 0, 2, bytes_data.train.numel()))
    with pytest.raises(DataError, match="batch_size"):
        next(train_batches(bytes_data, 0, 0, 8))


def test_eval_windows(bytes_data: TokenData) -> None:
    torch.manual_seed(0)
    x, y = eval_windows(bytes_data, 32, 5)
    torch.manual_seed(1)
    x2, y2 = eval_windows(bytes_data, 32, 5)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert x.shape == (5, 32) and x.dtype == torch.int64
    assert torch.equal(x.flatten(), bytes_data.val[:160]) and torch.equal(y.flatten(), bytes_data.val[1:161])
    n = bytes_data.val.numel()
    xs, _ = eval_windows(bytes_data, 32, 10**9)
    assert xs.shape[0] == (n - 1) // 32
    with pytest.raises(DataError, match="too few"):
        eval_windows(bytes_data, n, 1)


def test_bits_per_byte() -> None:
    assert bits_per_byte(math.log(2), 1.0) == pytest.approx(1.0)
    assert bits_per_byte(3.0, 3.5) == pytest.approx(3.0 / math.log(2) / 3.5)
    with pytest.raises(DataError):
        bits_per_byte(1.0, 0.0)


def test_describe_is_json_able(bytes_data: TokenData) -> None:
    import json

    info = json.loads(json.dumps(bytes_data.describe()))
    assert info["n_tokens_train"] == bytes_data.train.numel() and info["tokenizer_id"] == "bytes"
    assert info["fingerprint"] == bytes_data.fingerprint and info["corpus"] == "files"


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BLOCKBENCH_CACHE", str(tmp_path))
    assert D.default_cache_dir() == tmp_path
    monkeypatch.delenv("BLOCKBENCH_CACHE")
    assert D.default_cache_dir() == Path.home() / ".cache" / "blockbench"


# -------------------- config errors


def test_fingerprint_pinning(text_corpus: Corpus, bytes_data: TokenData,
                             tmp_path: Path) -> None:
    root, _ = text_corpus
    base = dict(corpus="files", tokenizer="bytes", data_files=(str(root / "**" / "*.txt"),), val_fraction=0.3)
    wrong = "0" * 64
    with pytest.raises(DataError, match="fingerprint mismatch: expected 0000000000000000…") as info:
        load_data(DataConfig(**base, fingerprint=wrong), cache_dir=tmp_path)
    assert "allow_fingerprint_mismatch" in str(info.value) and "\n" not in str(info.value)
    forced = DataConfig(**base, fingerprint=wrong, allow_fingerprint_mismatch=True)
    assert load_data(forced, cache_dir=tmp_path).fingerprint == bytes_data.fingerprint
    for pin in (bytes_data.fingerprint, bytes_data.fingerprint[:16].upper()):
        pinned = load_data(DataConfig(**base, fingerprint=pin), cache_dir=tmp_path)
        assert pinned.fingerprint == bytes_data.fingerprint


def test_sympy_fingerprint_mismatch_names_version(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=f"sympy version {sympy.__version__}"):
        load_data(DataConfig(tokenizer="bytes", fingerprint="f" * 64), cache_dir=tmp_path)


@pytest.mark.parametrize("kwargs, message", [
    (dict(corpus="wikipedia"), "unknown corpus"),
    (dict(tokenizer="gpt2"), "unknown tokenizer"),
    (dict(vocab_size=100), "vocab_size"),
    (dict(vocab_size=4096.0), "vocab_size"),
    (dict(val_fraction=0.0), "val_fraction"),
    (dict(val_fraction=1.0), "val_fraction"),
    (dict(val_fraction=-0.1), "val_fraction"),
    (dict(corpus="files"), "data_files"),
    (dict(corpus="files", data_files="a.txt"), "tuple"),
    (dict(corpus="hub"), "hub_dataset"),
    (dict(tokenizer="hub"), "hub_tokenizer"),
    (dict(fingerprint="not-hex"), "fingerprint"),
])
def test_bad_config(kwargs: dict, message: str) -> None:
    with pytest.raises(DataError, match=message) as info:
        DataConfig(**kwargs)
    assert isinstance(info.value, BlockbenchError) and "\n" not in str(info.value)


def test_bytes_tokenizer_ignores_vocab_size() -> None:
    assert DataConfig(tokenizer="bytes", vocab_size=1).vocab_size == 1


# -------------------- hub (offline)


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    # Both libraries read these at import time, which may already have happened.
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def test_hub_dataset_offline(offline: None, tmp_path: Path) -> None:
    config = DataConfig(corpus="hub", hub_dataset="blockbench-test/no-such-dataset-xyz")
    start = time.perf_counter()
    with pytest.raises(DataError, match="could not load hub dataset 'blockbench-test/no-such-dataset-xyz' "
                                        r"\(no network access\?\): .*; use corpus='sympy' or corpus='files'"):
        load_data(config, cache_dir=tmp_path)
    assert time.perf_counter() - start < 10


def test_hub_tokenizer_offline(offline: None, text_corpus: Corpus, tmp_path: Path) -> None:
    root, _ = text_corpus
    config = DataConfig(corpus="files", data_files=(str(root / "**" / "*.txt"),), val_fraction=0.3,
                        tokenizer="hub", hub_tokenizer="blockbench-test/no-such-tokenizer-xyz")
    with pytest.raises(DataError, match="could not load hub tokenizer"):
        load_data(config, cache_dir=tmp_path)


def test_hub_code_path_with_local_stand_ins(code_corpus: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The hub path minus the network: load_dataset and from_pretrained answer with local objects."""
    import datasets
    import tokenizers

    texts = [p.read_text() for p in sorted(code_corpus.rglob("*.py"))]
    tables = {"u/train": {"content": texts[:20], "repo": ["r"] * 20},
              "u/valid": {"content": texts[20:], "repo": ["r"] * (len(texts) - 20)}}
    def fake_load(name: str, split: str) -> datasets.Dataset:
        return datasets.Dataset.from_dict(tables[name])

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    local_tok = load_data(code_config(code_corpus), cache_dir=tmp_path / "tok").tokenizer_path

    real_tokenizer = tokenizers.Tokenizer

    class FakeTokenizer:
        @staticmethod
        def from_pretrained(name: str) -> tokenizers.Tokenizer:
            return real_tokenizer.from_file(local_tok)

    monkeypatch.setattr(D, "Tokenizer", FakeTokenizer)  # data imports the class at its top
    config = DataConfig(corpus="hub", hub_dataset="u/train", hub_dataset_valid="u/valid", tokenizer="hub",
                        hub_tokenizer="u/tok")
    data = load_data(config, cache_dir=tmp_path / "hub")
    assert (data.n_docs_train, data.n_docs_val) == (20, len(texts) - 20)
    assert data.tokenizer_id.startswith("hub-u/tok-") and data.vocab_size == 512
    assert int((data.train == data.eot_id).sum()) == 20
    assert data.describe()["hub_dataset"] == "u/train"
    assert load_data(config, cache_dir=tmp_path / "hub").fingerprint == data.fingerprint
    # Without a validation dataset the train rows are split by the hash of "train/<row>".
    split = load_data(DataConfig(corpus="hub", hub_dataset="u/train", tokenizer="bytes", val_fraction=0.3),
                      cache_dir=tmp_path / "hub")
    n_val = sum(expected_val(f"train/{i}", 0.3) for i in range(20))
    assert (split.n_docs_train, split.n_docs_val) == (20 - n_val, n_val)
    val_texts = [t for i, t in enumerate(texts[:20]) if expected_val(f"train/{i}", 0.3)]
    assert [bytes(d).decode() for d in split_docs(split.val, 256)] == val_texts
    with pytest.raises(DataError, match="no column 'text'"):
        load_data(DataConfig(corpus="hub", hub_dataset="u/train", hub_text_field="text"), cache_dir=tmp_path)


# -------------------- full default corpus


@pytest.mark.slow
def test_default_corpus_bpe(tmp_path: Path) -> None:
    start = time.perf_counter()
    data = load_data(DataConfig(), cache_dir=tmp_path)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    warm = load_data(DataConfig(), cache_dir=tmp_path)
    warm_s = time.perf_counter() - start
    print(f"default corpus: cold {cold:.1f} s, warm {warm_s:.2f} s, {data.describe()}")
    assert warm_s < 2.0 and torch.equal(warm.train, data.train) and warm.tokenizer_id == data.tokenizer_id
    assert data.vocab_size == 4096 and data.tokenizer_id.startswith("bpe-4096-")
    assert 3.0 <= data.val_bytes_per_token <= 4.0
    assert 3.5e6 <= data.train.numel() <= 6e6
    assert int((data.train == data.eot_id).sum()) == data.n_docs_train
