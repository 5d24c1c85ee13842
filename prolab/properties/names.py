"""Human-readable property names: the member description nearest the centre (deterministic), optionally
shortened by an LLM through the stage-1 backends and call cache."""
from __future__ import annotations

import numpy as np

from .space import PropertySpace


def nearest_member_names(space: PropertySpace, desc_embeddings: np.ndarray) -> list[str]:
    """For each property, the description (among its members) with the highest cosine to the centre."""
    x = desc_embeddings / np.clip(np.linalg.norm(desc_embeddings, axis=1, keepdims=True), 1e-12, None)
    names = []
    for k in range(space.n_properties):
        idx = np.flatnonzero(space.desc_property == k)
        if len(idx) == 0:
            names.append(f"property {k}")
            continue
        centre = space.bank[k] / max(np.linalg.norm(space.bank[k]), 1e-12)
        best = idx[np.argmax(x[idx] @ centre)]
        names.append(space.descriptions[best])
    return names


NAME_PROMPT = ("These short descriptions of different things share one visual property:\n{members}\n"
               "Name that shared property in 2 to 4 words (for example: \"covered in fur\", \"flat grey surface\"). "
               "Answer with the name only.")


def llm_short_names(space: PropertySpace, backend, cache, max_members: int = 8, progress: bool = True) -> list[str]:
    """Ask an LLM for a 2-4 word name per property; answers go through the stage-1 call cache, so the replay
    backend reproduces them. Falls back to the current name when a reply is unusable."""
    from ..progress import tqdm

    from ..describe.backends import GenerationParams
    from ..describe.cache import call_key

    params = GenerationParams(max_tokens=16)
    out = []
    for k in tqdm(range(space.n_properties), desc="naming properties", disable=not progress):
        members = space.members(k)[:max_members]
        if not members:
            out.append(space.property_names[k])
            continue
        messages = [{"role": "user", "content": NAME_PROMPT.format(members="\n".join(f"- {m}" for m in members))}]
        key = call_key(backend.model_id, messages, params.as_dict())
        hit = cache.get(key)
        reply = hit["reply"] if hit else backend.complete(messages, params)
        if not hit:
            cache.put(key, reply, model=backend.model_id, prompt="property-name", class_name=f"property {k}",
                      attempt=1, params=params.as_dict())
        name = reply.strip().strip("\"'.").splitlines()[0].strip() if reply.strip() else ""
        out.append(name if 0 < len(name.split()) <= 6 else space.property_names[k])
    return out
