"""How fast a datamodule's training loader delivers frames, for benchmarks."""

from time import perf_counter

from datamodules.base import StwDataModule


def loader_frames_per_second(datamodule: StwDataModule, n_batches: int = 20) -> float:
    """Frames (items x clip_len) per second through `n_batches` training batches, after setup.

    Setup (finding, decoding and caching clips) is done first and not timed: the figure is what training
    waits for on every epoch. The loader is restarted if it has fewer than `n_batches` batches. The caller
    chooses torch's thread count: on a busy 2-core machine one thread can be far faster than two.
    """
    datamodule.setup("fit")
    frames, batches, started = 0, 0, perf_counter()
    while batches < n_batches:
        for x, _ in datamodule.train_dataloader():
            frames += x.shape[0] * x.shape[1]  # [B, T, ...] for frames and vectors alike
            batches += 1
            if batches == n_batches:
                break
    return frames / (perf_counter() - started)
