"""Known recipes as a sweep's first trials: the `recipes:` section of the search space, checked against the space
and enqueued in Optuna, so a sweep's best is never worse than the best recipe it ran (see search_space.yaml)."""

from typing import Any

import optuna

from experiments.sweep.space import Space, contains, dataset_entry, family_paths, knobs_for, param_name

RECIPE_ATTR = "recipe"  # the trial user attribute (and, as stw.recipe, the run tag) naming a trial's recipe


def recipes_for(space: Space, data: str) -> dict[str, dict[str, Any]]:
    """The dataset's own recipes, else those of the dataset it derives from (ETT's for every ETT file), else the
    generic ones of its task (`forecast`, `classify`): a short sweep spends its first trials on the recipes that
    fit the data best."""
    return dict(dataset_entry(space, "recipes", data) or {})


def recipe_problems(space: Space, data: str, recipe: dict[str, Any], complete: bool = False) -> list[str]:
    """What makes a recipe no point of the dataset's space: an unknown family or knob, a value the distribution
    cannot draw, and (with `complete`) a knob of its family it leaves to the sampler."""
    family = recipe.get("family")
    if family is None:
        return ["it names no family"]
    knobs = knobs_for(space, data, family, set())
    problems = [
        f"{path} is not a knob of {family} on {data}" for path in recipe if path != "family" and path not in knobs
    ]
    problems += [f"{path}={recipe[path]!r} is outside {dist}" for path, dist in knobs.items()
                 if path in recipe and not contains(dist, recipe[path])]  # fmt: skip
    if complete:
        problems += [f"{path} has no value" for path in knobs if path not in recipe]
    return problems


def recipe_params(space: Space, data: str, recipe: dict[str, Any], fixed: set[str]) -> dict[str, Any]:
    """The recipe as Optuna parameters (the names the sampler uses); knobs fixed by key=value are not parameters."""
    family = recipe["family"]
    conditional = family_paths(space, data, family)
    params = {param_name(path, family, conditional): value for path, value in recipe.items()
              if path != "family" and path not in fixed}  # fmt: skip
    return {"family": family, **params}


def enqueue_recipes(study: optuna.Study, space: Space, data: str, families: list[str], fixed: set[str],
                    slots: int) -> list[str]:  # fmt: skip
    """Queue up to `slots` recipes ahead of sampled trials; returns a note for each one left out. A recipe already
    in the study (a resumed sweep) is not queued again (Optuna's skip_if_exists compares the parameters)."""
    notes = []
    for name, recipe in recipes_for(space, data).items():
        if recipe.get("family") not in families:
            notes.append(f"recipe {name} skipped: its family {recipe.get('family')} is not among --families")
        elif problems := recipe_problems(space, data, recipe):
            notes.append(f"recipe {name} skipped: not a point of this sweep's space ({'; '.join(problems)})")
        elif slots > 0:
            params = recipe_params(space, data, recipe, fixed)
            before = len(study.get_trials(deepcopy=False))
            study.enqueue_trial(params, user_attrs={RECIPE_ATTR: name}, skip_if_exists=True)
            slots -= len(study.get_trials(deepcopy=False)) - before
        else:
            notes.append(f"recipe {name} skipped: --trials leaves no room for it")
    return notes
