"""Creates that race: 64 clients released at once create one bucket, then one object only if it does not exist.

Exactly one of each wins (200); every other client gets the conflict the service answers (409, 412), never a
5xx, and the object holds the winner's bytes whole.
"""

from __future__ import annotations

import threading
from collections import Counter

import requests

CLIENTS = 64
BUCKET, OBJECT = "race-bucket", "datasets/same.jsonl"


def test_racing_creates_of_one_bucket_and_one_object_have_exactly_one_winner(emulator):
    url = emulator.url
    together = threading.Barrier(CLIENTS)
    statuses: Counter[tuple[str, int]] = Counter()
    winners: list[bytes] = []

    def client(index: int) -> None:
        session = requests.Session()
        session.trust_env = False
        together.wait(timeout=60)  # a client that failed must not hang the others
        created = session.post(f"{url}/storage/v1/b", params={"project": "race-project"}, json={"name": BUCKET},
                               timeout=60)
        statuses["buckets.insert", created.status_code] += 1
        together.wait(timeout=60)  # a client that failed must not hang the others
        body = f'{{"client": {index}}}\n'.encode() * 2000  # 30 kB, different per client
        uploaded = session.post(f"{url}/upload/storage/v1/b/{BUCKET}/o",
                                params={"uploadType": "media", "name": OBJECT, "ifGenerationMatch": 0}, data=body,
                                timeout=60)
        statuses["objects.insert", uploaded.status_code] += 1
        if uploaded.status_code == 200:
            winners.append(body)
        session.close()

    threads = [threading.Thread(target=client, args=(index,)) for index in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert statuses == {("buckets.insert", 200): 1, ("buckets.insert", 409): CLIENTS - 1,
                        ("objects.insert", 200): 1, ("objects.insert", 412): CLIENTS - 1}
    stored = requests.get(f"{url}/download/storage/v1/b/{BUCKET}/o/{OBJECT.replace('/', '%2F')}",
                          params={"alt": "media"}, timeout=30)
    assert stored.content == winners[0]
