"""A small, learnable corpus in the aclImdb layout, for tests and offline smoke runs.

The real data set is never needed by a test: this writes `aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt`
(and `train/unsup/<id>_0.txt`) with reviews whose sentiment words make the labels learnable. Reviews carry
`<br />` breaks and non-ASCII text, as the real ones do.
"""

from __future__ import annotations

import random
import tarfile
import tempfile
from pathlib import Path

POSITIVE_WORDS = ("amazing", "wonderful", "brilliant", "superb", "moving", "delightful", "masterpiece", "loved")
NEGATIVE_WORDS = ("boring", "dull", "awful", "terrible", "waste", "tedious", "dreadful", "hated")
NEUTRAL_WORDS = (
    "the", "movie", "film", "plot", "actors", "director", "scene", "story", "music", "camera", "ending",
    "characters", "was", "and", "with", "a", "of", "two", "hours", "café", "naïve", "über",
)  # fmt: skip


def synthetic_review(rng: random.Random, label: str, n_words: int = 40, polar_rate: float = 0.25) -> str:
    """`polar_rate`: the share of sentiment words; lower makes the labels harder to learn from few reviews."""
    polar = POSITIVE_WORDS if label == "pos" else NEGATIVE_WORDS if label == "neg" else POSITIVE_WORDS + NEGATIVE_WORDS
    words = [rng.choice(polar) if rng.random() < polar_rate else rng.choice(NEUTRAL_WORDS) for _ in range(n_words)]
    half = n_words // 2
    return " ".join(words[:half]).capitalize() + ".<br /><br />" + " ".join(words[half:]) + "!"


def write_aclimdb(
    root: Path,
    *,
    n_train: int = 40,
    n_test: int = 20,
    n_unsup: int = 10,
    seed: int = 0,
    splits: tuple[str, ...] = ("train", "test"),
    polar_rate: float = 0.25,
) -> Path:
    """Write the corpus under `root/aclImdb` and return that folder. Counts are per label."""
    rng = random.Random(seed)
    top = root / "aclImdb"
    (top / "README").parent.mkdir(parents=True, exist_ok=True)
    (top / "README").write_text("Synthetic corpus in the Large Movie Review Dataset layout.\n", encoding="utf-8")
    next_id = 0
    for split in splits:
        n = n_train if split == "train" else n_test
        folders = [("pos", n), ("neg", n)] + ([("unsup", n_unsup)] if split == "train" and n_unsup else [])
        for label, count in folders:
            folder = top / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for _ in range(count):
                rating = 0 if label == "unsup" else rng.randint(7, 10) if label == "pos" else rng.randint(1, 4)
                text = synthetic_review(rng, label, polar_rate=polar_rate)
                (folder / f"{next_id}_{rating}.txt").write_text(text, encoding="utf-8")
                next_id += 1
    return top


def write_aclimdb_tarball(path: Path, **corpus_options: object) -> Path:
    """Write the corpus as a `.tar.gz` with the official tarball's `aclImdb/` top folder."""
    with tempfile.TemporaryDirectory(prefix=f".{path.name}.staging-", dir=path.parent) as staging:
        top = write_aclimdb(Path(staging), **corpus_options)  # type: ignore[arg-type]
        with tarfile.open(path, "w:gz") as tar:
            tar.add(top, arcname="aclImdb")
    return path
