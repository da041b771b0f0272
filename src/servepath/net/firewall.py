"""What this machine's packet filter says of a TCP port, read from ``iptables-save``.

The question is narrow: would a new connection from another host to port P be dropped or
rejected by the INPUT chain (and the chains it jumps to: ufw's, firewalld's), and does
Docker publish P anyway? Docker's DNAT in ``PREROUTING`` rewrites a published port's
destination to the container before INPUT is consulted, so the packet goes through FORWARD
(``DOCKER-USER``, ``DOCKER``) instead: ``ufw deny 8080`` does not close a port that ``docker
run -p 8080:80`` publishes (moby#4737). The walk is conservative: a rule whose matches cannot
be decided from "tcp to port P from some other host" never closes the port and never stops
a walk that could still accept it, so the verdict "closed" is only given when the rules leave
no doubt. Parsing and the walk are pure; :func:`read_rules` runs ``iptables-save`` once.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from servepath.net.listeners import PortMapping

__all__ = [
    "Bypass",
    "ChainVerdict",
    "Rule",
    "Ruleset",
    "input_verdict",
    "parse_iptables_save",
    "published_past_firewall",
    "read_rules",
]

Decision = Literal["accept", "drop", "reject", "none"]
_Tri = bool | None  # a match that holds, does not, or cannot be told

_CLOSING = ("DROP", "REJECT")
_MAX_DEPTH = 16  # chains jumping to chains: deeper than any real ruleset


@dataclass(frozen=True)
class Rule:
    chain: str
    args: tuple[str, ...]
    target: str | None
    text: str  # the line as iptables-save wrote it


@dataclass(frozen=True)
class Ruleset:
    """The filter table: each chain's policy (built-in chains) and rules, in order."""

    policies: dict[str, str] = field(default_factory=dict)
    rules: dict[str, tuple[Rule, ...]] = field(default_factory=dict)

    def has_chain(self, name: str) -> bool:
        return name in self.policies or name in self.rules


@dataclass(frozen=True)
class ChainVerdict:
    """What a chain does with the packet, and the rule (or policy) that decided it."""

    decision: Decision
    rule: str | None = None

    @property
    def closed(self) -> bool:
        return self.decision in ("drop", "reject")

    def to_json(self) -> dict[str, Any]:
        return {"decision": self.decision, "rule": self.rule}


@dataclass(frozen=True)
class Bypass:
    """A published port that the INPUT chain closes, which Docker's DNAT sends past it."""

    mapping: PortMapping
    input: ChainVerdict
    ufw: bool  # ufw manages the rules: its own command names the way out

    def to_json(self) -> dict[str, Any]:
        return {"mapping": self.mapping.to_json(), "input": self.input.to_json(), "ufw": self.ufw}


def parse_iptables_save(text: str) -> Ruleset:
    """The filter table of ``iptables-save`` output (other tables are skipped)."""
    policies: dict[str, str] = {}
    rules: dict[str, list[Rule]] = {}
    table = None
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("*"):
            table = line[1:]
            continue
        if table != "filter":
            continue
        if line.startswith(":"):
            name, _, rest = line[1:].partition(" ")
            policy = rest.split(" ", 1)[0]
            if policy != "-":
                policies[name] = policy
            rules.setdefault(name, [])
        elif line.startswith("-A "):
            try:
                tokens = shlex.split(line)
            except ValueError:
                continue
            if len(tokens) < 2:
                continue
            chain = tokens[1]
            target = None
            for i, tok in enumerate(tokens):
                if tok in ("-j", "--jump", "-g", "--goto") and i + 1 < len(tokens):
                    target = tokens[i + 1]
            rules.setdefault(chain, []).append(Rule(chain, tuple(tokens[2:]), target, line))
    return Ruleset(policies, {k: tuple(v) for k, v in rules.items()})


def _in_ports(spec: str, port: int) -> bool:
    for part in spec.split(","):
        low, _, high = part.replace("-", ":").partition(":")
        try:
            if int(low or 0) <= port <= int(high or low or 65535):
                return True
        except ValueError:
            continue
    return False


def _all(results: Sequence[_Tri]) -> _Tri:
    if any(r is False for r in results):
        return False
    if any(r is None for r in results):
        return None
    return True


