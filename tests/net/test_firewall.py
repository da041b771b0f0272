"""The filter table as iptables-save prints it, and what INPUT does with a port: closed only
when the rules leave no doubt; Docker's publications that pass by a closed INPUT."""

from __future__ import annotations

import pytest

from servepath.net.firewall import input_verdict, parse_iptables_save, published_past_firewall
from servepath.net.listeners import PortMapping, parse_iptables_nat

DOCKER_NAT = """*nat
:PREROUTING ACCEPT [0:0]
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A DOCKER -i docker0 -j RETURN
-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80
-A DOCKER -d 127.0.0.1/32 ! -i docker0 -p tcp -m tcp --dport 9090 -j DNAT --to-destination 172.17.0.3:90
COMMIT
"""  # noqa: E501


def _filter(*rules: str, policy: str = "ACCEPT", chains: tuple[str, ...] = ()) -> str:
    declared = "".join(f":{c} - [0:0]\n" for c in chains)
    body = "".join(f"{r}\n" for r in rules)
    return f"*filter\n:INPUT {policy} [0:0]\n:FORWARD DROP [0:0]\n{declared}{body}COMMIT\n"


@pytest.mark.parametrize(
    ("text", "decision"),
    [
        (_filter(), "accept"),
        (_filter(policy="DROP"), "drop"),
        (_filter("-A INPUT -p tcp -m tcp --dport 8080 -j DROP"), "drop"),
        (_filter("-A INPUT -p tcp -m multiport --dports 80,8000:8090 -j REJECT"), "reject"),
        (_filter("-A INPUT -p tcp -m tcp --dport 8081 -j DROP"), "accept"),
        (_filter("-A INPUT -p udp -m udp --dport 8080 -j DROP"), "accept"),
        (_filter("-A INPUT -p tcp ! --dport 22 -j DROP"), "drop"),
        # loopback and established traffic are not a new connection from another host
        (_filter("-A INPUT -i lo -j ACCEPT", policy="DROP"), "drop"),
        (_filter("-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT", policy="DROP"),
         "drop"),
        # a rule for some callers decides nothing for every caller
        (_filter("-A INPUT -s 10.0.0.0/8 -p tcp --dport 8080 -j DROP"), "accept"),
        (_filter("-A INPUT -s 10.0.0.0/8 -p tcp --dport 8080 -j ACCEPT", policy="DROP"), "drop"),
        # matches that cannot be told: never closes, never leaves an open door unseen
        (_filter("-A INPUT -i eth0 -p tcp --dport 8080 -j DROP"), "accept"),
        (_filter("-A INPUT -m recent --rcheck -j ACCEPT", policy="DROP"), "accept"),
        # chains that jump to chains (ufw's shape)
        (_filter("-A INPUT -j user", "-A user -p tcp --dport 8080 -j DROP", chains=("user",)),
         "drop"),
        (_filter("-A INPUT -j user", "-A user -p tcp --dport 22 -j ACCEPT", "-A user -j RETURN",
                 policy="DROP", chains=("user",)), "drop"),
        (_filter("-A INPUT -j user", "-A user -j RETURN", "-A INPUT -p tcp --dport 8080 -j DROP",
                 chains=("user",)), "drop"),
    ],
)  # fmt: skip
def test_what_input_does_with_a_new_connection_to_the_port(text: str, decision: str) -> None:
    assert input_verdict(parse_iptables_save(text), 8080).decision == decision


def test_the_verdict_names_the_rule_that_decided() -> None:
    rules = parse_iptables_save(_filter("-A INPUT -p tcp -m tcp --dport 8080 -j DROP"))
    assert input_verdict(rules, 8080).rule == "-A INPUT -p tcp -m tcp --dport 8080 -j DROP"
    assert input_verdict(parse_iptables_save(_filter(policy="DROP")), 1).rule == (
        "policy DROP of INPUT"
    )


def test_other_tables_and_garbage_are_left_out() -> None:
    rules = parse_iptables_save(DOCKER_NAT + '*filter\n-A INPUT -m comment --comment "x\n')
    assert not rules.has_chain("DOCKER") and rules.rules.get("INPUT", ()) == ()
    assert input_verdict(parse_iptables_save(""), 8080).decision == "none"


def test_docker_dnat_on_every_address_passes_a_closed_input_and_loopback_does_not() -> None:
    mappings = parse_iptables_nat(DOCKER_NAT)
    rules = parse_iptables_save(
        _filter("-A INPUT -p tcp --dport 8080 -j DROP", "-A INPUT -p tcp --dport 9090 -j DROP")
    )
    (bypass,) = published_past_firewall(rules, mappings, 8080)
    assert (bypass.mapping.target_ip, bypass.mapping.target_port) == ("172.17.0.2", 80)
    assert not bypass.ufw
    assert published_past_firewall(rules, mappings, 9090) == []  # -p 127.0.0.1:9090:90
    open_rules = parse_iptables_save(_filter())
    assert published_past_firewall(open_rules, mappings, 8080) == []


def test_docker_proxy_and_its_dnat_rule_are_one_publication() -> None:
    proxy = PortMapping("docker-proxy", "tcp", 8080, 80, None, "172.17.0.2")
    rules = parse_iptables_save(_filter(policy="DROP"))
    found = published_past_firewall(rules, (proxy, *parse_iptables_nat(DOCKER_NAT)), 8080)
    assert len(found) == 1


@pytest.mark.parametrize(
    ("docker_user", "bypassed"),
    [
        ("-A DOCKER-USER -j RETURN", True),
        ("-A DOCKER-USER -p tcp -m conntrack --ctorigdstport 8080 -j DROP", False),
        ("-A DOCKER-USER -p tcp -m tcp --dport 80 -j REJECT", False),
        ("-A DOCKER-USER -s 192.168.1.0/24 -p tcp --dport 80 -j DROP", True),
    ],
)
def test_docker_user_closing_the_port_where_docker_traffic_passes_is_no_bypass(
    docker_user: str, bypassed: bool
) -> None:
    rules = parse_iptables_save(
        _filter("-A INPUT -p tcp --dport 8080 -j DROP", docker_user, chains=("DOCKER-USER",))
    )
    found = published_past_firewall(rules, parse_iptables_nat(DOCKER_NAT), 8080)
    assert bool(found) is bypassed
