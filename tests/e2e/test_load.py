"""Many concurrent requests share one engine, and seeds survive the burst."""

from concurrent.futures import ThreadPoolExecutor

from tests.harness import CHAT_MODEL

PROMPT = [{"role": "user", "content": "Write a short poem about the sea."}]


def test_64_concurrent_requests_all_succeed(openai_client):
    client = openai_client()

    def one(i):
        return client.chat.completions.create(model=CHAT_MODEL, messages=PROMPT, max_tokens=16, seed=i)

    with ThreadPoolExecutor(64) as pool:
        replies = list(pool.map(one, range(64)))
    assert all(r.usage.completion_tokens > 0 and r.choices[0].message.content for r in replies)
    assert len({r.id for r in replies}) == 64


def test_seed_burst_then_seeds_alone_give_the_same_text(openai_client):
    """A burst of seeded requests once killed the CPU engine core; now it must not even change a text.

    Every fourth seed is replayed alone: each replay is a sequential request, and 16 of them
    show a batch-dependent text as surely as 64 would, in a quarter of the time.
    """
    client = openai_client()
    seeds = [1000 + 37 * i for i in range(64)]

    def one(seed):
        reply = client.chat.completions.create(
            model=CHAT_MODEL, messages=PROMPT, max_tokens=16, seed=seed, temperature=1.0
        )
        return reply.choices[0].message.content

    with ThreadPoolExecutor(64) as pool:
        burst = list(pool.map(one, seeds))
    alone = [one(seed) for seed in seeds[::4]]
    assert burst[::4] == alone
    assert len(set(burst)) > 32  # different seeds really sample differently
