"""Envs named by a dataset are built only from code the user already trusts.

Defines `vet_env_spec`, `UntrustedEnvSpec`.

A Minari dataset stores the Gymnasium `EnvSpec` of its env, including an `entry_point` ("module:
attribute") and `additional_wrappers`, and `gym.make(spec)` imports and calls them. A dataset
from elsewhere could name `os:system`. So an env is built from a dataset's spec only when its id
is in Gymnasium's registry (the built-in envs, or a module the user imported, e.g. with `--env
envs:PlanarArm-v0`) with the same entry point and no extra wrappers; then the *registry's* entry
point is used and the dataset contributes only data (keyword arguments, the time limit). Anything
else needs the user's explicit trust (`trust=True`, `--trust-dataset-env` on the command line).
"""

from __future__ import annotations

import dataclasses

from gymnasium.envs.registration import EnvSpec, registry


class UntrustedEnvSpec(ValueError):
    """A dataset's env spec names code outside Gymnasium's registry (refused without trust)."""


def vet_env_spec(spec: EnvSpec | None, source: str, trust: bool = False) -> EnvSpec | None:
    """The spec to build a dataset's env from, or `UntrustedEnvSpec` naming why and the fix.

    Args:
        spec: the dataset's recorded spec (None: the dataset records no env; returned as is).
        source: what recorded it, for messages (e.g. "dataset 'me/hopper/logged-v0'").
        trust: build from the dataset's spec as recorded (imports and runs its entry point).

    Returns:
        A spec whose entry point is the registry's own (or, with `trust`, the recorded spec).
    """
    if spec is None or trust:
        return spec
    registered = registry.get(spec.id)
    fix = (
        f"pass the env yourself (--env {spec.id} after registering it, or --env module:{spec.id}; "
        f"env=... in Python), or, if you trust where {source} came from, --trust-dataset-env "
        "(trust_env=True), which imports and runs that code"
    )
    if registered is None:
        raise UntrustedEnvSpec(
            f"{source} records env {spec.id!r} (entry point {spec.entry_point!r}), which is not in Gymnasium's "
            f"registry; spar_rectify does not import code named by a dataset: {fix}."
        )
    if str(registered.entry_point) != str(spec.entry_point):
        raise UntrustedEnvSpec(
            f"{source} records env {spec.id!r} with entry point {spec.entry_point!r}, but Gymnasium registers "
            f"{spec.id!r} as {registered.entry_point!r}; refusing to import the dataset's: {fix}."
        )
    if spec.additional_wrappers:
        names = [w.entry_point for w in spec.additional_wrappers]
        raise UntrustedEnvSpec(
            f"{source} records extra wrappers {names} around {spec.id!r}; refusing to import them: {fix}."
        )
    return dataclasses.replace(registered, kwargs=dict(spec.kwargs), max_episode_steps=spec.max_episode_steps)
