"""Demo stage for network access control (issue 17 section 3).

stage_network (after the security stage, so one board carries an integrity
alert): every demo board asks a real FreeRADIUS for admission with a real
supplicant (eapol_test, EAP-TLS with its fleet certificate), plus a stolen
identity the operator revoked. The answers come from the fleet database through
host_tools/nac/policy.py: healthy boards get their model's VLAN, the board with
the integrity alert gets the quarantine VLAN, the revoked certificate is refused.
Summary ``network``: admitted, quarantined, refused, decisions (per device: the
RADIUS answer, VLAN, segment and why), then the quarantined board's traffic
through the generated firewall (segmentation.py): blocked_flows, dropped_packets,
flows. Where FreeRADIUS or eapol_test is
missing the stage says so in the summary (``skipped``) and the demo goes on.
"""
from __future__ import annotations

import shutil

from rich.table import Table

from host_tools.demo import segmentation
from host_tools.demo.context import DEMO_BOARDS, DemoContext
from host_tools.nac.eapol import admit
from host_tools.nac.policy import ADMIT, QUARANTINE, REFUSE, fleet_decisions
from host_tools.nac.runner import Radius
from host_tools.network.config import load_config, save_config

STOLEN = "pump-stolen"  # an identity issued, then revoked (its board was stolen)


def _missing() -> str | None:
    for prog in ("freeradius", "eapol_test"):
        if not (shutil.which(prog) or shutil.which(f"/usr/sbin/{prog}")):
            return f"{prog} is not installed (make setup installs freeradius and eapoltest)"
    return None


def stage_network(ctx: DemoContext) -> None:
    why = _missing()
    if why:
        ctx.summary["network"] = {"skipped": why}
        ctx.console.print(f"[yellow]network access control skipped:[/] {why}")
        return
    pki = ctx.shared["telemetry"]["pki"]
    pki.issue(STOLEN, "pump-v2")
    pki.revoke(STOLEN)
    cfg = load_config(ctx.workdir, sorted(set(DEMO_BOARDS.values())))
    save_config(ctx.workdir, cfg)
    names = [*ctx.names, STOLEN]
    rows = []
    with Radius(pki, cfg, ctx.workdir / "nac") as radius:
        planned = {d.device_id: d for d in fleet_decisions(pki, cfg)}
        for name in names:
            ident = pki.device_identity(name)
            a = admit(radius.host, radius.port, radius.secret, name, ca=ident.ca, cert=ident.cert, key=ident.key)
            d = planned[name]
            want_vlan = d.segment.vlan if (d.action != REFUSE and d.segment) else None
            if a.accepted != (d.action != REFUSE) or (a.accepted and a.vlan != want_vlan):
                raise RuntimeError(f"demo: RADIUS answered {name} with accept={a.accepted} VLAN {a.vlan}, "
                                   f"the fleet policy says {d.action} VLAN {want_vlan}")
            seg = d.segment.name if (a.accepted and d.segment) else None
            rows.append({"device": name, "answer": "accept" if a.accepted else "reject", "vlan": a.vlan,
                         "segment": seg, "action": d.action, "why": list(d.reasons)})
    t = Table(title="medsentry demo: 802.1X admission (FreeRADIUS, EAP-TLS on the fleet PKI)")
    for col in ("device", "RADIUS", "VLAN", "segment", "why"):
        t.add_column(col)
    for r in rows:
        t.add_row(r["device"], r["answer"], str(r["vlan"] or "-"), r["segment"] or "-", "; ".join(r["why"]))
    ctx.console.print(t)
    accepted = [r for r in rows if r["answer"] == "accept"]
    quarantined = next((r["device"] for r in accepted if r["action"] == QUARANTINE), None)
    healthy = next((r["device"] for r in accepted if r["action"] == ADMIT and DEMO_BOARDS.get(r["device"]) == "pump-v2"),
                   None)
    ctx.summary["network"] = {
        "admitted": sum(1 for r in accepted if r["action"] == ADMIT),
        "quarantined": sum(1 for r in accepted if r["action"] == QUARANTINE),
        "refused": sum(1 for r in rows if r["answer"] == "reject"),
        "decisions": rows,
        **segmentation.traffic(ctx, cfg, healthy, quarantined),
    }
