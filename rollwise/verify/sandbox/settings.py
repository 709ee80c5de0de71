"""What the verifier sandbox attempts (`SandboxPolicy`) and the limits every process of its chain gets.

Shared by the process chain (`rollwise.verify.sandbox.policy`), the confinement steps
(`rollwise.verify.sandbox.confine`), the workers and the guard, so none of them imports another's module
only for these.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass

from rollwise.verify.sandbox import linux

NOBODY = 65534
PROCESS_LIMIT = 64  # per sandbox user namespace: template, its creator and one answer at a time
KEEP_ENVIRONMENT = ("PATH", "HOME", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ")


@dataclass(frozen=True)
class SandboxPolicy:
    """Which protections to attempt (all, by default). Tests switch parts off to exercise fallbacks.

    readonly: "auto" (one recursive mount_setattr, else each mount remounted), "remount" (always
    each mount), "off". uid: the unprivileged uid used when the trainer runs as root.
    """

    namespaces: tuple[str, ...] = ("user", "mount", "pid", "network", "ipc", "uts", "cgroup")
    readonly: str = "auto"
    seccomp: bool = True
    uid: int = NOBODY

    def __post_init__(self):
        unknown = set(self.namespaces) - set(linux.NAMESPACE_FLAGS)
        if unknown or self.readonly not in ("auto", "remount", "off"):
            raise ValueError(f"sandbox policy: unknown namespaces {sorted(unknown)} or readonly {self.readonly!r}; "
                             f"namespaces are {sorted(linux.NAMESPACE_FLAGS)}, readonly auto/remount/off")


def set_hard_limit(which: int, value: int) -> int:
    """Set soft and hard limit to value (never above the current hard limit); return the value set."""
    hard = resource.getrlimit(which)[1]
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(which, (value, value))
    return value
