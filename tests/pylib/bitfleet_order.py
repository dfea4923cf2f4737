"""bitfleet's data order (worker/text/sampler.h), reimplemented for Python baselines: a job's
epoch visits examples in the Fisher-Yates permutation drawn from SplitMix64, each run of 32
batches then stably sorted longest first."""

MASK = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
GROUP_BATCHES = 32


def epoch_order(n, seed, epoch, batch_size, lengths=None):
    state = (seed ^ (GOLDEN * (epoch + 1))) & MASK
    order = list(range(n))

    def next_value():
        nonlocal state
        state = (state + GOLDEN) & MASK
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    for i in range(n - 1, 0, -1):
        j = next_value() % (i + 1)
        order[i], order[j] = order[j], order[i]
    if lengths is not None:
        chunk = batch_size * GROUP_BATCHES
        for start in range(0, n, chunk):
            order[start:start + chunk] = sorted(order[start:start + chunk], key=lambda i: -lengths[i])
    return order


def batches(n, seed, epochs, batch_size, lengths, max_steps=0):
    """The global batches of a job, in order: lists of example indices."""
    out = []
    for epoch in range(epochs):
        order = epoch_order(n, seed, epoch, batch_size, lengths)
        out.extend(order[i:i + batch_size] for i in range(0, n, batch_size))
    return out[:max_steps] if max_steps else out
