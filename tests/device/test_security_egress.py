# The agent arms the board's network guard from its configuration
# (agent/security/commands_boot.py arm_egress over flags.arm_egress): broker
# + update server + listed extras; quarantine narrows to broker + update
# server; a blocked connection becomes an egress_blocked event.
import devtest
from agent.security import commands_boot, events, flags
from board import netguard

IDENT = {"host": "10.0.0.5", "port": 8883}
CFG = {"update": {"metadata_url": "https://updates.example:8443/metadata", "targets_url": "http://cdn.example/t"},
       "egress": {"allow": ["ntp.example:123"]}}


def test_allow_list_from_configuration_and_quarantine():
    devtest.reset_netguard()
    d = devtest.tmpdir()
    core = commands_boot.arm_egress(IDENT, CFG, d)
    assert core == ["10.0.0.5:8883", "updates.example:8443", "cdn.example:80"], core
    assert netguard.allowed() == core + ["ntp.example:123"]
    seen = []
    events.set_sink(lambda k, s, det: None)
    events.set_sink(lambda k, s, det: seen.append((k, det)))
    devtest.raises(netguard.EgressBlocked, netguard.check, "evil.example", 443)
    assert seen == [("egress_blocked", {"endpoint": "evil.example:443"})], seen
    # Quarantine persists and narrows the list at the next start too.
    flags.set_quarantine(d, True)
    commands_boot.arm_egress(IDENT, CFG, d)
    assert netguard.allowed() == core
    devtest.raises(netguard.EgressBlocked, netguard.check, "ntp.example", 123)
    events.set_sink(None)
    devtest.reset_netguard()