def _matches(args: Sequence[str], port: int, original_port: int) -> _Tri:
    """Whether a rule's matches hold for a new TCP connection from another host to ``port``
    (``original_port`` before DNAT, for ``--ctorigdstport``)."""
    results: list[_Tri] = []
    i = 0
    negate = False
    while i < len(args):
        tok = args[i]
        value = args[i + 1] if i + 1 < len(args) else ""
        if tok == "!":
            negate, i = True, i + 1
            continue
        step = 2
        result: _Tri
        if tok in ("-j", "--jump", "-g", "--goto"):
            result = True
            step = len(args)  # the target's own options follow
        elif tok in ("-m", "--match", "--comment", "--limit", "--limit-burst"):
            result = True  # a module is named; its options are read as they come
        elif tok in ("-p", "--protocol"):
            result = value in ("tcp", "6", "all", "0")
        elif tok in ("--dport", "--destination-port", "--dports", "--destination-ports"):
            result = _in_ports(value, port)
        elif tok == "--ports":
            result = _in_ports(value, port) or None
        elif tok in ("--sport", "--source-port", "--sports", "--source-ports"):
            result = None  # the caller's port is anyone's
        elif tok == "--ctorigdstport":
            result = _in_ports(value, original_port)
        elif tok in ("-s", "--source", "--src"):
            # a rule for some callers does not decide for every caller
            result = value in ("0.0.0.0/0", "::/0")
        elif tok in ("-d", "--destination", "--dst"):
            result = True if value in ("0.0.0.0/0", "::/0") else None
        elif tok in ("-i", "--in-interface"):
            # the packet comes from another host: never on loopback, on an interface we
            # cannot name from here
            result = False if value == "lo" else None
        elif tok in ("--ctstate", "--state"):
            result = "NEW" in value.split(",")
        elif tok == "--dst-type":
            result = value == "LOCAL"
        elif tok == "--src-type":
            result = None if value != "LOCAL" else False
        elif tok == "--syn":
            result, step = True, 1
        elif tok in ("--icmp-type", "--icmpv6-type"):
            result = False
        else:
            result = None
            # an option without a value (a flag) or with one: skip what looks like a value
            if not value or value.startswith("-") or value == "!":
                step = 1
        if negate and result is not None:
            result = not result
        negate = False
        results.append(result)
        i += step
    return _all(results)


def _walk(
    rules: Ruleset, chain: str, port: int, original_port: int, depth: int = 0
) -> ChainVerdict | None:
    """The verdict of ``chain``, or None when the packet returns from it undecided."""
    if depth > _MAX_DEPTH:
        return ChainVerdict("none")
    for rule in rules.rules.get(chain, ()):
        held = _matches(rule.args, port, original_port)
        target = rule.target
        if held is False or target is None:
            continue
        if target == "ACCEPT":
            return ChainVerdict("accept", rule.text)  # a maybe-accept ends the doubt too
        if target in _CLOSING:
            if held:
                return ChainVerdict("drop" if target == "DROP" else "reject", rule.text)
            continue
        if target == "RETURN":
            return None
        if rules.has_chain(target):
            inner = _walk(rules, target, port, original_port, depth + 1)
            # a jump that may not apply still ends the walk when what it leads to would
            # open the port: "closed" is said only without doubt
            if inner is not None and (held or not inner.closed):
                return inner
            continue
        if target in ("LOG", "NFLOG", "MARK", "CONNMARK", "CT", "NOTRACK", "TRACE", "AUDIT"):
            continue
        return ChainVerdict("none", rule.text)  # NFQUEUE and the like: another program decides
    policy = rules.policies.get(chain)
    if policy is None:
        return None  # a user chain: back to the one that jumped here
    decision: Decision = "drop" if policy == "DROP" else "accept"
    return ChainVerdict(decision, f"policy {policy} of {chain}")


def input_verdict(rules: Ruleset, port: int) -> ChainVerdict:
    """What INPUT does with a new TCP connection from another host to ``port``."""
    if not rules.has_chain("INPUT"):
        return ChainVerdict("none")
    return _walk(rules, "INPUT", port, port) or ChainVerdict("accept", None)


def published_past_firewall(
    rules: Ruleset, mappings: Sequence[PortMapping], port: int
) -> list[Bypass]:
    """Docker's publications of ``port`` to every address that INPUT closes and
    ``DOCKER-USER`` lets through: the port is open, whatever the firewall's rules say."""
    closing = input_verdict(rules, port)
    if not closing.closed:
        return []
    found: list[Bypass] = []
    for m in mappings:
        if m.protocol != "tcp" or not m.covers(port) or m.target_ip is None:
            continue
        if m.host_ip is not None and m.host_ip not in ("0.0.0.0", "::"):
            continue  # published on one address (127.0.0.1: the fix already made)
        if m.source == "iptables" and m.chain not in ("DOCKER", "PREROUTING"):
            continue
        user = (
            _walk(rules, "DOCKER-USER", m.target_port, port)
            if rules.has_chain("DOCKER-USER")
            else None
        )
        if user is not None and user.closed:
            continue  # DOCKER-USER closes it where Docker's traffic passes
        ufw = any(name.startswith("ufw-") for name in rules.rules)
        found.append(Bypass(m, closing, ufw))
    # docker-proxy and the DNAT rule name the same publication: keep one
    unique: dict[tuple[int, str | None, int], Bypass] = {}
    for b in found:
        unique.setdefault((b.mapping.host_port, b.mapping.target_ip, b.mapping.target_port), b)
    return list(unique.values())


def read_rules(timeout: float = 5.0) -> tuple[Ruleset | None, str | None]:
    """The filter table as ``iptables-save -t filter`` prints it, or why it could not be read."""
    path = shutil.which("iptables-save") or next(
        (p for p in ("/usr/sbin/iptables-save", "/sbin/iptables-save") if os.path.exists(p)),
        None,
    )
    if path is None:
        return None, "iptables-save is not installed: the firewall's rules not read"
    if os.geteuid() != 0:
        return None, "the firewall's rules need root to read (iptables-save)"
    try:
        proc = subprocess.run(
            [path, "-t", "filter"], capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"iptables-save failed: {exc}"
    if proc.returncode != 0:
        return None, f"iptables-save failed: {proc.stderr.strip() or proc.returncode}"
    return parse_iptables_save(proc.stdout), None
