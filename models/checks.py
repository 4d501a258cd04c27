"""Clear errors for configuration dataclasses (train.RunConfig, model_9.ModelConfig): a wrong type or an unknown
key names what is valid. Needs nothing but the standard library."""
from dataclasses import fields

_TYPES = {bool: ("true or false", bool), int: ("an integer", int), str: ("a word", str),
          tuple: ("a list", (tuple, list)), float: ("a number", (int, float)), dict: ("a dict", dict)}


def check_types(config, what="option", choices=None):
    """Refuse a field whose value has the wrong type, or is not among choices[field], naming the key."""
    for f in fields(config):
        v, (name, accepts) = getattr(config, f.name), _TYPES[f.type]
        if not isinstance(v, accepts) or (f.type is not bool and isinstance(v, bool)):  # True is an int in Python
            raise ValueError(f"{what} {f.name!r} takes {name}, got {v!r}")
        if f.name in (choices or {}) and v not in choices[f.name]:
            raise ValueError(f"{f.name} must be one of {choices[f.name]}, got {v!r}")


def from_dict(cls, d, what="option"):
    """cls(**d); unknown keys are an error that names the valid ones."""
    unknown = [k for k in d if k not in (valid := [f.name for f in fields(cls)])]
    if unknown:
        raise ValueError(f"unknown {what}(s) {unknown}; valid {what}s: {valid}")
    return cls(**d)
