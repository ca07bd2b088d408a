"""Which clips train, validate and test: what a split file says, else a seeded split of whole clips.

The seeded split is by group when clips have groups (all clips of a group land in one split, so a person or
a source video never appears on both sides), else stratified by class so every split keeps the class mix.
Some clips with a group and some without is a DataError: a stratified split would put a group on both sides.
"""

import random
from collections import defaultdict

from datamodules.errors import DataError
from datamodules.video.layouts import SPLITS, ClipRef


def check_groups(clips: list[ClipRef]) -> bool:
    """True when every clip has a group, False when none has; a DataError naming the first clip without one
    when only some have."""
    ungrouped = [clip for clip in clips if not clip.group]
    if ungrouped and len(ungrouped) < len(clips):
        grouped = len(clips) - len(ungrouped)
        raise DataError(
            f"{ungrouped[0].path}: no group, but {grouped} of {len(clips)} clips have one "
            f"({len(ungrouped)} lack it); a group split needs every clip's group: fill the split file's group "
            "column for every clip (UCF101 names carry it as _gNN_), or drop the column to split by class"
        )
    return not ungrouped


def seeded_split(clips: list[ClipRef], fractions: dict[str, float], seed: int) -> dict[str, list[int]]:
    """Clip indices per split: `fractions` (e.g. {"test": 0.15, "val": 0.15}) are filled in order, the rest train."""
    rng = random.Random(seed)
    if check_groups(clips):
        by_group = defaultdict(list)
        for i, clip in enumerate(clips):
            by_group[clip.group].append(i)
        strata = [[by_group[group] for group in sorted(by_group)]]  # one stratum whose units are whole groups
    else:
        by_label = defaultdict(list)
        for i, clip in enumerate(clips):
            by_label[clip.label].append([i])
        strata = [by_label[label] for label in sorted(by_label)]  # one stratum per class, units are single clips
    result: dict[str, list[int]] = {name: [] for name in SPLITS}
    for units in strata:
        rng.shuffle(units)
        total = sum(map(len, units))
        taken = dict.fromkeys(fractions, 0)
        for unit in units:
            name = next((s for s, share in fractions.items() if taken[s] < round(share * total)), "train")
            taken[name] = taken.get(name, 0) + len(unit)
            result[name] += unit
    return {name: sorted(indices) for name, indices in result.items()}


def split_clips(clips: list[ClipRef], val_fraction: float, test_fraction: float, seed: int) -> dict[str, list[int]]:
    """Clip indices per split. Splits a split file gives are kept; when it names no val clip, val is carved
    from train. Without given splits, the seeded split decides."""
    if not all(clip.split for clip in clips):
        return seeded_split(clips, {"test": test_fraction, "val": val_fraction}, seed)
    result = {name: [i for i, clip in enumerate(clips) if clip.split == name] for name in SPLITS}
    if not result["val"]:
        train = result["train"]
        carved = seeded_split([clips[i] for i in train], {"val": val_fraction}, seed)
        result["train"], result["val"] = [train[i] for i in carved["train"]], [train[i] for i in carved["val"]]
    return result
