"""Load test for the sentiment API: many users posting movie reviews of realistic length.

    locust -f workload/locustfile.py --host https://<alb-dns-name>            # web UI on :8089
    locust -f workload/locustfile.py --host http://127.0.0.1:8080 --headless -u 50 -r 10 -t 2m

Each user mostly posts one review to /predict, sometimes a small batch, and now and then checks /health,
roughly the mix a public endpoint sees. Reviews are assembled from movie-review phrases with IMDB's length
distribution (median ~165 words, long tail to ~1000), so tokenisation and inference cost what real traffic
costs.
"""

from __future__ import annotations

import random

from locust import HttpUser, between, task

# Not workload_devtools.synthetic's reviews: this file must run wherever locust alone is installed, without the package.
OPENINGS = (
    "I went into this film with low expectations.",
    "I have seen this movie three times now.",
    "My friends recommended this one and I finally watched it.",
    "This was a late-night rental on a rainy Sunday.",
    "I remember seeing the trailer years ago.",
)
POSITIVE = (
    "The performances are superb and the script is sharp and witty.",
    "The cinematography is gorgeous, every frame looks like a painting.",
    "It is a moving story and the ending stayed with me for days.",
    "The lead actress gives a wonderful, understated performance.",
    "An absolute masterpiece of pacing and tension.",
)
NEGATIVE = (
    "The plot is dull and the dialogue is painfully wooden.",
    "It was a boring, tedious waste of two hours.",
    "The acting is terrible and the editing is a mess.",
    "I kept checking my watch; nothing happens for the first hour.",
    "The twist is predictable and the ending makes no sense.",
)
NEUTRAL = (
    "The film runs a little over two hours.",
    "It is based on a novel I have not read.",
    "The soundtrack features a lot of seventies rock.",
    "Most of it was shot on location in the desert.",
    "The director also co-wrote the screenplay.",
    "There is a brief cameo by a famous comedian.<br /><br />",
)


def review(rng: random.Random) -> str:
    """One review; words ~ lognormal(5.1, 0.6), i.e. median exp(5.1) ~ 164 words, like the IMDB corpus."""
    target_words = min(1000, max(20, int(rng.lognormvariate(5.1, 0.6))))
    polar = POSITIVE if rng.random() < 0.5 else NEGATIVE
    sentences = [rng.choice(OPENINGS)]
    words = len(sentences[0].split())
    while words < target_words:
        sentence = rng.choice(polar) if rng.random() < 0.4 else rng.choice(NEUTRAL)
        sentences.append(sentence)
        words += len(sentence.split())
    return " ".join(sentences)


class ReviewerUser(HttpUser):
    wait_time = between(0.5, 2.0)

    def on_start(self) -> None:
        self.rng = random.Random()

    @task(20)
    def predict_one(self) -> None:
        self.client.post("/predict", json={"text": review(self.rng)}, name="/predict (single)")

    @task(2)
    def predict_batch(self) -> None:
        texts = [review(self.rng) for _ in range(self.rng.randint(2, 16))]
        self.client.post("/predict", json={"texts": texts}, name="/predict (batch)")

    @task(1)
    def health(self) -> None:
        self.client.get("/health")
